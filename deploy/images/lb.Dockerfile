# The load balancer of the offline build (make images): Caddy built from
# its Go module, on scratch, as user 65532, with deploy/Caddyfile. Caddy
# keeps its state under /data and /config (XDG directories), owned by that
# user.
FROM scratch
COPY bin/image/rootfs/ /
COPY --chown=65532:65532 bin/image/data/data/ /data/
COPY --chown=65532:65532 bin/image/data/config/ /config/
COPY bin/image/caddy /usr/local/bin/caddy
COPY bin/image/Caddyfile /etc/caddy/Caddyfile
ENV XDG_DATA_HOME=/data XDG_CONFIG_HOME=/config HOME=/data
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/caddy"]
CMD ["run", "--config", "/etc/caddy/Caddyfile", "--adapter", "caddyfile"]

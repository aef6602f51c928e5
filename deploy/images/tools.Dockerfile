# The tools image of the offline build (make images), for the docs and
# models workers: the same binary and user on a Debian base with a shell,
# git and CA certificates, made by debootstrap and "docker import"
# (deploy/images/build.sh); BASE is that local image, never pulled.
ARG BASE=forgebus-base:bookworm
FROM ${BASE}
RUN groupadd -g 65532 nonroot \
 && useradd -u 65532 -g 65532 -d /var/lib/forgebus -M -s /usr/sbin/nologin nonroot
COPY --chown=65532:65532 bin/image/data/var/ /var/
COPY --chown=65532:65532 bin/image/data/srv/ /srv/
COPY bin/image/forgebus /usr/local/bin/forgebus
ENV HOME=/var/lib/forgebus \
    FORGEBUS_DATA_DIR=/var/lib/forgebus \
    FORGEBUS_HTTP_ADDR=:8080 \
    FORGEBUS_LOG_FORMAT=json
WORKDIR /var/lib/forgebus
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/forgebus"]
CMD ["worker", "docs"]

# The NATS image of the offline build (make images): nats-server built from
# the Go module the services module pins, on scratch, as user 65532. The
# forgebus binary is beside it only for the healthcheck ("forgebus probe":
# scratch has no wget). The store directory /data is owned by that user, so
# a named volume mounted there starts writable.
FROM scratch
COPY bin/image/rootfs/ /
COPY --chown=65532:65532 bin/image/data/data/ /data/
COPY bin/image/nats-server /usr/local/bin/nats-server
COPY bin/image/forgebus /usr/local/bin/forgebus
USER 65532:65532
EXPOSE 4222 6222 8222
ENTRYPOINT ["/usr/local/bin/nats-server"]
CMD ["-js", "-sd", "/data"]

# The forgebus image of the offline build (make images): the static binary
# built on the host, on scratch, as the non-root user 65532, with CA
# certificates and the data directories. No shell, no package manager.
# Build context: the repository root, of which .dockerignore sends only the
# files deploy/images/build.sh stages in bin/image.
FROM scratch
COPY bin/image/rootfs/ /
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
CMD ["ingest"]

# NATS for the online path (deploy/compose.online.yml): the official image.
FROM nats:2.12-alpine

# The load balancer for the online path (deploy/compose.online.yml): the
# official Caddy image, 2.11 or later (deploy/Caddyfile retries POSTs with
# their buffered body); the compose file mounts deploy/Caddyfile.
FROM caddy:2.11-alpine

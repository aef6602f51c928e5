# The load balancer for the online path (deploy/compose.online.yml): the
# official Caddy image; deploy/Caddyfile is mounted by the compose file.
FROM caddy:2-alpine

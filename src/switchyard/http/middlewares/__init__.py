"""HTTP middlewares, one module per Traefik type; `registry` maps type keys to modules."""

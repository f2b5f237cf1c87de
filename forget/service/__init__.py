"""`forget serve`: the HTTP API for privacy portals and model serving, its tokens, limits and metrics."""

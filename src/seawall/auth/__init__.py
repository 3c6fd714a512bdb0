"""Authentication: API keys and locally verified JWTs, resolved to a ``Principal`` without I/O."""

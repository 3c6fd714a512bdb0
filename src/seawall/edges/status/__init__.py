"""The status page: a cached render (board), its HTML and Statuspage v2 JSON, and its routes."""

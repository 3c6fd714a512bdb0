"""The only code that knows HTTP, sockets, SSE bytes or database drivers."""

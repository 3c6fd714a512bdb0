"""Wire formats: pure translation between bytes on the wire and the gateway's types."""

"""The X ingestor: API v2 recent search with a bearer token; off unless one is configured."""

"""The Reddit ingestor: search through OAuth app credentials; off unless they are configured."""

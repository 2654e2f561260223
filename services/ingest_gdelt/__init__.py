"""The GDELT ingestor: news coverage from the DOC 2.0 article list, one request per 5 seconds at most."""

"""The RSS/Atom ingestor: feeds, Google Alerts feeds and Google News RSS searches."""

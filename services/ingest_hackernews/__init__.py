"""The Hacker News ingestor: stories and comments through the Algolia ``search_by_date`` API."""

"""The Mastodon ingestor: hashtag timelines on the servers the user lists."""

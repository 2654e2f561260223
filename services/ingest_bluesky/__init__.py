"""The Bluesky ingestor: the Jetstream firehose matched locally, and searchPosts backfill with an app password."""

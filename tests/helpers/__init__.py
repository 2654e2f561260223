"""Real servers on 127.0.0.1 for tests: feeds, webhook receivers."""

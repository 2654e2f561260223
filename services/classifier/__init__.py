"""The classifier: language, sentiment and watch matching for each mention; alerts from them."""

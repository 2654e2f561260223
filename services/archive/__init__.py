"""The mention archive: classified mentions and alerts kept in a database, searchable."""

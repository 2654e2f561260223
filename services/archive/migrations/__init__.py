"""Alembic migrations of the archive's schema (run by the service at start, see ``services.archive.db``)."""

"""SQLAlchemy 2 async persistence: SQLite (embedded default) or PostgreSQL."""

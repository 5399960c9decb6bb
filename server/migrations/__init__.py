"""Alembic migrations of the custops schema (apply with `custops migrate`)."""

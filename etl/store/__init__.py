"""The store: SQLAlchemy tables, Alembic migrations, bulk versioned loading, as-of queries."""

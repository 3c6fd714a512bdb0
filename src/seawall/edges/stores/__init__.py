"""Key stores and ledgers: SQLite (embedded default), PostgreSQL and Redis beyond one machine."""

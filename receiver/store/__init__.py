"""The store: peewee models on SQLite (WAL) or PostgreSQL; the only room that writes rows."""

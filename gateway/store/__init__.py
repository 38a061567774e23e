"""PostgreSQL: pool, migrations, the COPY writer (the ingest sink) and read queries.

Knows nothing of HTTP. asyncpg's errors are translated to gateway errors here only.
"""

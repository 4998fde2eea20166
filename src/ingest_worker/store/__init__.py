"""The PostgreSQL store: SQL files, migrations, the asyncpg adapter, audit (verify / replay)."""

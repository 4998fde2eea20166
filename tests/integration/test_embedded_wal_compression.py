"""The embedded PostgreSQL compresses its full-page images, with durability on."""

from __future__ import annotations

import asyncpg

from ingest_worker.service.embedded import EmbeddedPostgres


async def test_embedded_postgres_compresses_wal_with_the_best_method_its_build_has() -> None:
    method = EmbeddedPostgres.wal_compression()
    assert method in ("lz4", "pglz")
    postgres = EmbeddedPostgres(fsync=True).start()
    try:
        conn = await asyncpg.connect(postgres.url)
        try:
            settings = {
                name: await conn.fetchval(f"SHOW {name}")
                for name in ("wal_compression", "fsync", "synchronous_commit", "full_page_writes")
            }
        finally:
            await conn.close()
    finally:
        postgres.stop()
    assert settings == {
        "wal_compression": method,
        "fsync": "on",
        "synchronous_commit": "on",
        "full_page_writes": "on",
    }

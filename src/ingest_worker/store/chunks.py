"""Chunk writes of the batch write path, each sent while the next chunk is computed."""

from __future__ import annotations

import asyncio
from typing import Any

from ingest_worker.core.plan import ChunkWrite
from ingest_worker.store.mapper import check_written, chunk_parameters


class ChunkPipeline:
    """Runs chunk writes one at a time, each while the caller computes the next chunk.

    On exit the last write is awaited. After an error, a write still in flight is awaited (its
    own error ignored) so that the transaction rolls back on an idle connection.
    """

    def __init__(self, conn: Any, query: str, tenant: str, traceparent: str | None = None) -> None:
        self._conn = conn
        self._query = query
        self._tenant = tenant
        self._traceparent = traceparent
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> ChunkPipeline:
        return self

    async def __aexit__(self, exc_type: object, exc: object, tb: object) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        if exc_type is None:
            await task
            return
        try:
            await asyncio.wait([task])  # the statement in flight finishes, whatever its outcome
        except asyncio.CancelledError:
            task.cancel()
            raise
        if not task.cancelled():
            task.exception()  # retrieved: the error already propagating is the one that counts

    async def send(self, write: ChunkWrite) -> None:
        task, self._task = self._task, None
        if task is not None:
            await task
        self._task = asyncio.create_task(self._write(write))
        await asyncio.sleep(0)  # the task sends its statement now, before the caller computes on

    async def _write(self, write: ChunkWrite) -> None:
        traceparents = [self._traceparent] * len(write.events) if self._traceparent else None
        parameters = chunk_parameters(write, traceparents, self._tenant)
        check_written(write, await self._conn.fetchrow(self._query, *parameters))

"""The naive reference: the per-signal orchestrator of seed 000, on the same data and services.

For every record, one at a time:

1. consume one record (aiokafka `getone`);
2. map it with `ingest_worker.sources.decode.decode_record` (an invalid record is dead-lettered with a
   synchronous send, then its offset is committed);
3. open a transaction, upsert the incident + evidence + event of that one signal (the project's
   `store.apply_batch` with a single-element batch), read back the event it wrote and clear its
   outbox row, commit;
4. publish the events (and a command's outcome) and wait for each acknowledgement
   (`send_and_wait`);
5. commit the record's offset.

So one transaction (one WAL flush) and one synchronous event publish per signal, plus one
synchronous offset commit: the shape of `ingestDeployStatusSignal(pool, signal)` called per signal.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition

from ingest_worker.core.errors import InvalidSignal
from ingest_worker.core.values import RejectedPart
from ingest_worker.delivery.batches import DeadLetter, SignalRecord
from ingest_worker.delivery.kafka import dead_letter_headers
from ingest_worker.delivery.outbox import event_headers, event_value
from ingest_worker.sources.decode import decode_record
from ingest_worker.store.incidents import apply_batch
from ingest_worker.store.migrations import migrate

from .harness import Topics, create_topics, fresh_database, log, make_producer

MAX_MESSAGE_BYTES = 1_048_576

#: The events the signal's transaction just wrote (one signal per transaction: the whole outbox,
#: a recovery resolves incidents the signal does not name), taken out of the outbox in the same
#: transaction (the columns `ingest_worker.outbox` publishes from).
_TAKE_EVENTS = """
WITH taken AS (
    DELETE FROM outbox RETURNING tenant, event_id
)
SELECT e.tenant, e.id, e.incident_id, e.seq, e.type, e.hash, e.payload::text AS payload_text,
       e.payload->>'occurred_at' AS occurred_at, e.payload->>'incident_key' AS incident_key
FROM taken t
JOIN incident_events e ON e.tenant = t.tenant AND e.id = t.event_id
ORDER BY e.incident_id, e.seq
"""
#: A command's outcome, taken out of its outbox in the same transaction.
_TAKE_RESULTS = """
DELETE FROM command_results_outbox RETURNING id, subject, payload::text AS payload_text
"""


async def run_naive(
    bootstrap: str, admin_url: str, topics: Topics, limit: int, *, outputs: Topics | None = None
) -> dict[str, Any]:
    """Process the first `limit` records of `topics` one by one; return the rate.

    Events and dead letters go to the topics of `outputs` (default: `Topics("naive")`), never to
    those of the worker phase that reads the same signal topics.
    """
    outputs = outputs or Topics("naive")
    await create_topics(bootstrap, [outputs.events, outputs.dead_letter, outputs.command_results])
    url = await fresh_database(admin_url, "bench_naive")
    conn = await asyncpg.connect(url)
    await migrate(conn)
    kind_of = topics.kind_of
    # Manual assignment: the same fetch/commit path without a 5 s group join (Tansu).
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id="bench-naive",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        client_id="bench-naive",
        max_poll_records=1,
    )
    producer = make_producer(bootstrap, linger_ms=0, client_id="bench-naive-producer")
    await consumer.start()
    await producer.start()
    consumer.assign(topics.signal_partitions())
    await consumer.seek_to_beginning(*topics.signal_partitions())
    done = events = dead = 0
    started: float | None = None
    try:
        while done < limit:
            r = await consumer.getone()
            if started is None:
                started = time.perf_counter()
            kind = kind_of[r.topic]
            try:
                inputs = decode_record(kind, r.value, max_bytes=MAX_MESSAGE_BYTES)
            except InvalidSignal as exc:
                record = SignalRecord(
                    r.topic,
                    r.partition,
                    r.offset,
                    r.key,
                    r.value,
                    tuple(r.headers or ()),
                    r.timestamp,
                )
                letter = DeadLetter(record, exc.reason.value, exc.message, datetime.now(UTC))
                await producer.send_and_wait(
                    outputs.dead_letter,
                    value=r.value,
                    key=r.key,
                    headers=dead_letter_headers(letter),
                )
                dead += 1
                inputs = ()
            inputs = tuple(i for i in inputs if not isinstance(i, RejectedPart))
            if inputs:
                async with conn.transaction(isolation="read_committed"):
                    await apply_batch(conn, inputs)
                    rows = await conn.fetch(_TAKE_EVENTS)
                    results = await conn.fetch(_TAKE_RESULTS)
                for row in results:
                    await producer.send_and_wait(
                        outputs.command_results,
                        value=row["payload_text"].encode(),
                        key=str(row["subject"]).encode(),
                        headers=[("ce_id", str(row["id"]).encode())],
                    )
                for row in rows:
                    await producer.send_and_wait(
                        outputs.events,
                        value=event_value(row["payload_text"], row["hash"], row["tenant"]),
                        key=str(row["incident_id"]).encode(),
                        headers=event_headers(row, b"ingest-worker-naive"),
                    )
                    events += 1
            await consumer.commit({TopicPartition(r.topic, r.partition): r.offset + 1})
            done += 1
        assert started is not None
        elapsed = time.perf_counter() - started
    finally:
        await consumer.stop()
        await producer.stop()
        await conn.close()
    result = {
        "records": done,
        "seconds": round(elapsed, 3),
        "throughput": round(done / elapsed, 1),
        "events_published": events,
        "dead_lettered": dead,
    }
    log(f"naive: {done:,} records in {elapsed:.1f}s -> {result['throughput']:,.0f}/s")
    return result

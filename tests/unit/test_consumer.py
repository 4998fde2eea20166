"""The batch subscriber's parser and decoder, on FastStream's own message (no broker needed)."""

from __future__ import annotations

import gc
import weakref

from aiokafka.structs import ConsumerRecord

from ingest_worker.delivery.consumer import _pass_through_parser, _records_as_body


def _record(offset: int) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(
        topic="signals.deploy-status", partition=0, offset=offset, timestamp=0,
        timestamp_type=0, key=None, value=b"{}", checksum=None, serialized_key_size=0,
        serialized_value_size=2, headers=((b"bad", b"\xff"),),
    )  # fmt: skip


async def test_the_handler_gets_the_batch_records_untouched() -> None:
    records = (_record(7), _record(8))
    message = await _pass_through_parser(records)
    message.set_decoder(_records_as_body)
    assert await message.decode() is records
    assert message.message_id == "signals.deploy-status:0:7"


async def test_a_decoded_batch_is_freed_without_the_cyclic_collector() -> None:
    # FastStream caches the decoded body on the message: a body that refers back to the message
    # would keep every batch's records alive until a collection (the worker raises the threshold).
    message = await _pass_through_parser((_record(1),))
    message.set_decoder(_records_as_body)
    await message.decode()
    gone = weakref.ref(message)
    gc.disable()
    try:
        del message
        assert gone() is None
    finally:
        gc.enable()

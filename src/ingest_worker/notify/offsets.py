"""Which offsets of the events topic may be committed: those every subscription is done with.

A record is done once every subscription it matched has delivered or parked it (a record no
subscription matched is done at once). The committable offset of a partition is its lowest
record not done yet, or one past the highest record read. Memory holds only the records not
done yet, in read order (a dict keeps insertion order: the first key is the lowest).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class PartitionOffsets:
    #: offset → subscriptions still owing it, in read order
    pending: dict[int, int] = field(default_factory=dict)
    next_offset: int | None = None
    committed: int | None = None

    def read(self, offset: int, owing: int) -> None:
        if owing > 0:
            self.pending[offset] = owing
        self.next_offset = offset + 1

    def done(self, offset: int) -> None:
        left = self.pending.get(offset)
        if left is None:
            return
        if left <= 1:
            del self.pending[offset]
        else:
            self.pending[offset] = left - 1

    def committable(self) -> int | None:
        """The offset to commit (the next one to read after a restart), or None."""
        for offset in self.pending:
            return offset
        return self.next_offset


class OffsetBook:
    """PartitionOffsets per (topic, partition) this member owns; a revoked partition is dropped,
    and the acknowledgements of its records that arrive later are ignored."""

    def __init__(self) -> None:
        self._partitions: dict[tuple[str, int], PartitionOffsets] = {}
        self._generation: dict[tuple[str, int], int] = {}

    def read(self, topic: str, partition: int, offset: int, owing: int) -> int:
        """Record a read record; return the partition's generation (for `done`)."""
        key = (topic, partition)
        book = self._partitions.get(key)
        if book is None:
            book = self._partitions[key] = PartitionOffsets()
        book.read(offset, owing)
        return self._generation.get(key, 0)

    def done(self, topic: str, partition: int, offset: int, generation: int) -> None:
        key = (topic, partition)
        book = self._partitions.get(key)
        if book is not None and self._generation.get(key, 0) == generation:
            book.done(offset)

    def owned(self, topic: str, partition: int, generation: int) -> bool:
        key = (topic, partition)
        return key in self._partitions and self._generation.get(key, 0) == generation

    def revoke(self, topic: str, partition: int) -> None:
        key = (topic, partition)
        self._partitions.pop(key, None)
        self._generation[key] = self._generation.get(key, 0) + 1

    def to_commit(self) -> dict[tuple[str, int], int]:
        """Offsets that moved since the last `committed` call."""
        moves: dict[tuple[str, int], int] = {}
        for key, book in self._partitions.items():
            offset = book.committable()
            if offset is not None and offset != book.committed:
                moves[key] = offset
        return moves

    def committed(self, moves: dict[tuple[str, int], int]) -> None:
        for key, offset in moves.items():
            book = self._partitions.get(key)
            if book is not None:
                book.committed = offset

    def pending(self) -> int:
        return sum(len(book.pending) for book in self._partitions.values())

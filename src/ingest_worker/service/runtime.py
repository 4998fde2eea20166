"""Process-level tuning of the long-running worker: its event loop and the garbage collector.

`loop_factory`: the worker's asyncio event loop is uvloop's (libuv, sockets and callbacks in C)
unless `INGEST_EVENT_LOOP=asyncio`, or uvloop cannot be imported (it has no Windows build):
a large share of the worker's CPU goes to the event loop, selectors and socket transports,
which uvloop runs in C (the gain per signal is in the changelog and the benchmark's results).

The worker allocates many short-lived containers per signal (decoded JSON, events, snapshots),
almost all freed by reference counting as soon as a batch is written. With CPython's default
thresholds (700, 10, 10) a batch of 500 records alone crosses the first generation's threshold
dozens of times, and each crossing can cascade into a full collection that walks every object
of the process (modules, pydantic schemas, the bounded caches): under a sustained load the
collector, not the work, takes a noticeable share of the worker's CPU.

`tune_gc` raises the first threshold (`INGEST_GC_THRESHOLD`, default 50,000) and freezes what
start-up allocated (`gc.freeze`: never scanned again); the same load then makes a handful of
collections, and the worker's RSS stays flat (figures in the changelog, bench/results/ and the
documentation's Performance page).
Reference counting still frees everything that is not part of a cycle at once; cycles are still
collected, only less often. `INGEST_GC_THRESHOLD=0` keeps CPython's defaults.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable, Coroutine
from typing import Any

#: The older generations: collected after this many collections of the younger one.
OLDER_GENERATIONS = (20, 20)


def tune_gc(threshold: int) -> tuple[int, int, int]:
    """Freeze the objects allocated so far and set the collector's thresholds; return them.

    `threshold` 0 leaves CPython's defaults (nothing is frozen either)."""
    if threshold > 0:
        gc.collect()
        gc.freeze()
        gc.set_threshold(threshold, *OLDER_GENERATIONS)
    current: tuple[int, int, int] = gc.get_threshold()
    return current


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The event loop factory for `asyncio.Runner`: uvloop's when asked for and importable,
    else None (asyncio's default loop)."""
    if name != "uvloop":
        return None
    try:
        import uvloop
    except ImportError:  # pragma: no cover - no wheel for this platform
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def run(main: Callable[[], Coroutine[Any, Any, int]], *, event_loop: str) -> int:
    """Run the coroutine `main()` on the configured event loop (`loop_factory`)."""
    with asyncio.Runner(loop_factory=loop_factory(event_loop)) as runner:
        return runner.run(main())

"""Benchmark of ingest-worker (issue 7): `python -m bench` / `make bench`.

The real worker process against the naive per-signal orchestrator of seed 000 and against the
machine's own limits (consume-only, write-only), in one run, on one machine and one data set.
See `bench/__main__.py` for the phases and options; results land in `bench/results/`.
"""

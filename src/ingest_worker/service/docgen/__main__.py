"""`python -m ingest_worker.service.docgen [ROOT] [--check]` (`make docs-gen`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ingest_worker.service.docgen import stale, write


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ingest_worker.service.docgen")
    parser.add_argument("root", nargs="?", default=".", help="the repository root")
    parser.add_argument("--check", action="store_true", help="exit 1 when a page is stale")
    args = parser.parse_args(argv)
    root = Path(args.root)
    if args.check:
        outdated = stale(root)
        for path in outdated:
            print(f"stale: {path} (run `make docs-gen`)", file=sys.stderr)
        return 1 if outdated else 0
    for path in write(root):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

"""Debian's chromium for the console's browser tests and screenshots (Playwright cannot
download its own browsers here): installed with apt-get when missing and root, as the
Prometheus interop installs prometheus. Stdlib only. `python interop/chromium.py` installs it
and prints its path."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

CHROMIUM = Path(os.environ.get("INGEST_TEST_CHROMIUM", "/usr/bin/chromium"))
#: Flags for a headless run in a container without network: no sandbox (root), no GPU, no
#: background fetches.
ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


def ensure_chromium() -> Path:
    if CHROMIUM.exists():
        return CHROMIUM
    found = shutil.which("chromium")
    if found:
        return Path(found)
    if os.geteuid() != 0:
        raise SystemExit("chromium missing and not root: apt-get install chromium yourself")
    print("interop/chromium: installing Debian's chromium package", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (
        ["apt-get", "update", "-q"],
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", "chromium"],
    ):
        if subprocess.run(cmd, env=env, check=False).returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed")
    if not CHROMIUM.exists():
        raise SystemExit(f"the chromium package installed no {CHROMIUM}")
    return CHROMIUM


if __name__ == "__main__":
    print(ensure_chromium())
    sys.exit(0)

"""`make screenshots`: docs/img/console-list.png and docs/img/console-detail.png, taken by
Debian's chromium (Playwright) from a seeded `ingest-worker dev` instance.

Starts `ingest-worker dev` on its ports, sends a few signals through the gateway (open under
dev), acknowledges one incident and mitigates it from the console itself, then photographs
the list and that incident's detail. Every process it starts is stopped on exit.
"""

from __future__ import annotations

import json
import signal
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from chromium import ARGS, ensure_chromium
from prometheus import (
    EXE,
    GATEWAY_PORT,
    HTTP_PORT,
    KAFKA_PORT,
    POSTGRES_PORT,
    ROOT,
    InteropFailure,
    Processes,
    dev_environment,
    fail,
    http_get,
    run_checks,
    wait_for,
)

IMAGES = ROOT / "docs" / "img"
SIGNALS = [
    ("deploy_status", {"env": "prod", "status": "RED", "changedAt": "2026-11-23T09:00:00Z",
                       "deployId": "deploy-2026-11-23-001", "signals": {},
                       "reasons": [{"code": "HEALTH_FAIL", "severity": "error",
                                    "message": "Health check returned 503"}]}),
    ("deploy_status", {"env": "staging", "status": "YELLOW", "changedAt": "2026-11-23T09:05:00Z",
                       "deployId": "deploy-2026-11-23-002", "signals": {}, "reasons": []}),
    ("deploy_status", {"env": "prod", "status": "RED", "changedAt": "2026-11-23T09:10:00Z",
                       "deployId": "deploy-2026-11-23-003", "signals": {}, "reasons": []}),
]  # fmt: skip


def post(url: str, body: object) -> int:
    request = urllib.request.Request(  # noqa: S310 - loopback only
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        return int(response.status)


def seed(gateway: str, procs: list[object]) -> None:
    for source, body in SIGNALS:
        post(f"{gateway}/v1/signals/{source}", body)
    alert = json.loads(
        (ROOT / "examples" / "alertmanager-firing.jsonl").read_text().splitlines()[0]
    )
    post(f"{gateway}/v1/signals/alertmanager", alert)

    def listed() -> bool:
        status, raw = http_get(f"{gateway}/v1/incidents?limit=100")
        return status == 200 and len(json.loads(raw)["items"]) >= len(SIGNALS) + 1

    wait_for("seeded incidents listed", listed, procs)  # type: ignore[arg-type]


def photograph(gateway: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    IMAGES.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(ensure_chromium()), args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(f"{gateway}/?tenant=default")
        page.get_by_role(
            "link", name="Deploy status RED in prod (deploy deploy-2026-11-23-003)"
        ).click()
        page.get_by_role("button", name="Acknowledge", exact=True).click()
        expect(page.get_by_role("status")).to_contain_text("applied")
        page.get_by_role("button", name="Start mitigation").click()
        expect(page.get_by_role("status")).to_contain_text("Start mitigation: applied")
        page.get_by_label("Note").fill("Rolling back to deploy-2026-11-23-002")
        page.get_by_role("button", name="Add note").click()
        expect(page.get_by_role("status")).to_contain_text("Add note: applied")
        page.reload()
        page.screenshot(path=str(IMAGES / "console-detail.png"), full_page=True)
        page.goto(f"{gateway}/?tenant=default")
        expect(page.locator("#incident-rows tr[data-id]").first).to_be_visible()
        page.screenshot(path=str(IMAGES / "console-list.png"), full_page=True)
        browser.close()


def body(procs: Processes, workdir: Path) -> int:
    env = dev_environment()
    dev = procs.start([str(EXE), "dev"], workdir / "dev.log", env, signal.SIGINT)
    gateway = f"http://127.0.0.1:{GATEWAY_PORT}"
    wait_for("gateway /readyz 200", lambda: http_get(f"{gateway}/readyz")[0] == 200, [dev])
    seed(gateway, [dev])
    time.sleep(0.5)  # let the worker's outbox settle so the list's times read naturally
    photograph(gateway)
    print(f"interop/screenshots: wrote {IMAGES}/console-list.png and console-detail.png")
    return 0


def main() -> int:
    ensure_chromium()
    if not EXE.exists():
        fail(f"{EXE} missing: run `make install` first")
    return run_checks("screenshots", [HTTP_PORT, GATEWAY_PORT, KAFKA_PORT, POSTGRES_PORT], body)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except InteropFailure as failure:
        print(f"interop/screenshots: FAILED: {failure}", flush=True)
        sys.exit(1)

"""The read API over real HTTP, fed by the real worker: lists, detail, timeline, commands and
receipts, for two tenants with identical incident keys — neither sees anything of the other —
and every refusal as problem+json with its stable reason."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from ingest_worker.service.gateway import GatewaySettings
from tests.gateway.conftest import RunningGateway
from tests.read.conftest import ReadSide, auth, deploy

pytestmark = pytest.mark.integration

PROBLEM = "application/problem+json"
#: An incident id no store holds (fixed: xdist collects the same parameters in every process).
UNKNOWN_ID = uuid.UUID("00000000-0000-4000-8000-000000000001")


@pytest.fixture(scope="module")
async def tour(read_side: ReadSide) -> ReadSide:
    for tenant in ("acme", "globex"):
        await read_side.signal(
            tenant,
            deploy("d-1", minute=1),
            deploy("d-2", env="staging", minute=2),
            deploy("d-3", status="YELLOW", minute=3),
        )
    await read_side.signal("acme", deploy("d-4", minute=4))
    await read_side.await_incidents("acme", 4)
    await read_side.await_incidents("globex", 3)
    return read_side


@pytest.fixture
async def client(tour: ReadSide) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=tour.url, timeout=30) as http:
        yield http


def refused(response: httpx.Response, status: int, reason: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert body["reason"] == reason and body["status"] == status and body["detail"]


async def test_the_list_filters_and_shows_only_the_callers_tenant(
    client: httpx.AsyncClient,
) -> None:
    query = {"status": "OPEN", "severity": "RED", "count": "true"}
    acme = (await client.get("/v1/incidents", params=query, headers=auth("acme"))).json()
    globex = (await client.get("/v1/incidents", params=query, headers=auth("globex"))).json()
    assert acme["count"] == 3 and len(acme["items"]) == 3 and acme["nextCursor"] is None
    assert globex["count"] == 2
    assert {i["tenant"] for i in acme["items"]} == {"acme"}
    assert {i["tenant"] for i in globex["items"]} == {"globex"}
    assert {i["severity"] for i in acme["items"]} == {"RED"}
    keys = {i["incidentKey"] for i in globex["items"]}
    assert keys < {i["incidentKey"] for i in acme["items"]}  # identical keys, other ids
    assert not {i["id"] for i in acme["items"]} & {i["id"] for i in globex["items"]}
    staging = await client.get("/v1/incidents", params={"env": "staging"}, headers=auth("acme"))
    assert [i["env"] for i in staging.json()["items"]] == ["staging"]
    assert "count" not in staging.json()


async def test_pages_follow_the_cursor_and_the_cursor_is_bound_to_its_filters(
    client: httpx.AsyncClient,
) -> None:
    seen, cursor = [], None
    while True:
        params = {"limit": "1", **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/v1/incidents", params=params, headers=auth("acme"))).json()
        seen += [i["id"] for i in page["items"]]
        if (cursor := page["nextCursor"]) is None:
            break
        other = await client.get(
            "/v1/incidents", params={"cursor": cursor, "status": "OPEN"}, headers=auth("acme")
        )
        refused(other, 400, "cursor_mismatch")
    assert len(seen) == len(set(seen)) == 4


async def test_the_csv_export_holds_every_match_with_a_header(client: httpx.AsyncClient) -> None:
    response = await client.get(
        "/v1/incidents", params={"limit": "1"}, headers={**auth("acme"), "Accept": "text/csv"}
    )
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(response.text)))
    assert rows[0][:4] == ["id", "tenant", "incidentKey", "episode"]
    assert len(rows) == 5 and {r[1] for r in rows[1:]} == {"acme"}


async def test_detail_and_timeline_of_another_tenants_incident_are_not_found(
    tour: ReadSide, client: httpx.AsyncClient
) -> None:
    mine = await tour.incident_id("acme", "d-1")
    theirs = await tour.incident_id("globex", "d-1")
    detail = (await client.get(f"/v1/incidents/{mine}", headers=auth("acme"))).json()
    assert detail["id"] == mine and detail["evidence"] and "payload" not in detail["evidence"][0]
    assert detail["episodes"] == {"previous": None, "next": None}
    full = await client.get(
        f"/v1/incidents/{mine}", params={"include": "evidencePayloads"}, headers=auth("acme")
    )
    assert "payload" in full.json()["evidence"][0]
    timeline = (await client.get(f"/v1/incidents/{mine}/timeline", headers=auth("acme"))).json()
    assert [e["type"] for e in timeline["items"]][:1] == ["incident.created"]
    for path in (f"/v1/incidents/{theirs}", f"/v1/incidents/{theirs}/timeline"):
        refused(await client.get(path, headers=auth("acme")), 404, "not_found")
    unknown = await client.get(f"/v1/incidents/{uuid.uuid4()}", headers=auth("acme"))
    refused(unknown, 404, "not_found")


@pytest.mark.parametrize(
    ("path", "params", "reason"),
    [
        ("/v1/incidents", {"limit": "0"}, "invalid_parameter"),
        ("/v1/incidents", {"limit": "101"}, "invalid_parameter"),
        ("/v1/incidents", {"limit": "ten"}, "invalid_parameter"),
        ("/v1/incidents", {"status": "open"}, "invalid_parameter"),
        ("/v1/incidents", {"severity": "BLUE"}, "invalid_parameter"),
        ("/v1/incidents", {"since": "2026-01-01T00:00:00"}, "invalid_parameter"),
        ("/v1/incidents", {"until": "yesterday"}, "invalid_parameter"),
        ("/v1/incidents", {"sort": "lastSeen"}, "invalid_parameter"),
        ("/v1/incidents", {"timeField": "seen"}, "invalid_parameter"),
        ("/v1/incidents", {"count": "maybe"}, "invalid_parameter"),
        ("/v1/incidents", {"q": ""}, "invalid_parameter"),
        ("/v1/incidents", {"cursor": "not-a-cursor"}, "invalid_cursor"),
        ("/v1/incidents", {"stauts": "OPEN"}, "unknown_parameter"),
        ("/v1/incidents/not-a-uuid", {}, "invalid_parameter"),
        (f"/v1/incidents/{UNKNOWN_ID}/timeline", {"afterSeq": "-1"}, "invalid_parameter"),
        (f"/v1/incidents/{UNKNOWN_ID}/timeline", {"type": "incident.exploded"},
         "invalid_parameter"),
        ("/v1/stream", {"severity": "BLUE"}, "invalid_parameter"),
        ("/v1/stream", {"incident": "x"}, "invalid_parameter"),
    ],
)  # fmt: skip
async def test_every_bad_parameter_is_a_400_problem(
    client: httpx.AsyncClient, path: str, params: dict[str, str], reason: str
) -> None:
    refused(await client.get(path, params=params, headers=auth("acme")), 400, reason)


async def test_no_token_is_401_and_a_token_without_the_scope_is_403(
    tour: ReadSide, client: httpx.AsyncClient
) -> None:
    mine = await tour.incident_id("acme", "d-1")
    refused(await client.get("/v1/incidents"), 401, "unauthenticated")
    refused(await client.get("/v1/incidents", headers=auth("acme-ingest")), 403, "forbidden_scope")
    refused(await client.get("/v1/stream", headers=auth("acme-ingest")), 403, "forbidden_scope")
    command = await client.post(
        f"/v1/incidents/{mine}/commands", json={"type": "acknowledge"}, headers=auth("acme-read")
    )
    refused(command, 403, "forbidden_scope")


async def test_a_command_waits_for_its_outcome_and_its_key_answers_the_same_again(
    tour: ReadSide, client: httpx.AsyncClient
) -> None:
    mine = await tour.incident_id("acme", "d-2")
    theirs = await tour.incident_id("globex", "d-2")
    key = {"Idempotency-Key": f"ack-{uuid.uuid4()}"}
    url = f"/v1/incidents/{mine}/commands"
    first = await client.post(
        url, params={"wait": "20"}, json={"type": "acknowledge"}, headers={**auth("acme"), **key}
    )
    assert first.status_code == 200, first.text
    outcome = first.json()
    assert outcome["outcome"] == "applied" and outcome["status"] == "ACKNOWLEDGED"
    assert outcome["eventId"] and outcome["eventSeq"] == 2
    again = await client.post(url, json={"type": "acknowledge"}, headers={**auth("acme"), **key})
    assert again.status_code == 200 and again.json() == outcome
    receipt = await client.get(f"/v1/commands/{key['Idempotency-Key']}", headers=auth("acme"))
    assert receipt.json()["outcome"] == "applied" and receipt.json()["incidentId"] == mine
    refused(
        await client.get(f"/v1/commands/{key['Idempotency-Key']}", headers=auth("globex")),
        404, "not_found",
    )  # fmt: skip
    rejected = await client.post(
        url, params={"wait": "20"}, json={"type": "resolve"}, headers=auth("acme")
    )
    assert rejected.json()["outcome"] == "rejected"
    assert rejected.json()["reason"] == "rationale_required"
    foreign = await client.post(
        f"/v1/incidents/{theirs}/commands", json={"type": "acknowledge"}, headers=auth("acme")
    )
    refused(foreign, 404, "not_found")
    detail = (await client.get(f"/v1/incidents/{theirs}", headers=auth("globex"))).json()
    assert detail["status"] == "OPEN"  # acme's command touched only acme's incident


async def test_a_command_not_decided_within_wait_is_202_with_its_receipts_location(
    tour: ReadSide, client: httpx.AsyncClient
) -> None:
    mine = await tour.incident_id("acme", "d-3")
    key = f"note-{uuid.uuid4()}"
    pending = await client.post(
        f"/v1/incidents/{mine}/commands", params={"wait": "0"},
        json={"type": "annotate", "note": "looking"},
        headers={**auth("acme"), "Idempotency-Key": key},
    )  # fmt: skip
    assert pending.status_code == 202, pending.text
    assert pending.headers["location"] == f"/v1/commands/{key}"
    decided = await client.post(
        f"/v1/incidents/{mine}/commands", params={"wait": "20"},
        json={"type": "annotate", "note": "looking"},
        headers={**auth("acme"), "Idempotency-Key": key},
    )  # fmt: skip
    assert decided.status_code == 200 and decided.json()["outcome"] == "applied"
    receipt = await client.get(pending.headers["location"], headers=auth("acme"))
    assert receipt.json()["eventId"] == decided.json()["eventId"]


@pytest.mark.parametrize(
    ("headers", "body", "status", "reason"),
    [
        ({"Content-Type": "text/plain"}, b"{}", 415, "unsupported_media_type"),
        ({"Content-Type": "application/json"}, b"{", 400, "invalid_json"),
        ({"Content-Type": "application/json"}, b'{"type": "explode"}', 400, "schema_violation"),
        ({"Content-Type": "application/json"}, b'{"type": "annotate"}', 400, "schema_violation"),
        ({"Content-Type": "application/json"}, b'{"type": "acknowledge", "actor": "x"}', 400,
         "schema_violation"),
        ({"Content-Type": "application/json"}, b'{"type": "annotate", "note": "' + b"x" * 20000
         + b'"}', 413, "too_large"),
        ({"Content-Type": "application/json", "Idempotency-Key": "has space"},
         b'{"type": "acknowledge"}', 400, "invalid_parameter"),
    ],
)  # fmt: skip
async def test_a_bad_command_is_refused_before_anything_is_published(
    tour: ReadSide, client: httpx.AsyncClient,
    headers: dict[str, str], body: bytes, status: int, reason: str,
) -> None:  # fmt: skip
    mine = await tour.incident_id("acme", "d-1")
    response = await client.post(
        f"/v1/incidents/{mine}/commands", content=body, headers={**auth("acme"), **headers}
    )
    refused(response, status, reason)


async def test_under_dev_the_tenant_is_the_x_tenant_header(tour: ReadSide) -> None:
    config = GatewaySettings(host="127.0.0.1", port=0, ensure_topics=False)
    dev = RunningGateway(tour.settings, config, dev=True).start()
    try:
        async with httpx.AsyncClient(base_url=dev.url, timeout=30) as http:
            query = {"status": "OPEN", "severity": "RED"}
            acme = await http.get("/v1/incidents", params=query, headers={"X-Tenant": "acme"})
            nobody = await http.get("/v1/incidents", params=query)
            bad = await http.get("/v1/incidents", headers={"X-Tenant": "Not A Tenant"})
    finally:
        dev.stop()
    assert {i["tenant"] for i in acme.json()["items"]} == {"acme"}
    assert nobody.json()["items"] == []  # no X-Tenant: the default tenant, which has none here
    refused(bad, 400, "invalid_tenant")

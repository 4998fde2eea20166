"""The console's pure parts: the list's query read from the URL (the read API's parameter
names, empty fields absent, unusable values reported and dropped), links that keep the
tenant, durations and relative times, the live stream's frames."""

from __future__ import annotations

from datetime import UTC, datetime

from starlette.datastructures import QueryParams

from ingest_worker.service.console.core import safe_next
from ingest_worker.service.console.live import sse_frame
from ingest_worker.service.console.views import between, duration, parse_query, relative


def test_the_url_carries_the_read_api_filter_names() -> None:
    query = parse_query(QueryParams(
        "status=OPEN&status=ACKNOWLEDGED&severity=RED&source=&env=prod&q=db"
        "&since=2026-01-01T00:00:00Z&sort=-created&limit=10&cursor=abc"
    ))  # fmt: skip
    flt = query.flt
    assert flt.statuses == ("OPEN", "ACKNOWLEDGED") and flt.severities == ("RED",)
    assert flt.sources == () and flt.envs == ("prod",) and flt.q == "db"
    assert flt.since == datetime(2026, 1, 1, tzinfo=UTC) and flt.sort == "-created"
    assert query.limit == 10 and query.cursor == "abc" and not query.errors


def test_unusable_values_are_reported_never_widened_silently() -> None:
    query = parse_query(QueryParams("status=OPEN&status=NOPE&since=yesterday&limit=500&sort=x"))
    assert query.flt.statuses == ("OPEN",)
    assert query.flt.since is None and query.limit == 25 and query.flt.sort == "-lastSeen"
    assert len(query.errors) == 4
    assert any(e.startswith("status: unknown value NOPE") for e in query.errors)


def test_links_keep_the_tenant_and_the_filters_and_drop_the_cursor_on_request() -> None:
    query = parse_query(QueryParams("severity=RED&env=prod&cursor=c1"), tenant="acme")
    assert query.url(cursor="c2") == "/?tenant=acme&severity=RED&env=prod&cursor=c2"
    assert query.url(cursor=None) == "/?tenant=acme&severity=RED&env=prod"
    assert query.stream_url() == "/console/stream?tenant=acme&severity=RED&env=prod"
    assert parse_query(QueryParams("")).url() == "/"


def test_durations_and_relative_times() -> None:
    now = datetime(2026, 1, 2, 0, 0, tzinfo=UTC)
    assert relative("2026-01-01T23:59:30Z", now) == "30 s ago"
    assert relative("2026-01-01T22:00:00Z", now) == "2 h 0 min ago"
    assert relative("2025-12-20T00:00:00Z", now) == "13 d 0 h ago"
    assert relative("2026-01-02T00:05:00Z", now) == "in 5 min"
    assert between("2026-01-01T00:00:00Z", "2026-01-01T00:07:30Z") == "7 min"
    assert between("2026-01-01T00:00:00Z", None) is None
    assert duration(3 * 86400 + 3600) == "3 d 1 h"


def test_sign_in_returns_only_to_paths_of_the_console() -> None:
    assert safe_next("/?status=OPEN") == "/?status=OPEN"
    for target in ("//evil.example/", "https://evil.example/", "/\\evil", "", None):
        assert safe_next(target) == "/"


def test_a_multi_line_row_is_one_server_sent_event() -> None:
    frame = sse_frame("incident", '<tr id="row-1">\n  <td>a</td>\n\n</tr>\n')
    assert frame == 'event: incident\ndata: <tr id="row-1">\ndata:   <td>a</td>\ndata: </tr>\n\n'

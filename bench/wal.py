"""WAL per signal: `pg_stat_wal` around a run, and which relations wrote it (`pg_walinspect`).

`WalMeter.start()` before the worker starts and `WalMeter.stop()` after its last event: the
difference of `pg_stat_wal` (records, full-page images, bytes) and of `pg_current_wal_lsn()`
(the exact byte count, independent of when backends flush their statistics). Then
`pg_walinspect` reads the WAL between the two positions: per resource manager
(`pg_get_wal_stats`) and per relation (`pg_get_wal_block_info`: each block reference's
full-page image and data bytes, the relation named from the run's database catalog).

The bench is the only client of its embedded PostgreSQL, so the cluster's WAL between the two
positions is the run's (plus autovacuum, which `quiesce_postgres` settles beforehand).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import asyncpg

from .harness import log

_STAT = "SELECT wal_records, wal_fpi, wal_bytes::bigint AS wal_bytes FROM pg_stat_wal"

_BY_RMGR = """
SELECT "resource_manager/record_type" AS resource_manager, count, record_size, fpi_size,
       combined_size
FROM pg_get_wal_stats($1::pg_lsn, $2::pg_lsn, false)
WHERE count > 0
ORDER BY combined_size DESC
"""

#: Per relation: block references, full-page images and their bytes, block data bytes, and
#: the records' own bytes shared out over their block references (a record of N blocks
#: counts 1/N of its header and main data for each).
_BY_RELATION = """
WITH b AS (
    SELECT start_lsn, reldatabase, relfilenode, relforknumber,
           block_fpi_length AS fpi_length, block_data_length, record_length,
           count(*) OVER (PARTITION BY start_lsn) AS blocks
    FROM pg_get_wal_block_info($1::pg_lsn, $2::pg_lsn, false)
)
SELECT reldatabase::bigint AS db, relfilenode::bigint AS relfilenode,
       relforknumber AS fork,
       count(*) AS block_refs,
       count(*) FILTER (WHERE fpi_length > 0) AS fpis,
       coalesce(sum(fpi_length), 0)::bigint AS fpi_bytes,
       coalesce(sum(block_data_length), 0)::bigint AS data_bytes,
       coalesce(sum((record_length - fpi_length - block_data_length)::float8 / blocks), 0)
           ::bigint AS header_bytes
FROM b
GROUP BY 1, 2, 3
"""

_NAMES = """
SELECT c.relfilenode::bigint AS relfilenode, c.relname, c.relkind::text AS relkind,
       coalesce(t.relname, '') AS owner
FROM pg_class c
LEFT JOIN pg_class t ON c.relkind = 't' AND t.reltoastrelid = c.oid
WHERE c.relfilenode <> 0
"""


async def _stat(conn: asyncpg.Connection) -> dict[str, Any]:
    row = await conn.fetchrow(_STAT)
    lsn = int(await conn.fetchval("SELECT pg_current_wal_lsn()"))  # asyncpg: pg_lsn is an int
    return {**dict(row), "lsn": lsn}


class WalMeter:
    """`pg_stat_wal` and the WAL position around a run, then the WAL's breakdown."""

    def __init__(self, admin_url: str) -> None:
        self._admin_url = admin_url
        self._before: dict[str, Any] | None = None

    async def start(self) -> None:
        conn = await asyncpg.connect(self._admin_url)
        try:
            await conn.execute("SELECT pg_stat_force_next_flush()")
            await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_walinspect")
            self._before = await _stat(conn)
        finally:
            await conn.close()

    async def stop(self, database_url: str, signals: int) -> dict[str, Any]:
        """WAL written since `start`, per signal and broken down (`database_url`: the run's
        database, whose catalog names the relations)."""
        assert self._before is not None
        await asyncio.sleep(1.2)  # backends flush pg_stat_wal at most once a second when idle
        conn = await asyncpg.connect(self._admin_url)
        try:
            after = await _stat(conn)
            lsn_bytes = after["lsn"] - self._before["lsn"]
        finally:
            await conn.close()
        b = self._before
        stat = {k: int(after[k]) - int(b[k]) for k in ("wal_records", "wal_fpi", "wal_bytes")}
        result: dict[str, Any] = {
            "signals": signals,
            "start_lsn": lsn_text(b["lsn"]),
            "end_lsn": lsn_text(after["lsn"]),
            "lsn_bytes": lsn_bytes,
            "pg_stat_wal": stat,
            "bytes_per_signal": round(lsn_bytes / max(1, signals), 1),
            "records_per_signal": round(stat["wal_records"] / max(1, signals), 2),
            "fpi_per_signal": round(stat["wal_fpi"] / max(1, signals), 3),
        }
        try:
            result.update(await breakdown(self._admin_url, database_url, b["lsn"], after["lsn"]))
        except (asyncpg.PostgresError, OSError) as exc:  # e.g. a segment already recycled
            log(f"WAL breakdown unavailable: {exc!r}")
            result["breakdown_error"] = repr(exc)
        return result


def lsn_text(lsn: int) -> str:
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


async def breakdown(admin_url: str, database_url: str, start: int, end: int) -> dict[str, Any]:
    """The WAL between `start` and `end` per resource manager and per relation."""
    conn = await asyncpg.connect(admin_url)
    try:
        rmgr = [dict(r) for r in await conn.fetch(_BY_RMGR, start, end)]
        blocks = [dict(r) for r in await conn.fetch(_BY_RELATION, start, end)]
    finally:
        await conn.close()
    names: dict[int, dict[str, Any]] = {}
    with contextlib.suppress(asyncpg.PostgresError, OSError):
        db = await asyncpg.connect(database_url)
        try:
            names = {r["relfilenode"]: dict(r) for r in await db.fetch(_NAMES)}
        finally:
            await db.close()
    relations: dict[str, dict[str, int]] = {}
    for row in blocks:
        info = names.get(row["relfilenode"])
        if info is None:
            name = f"relfilenode {row['relfilenode']}"
        elif info["relkind"] == "t":
            name = f"{info['owner']} (TOAST)"
        elif info["relkind"] == "i" and info["relname"].startswith("pg_toast"):
            name = f"{info['relname']} (TOAST index)"
        else:
            name = info["relname"] + (" (index)" if info["relkind"] == "i" else "")
        if row["fork"] != 0:
            name += f" fork {row['fork']}"
        entry = relations.setdefault(
            name, {"block_refs": 0, "fpis": 0, "fpi_bytes": 0, "data_bytes": 0, "header_bytes": 0}
        )
        for key in entry:
            entry[key] += int(row[key])
    for entry in relations.values():
        entry["bytes"] = entry["fpi_bytes"] + entry["data_bytes"] + entry["header_bytes"]
    ordered = dict(sorted(relations.items(), key=lambda kv: -kv[1]["bytes"]))
    return {
        "by_resource_manager": [
            {k: (float(v) if k.endswith("size") else v) for k, v in r.items()} for r in rmgr
        ],
        "by_relation": ordered,
    }


def markdown(wal: dict[str, Any], *, top: int = 16) -> list[str]:
    """The WAL section of the report."""
    if not wal:
        return []
    s = wal["signals"]
    stat = wal["pg_stat_wal"]
    lines = [
        "## WAL per signal (saturation run, `pg_stat_wal` and `pg_walinspect`)",
        "",
        f"{wal['lsn_bytes'] / 1e6:,.1f} MB of WAL for {s:,} signals: "
        f"**{wal['bytes_per_signal']:,.0f} bytes per signal**; "
        f"{stat['wal_records']:,} records ({wal['records_per_signal']:.1f} per signal), "
        f"{stat['wal_fpi']:,} full-page images ({wal['fpi_per_signal']:.2f} per signal). "
        f"`pg_stat_wal` counted {stat['wal_bytes'] / 1e6:,.1f} MB "
        f"(from `{wal['start_lsn']}` to `{wal['end_lsn']}`).",
        "",
    ]
    rmgr = wal.get("by_resource_manager") or []
    if rmgr:
        lines += [
            "| resource manager | records | record bytes | FPI bytes | bytes per signal |",
            "|---|---:|---:|---:|---:|",
        ]
        for r in rmgr[:8]:
            lines.append(
                f"| {r['resource_manager']} | {r['count']:,} | {r['record_size']:,.0f} | {r['fpi_size']:,.0f} | "
                f"{r['combined_size'] / s:,.0f} |"
            )
        lines.append("")
    rel = wal.get("by_relation") or {}
    if rel:
        lines += [
            "| relation | block refs | FPIs | FPI bytes per signal | data bytes per signal | "
            "bytes per signal (headers shared out) |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for name, e in list(rel.items())[:top]:
            lines.append(
                f"| {name} | {e['block_refs']:,} | {e['fpis']:,} | {e['fpi_bytes'] / s:,.0f} | "
                f"{e['data_bytes'] / s:,.0f} | {e['bytes'] / s:,.0f} |"
            )
        lines.append("")
    if wal.get("breakdown_error"):
        lines += [f"(breakdown unavailable: {wal['breakdown_error']})", ""]
    return lines

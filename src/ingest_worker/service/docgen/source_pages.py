"""One page per source: hand-written prose on top, then its golden cases rendered below a marker.

The cases are `tests/sources/<source>/<case>.json` (verbatim record values) and the normalized
output beside each (`<case>.expected.json`, which the golden tests check against the mappers),
so the examples on the page are what the code does today.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ingest_worker.service.docgen.markdown import cell
from ingest_worker.sources.contract import Source
from ingest_worker.sources.registry import SOURCES

MARKER = "<!-- Everything below is generated from tests/sources/ by `make docs-gen`. -->"
MAX_EXAMPLES = 4
LONG_PAYLOAD_LINES = 50
LONG_OUTPUT_LINES = 150
NAV_BEGIN = "  # BEGIN sources (written by make docs-gen)"
NAV_END = "  # END sources"


def _cases(folder: Path) -> list[tuple[str, bytes, dict[str, Any]]]:
    cases = []
    for path in sorted(folder.glob("*.json")):
        if path.name.endswith(".expected.json"):
            continue
        expected = path.with_name(path.stem + ".expected.json")
        if expected.is_file():
            cases.append((path.stem, path.read_bytes(), json.loads(expected.read_bytes())))
    return cases


def _effect_line(item: dict[str, Any]) -> str:
    if "recovery" in item:
        rec = item["recovery"]
        return f"recovery of `{rec['scope']}` at `{rec['signal_time']}`"
    if "transition" in item:
        tr = item["transition"]
        by = f" by {tr['actor']}" if tr.get("actor") else ""
        return f"`{tr['verb']}` of `{tr['incident_key']}`{by} at `{tr['signal_time']}`"
    if "rejected_part" in item:
        part = item["rejected_part"]
        return f"part {part['index']} rejected: {part['message']}"
    code = item["classification"].get("error_code", "")
    return f"{item['severity']} incident `{item['incident_key']}` (`{code}`): {item['title']}"


def _incident_table(item: dict[str, Any]) -> list[str]:
    rows = [
        ("incident key", f"`{item['incident_key']}`"),
        ("severity", item["severity"]),
        ("title", cell(item["title"])),
        ("error code", f"`{item['classification'].get('error_code', '')}`"),
        ("environment", f"`{item['env']}`" if item["env"] else "–"),
        ("signal time", f"`{item['signal_time']}`"),
        ("recovery scope", f"`{item['scope']}`"),
        ("correlation keys", ", ".join(f"`{k}`" for k in item["correlation_keys"]) or "–"),
        ("evidence", ", ".join(f"`{e['kind']}`" for e in item["evidence"]) or "–"),
    ]
    return ["| | |", "|---|---|", *(f"| {name} | {value} |" for name, value in rows), ""]


def _indented(block: list[str]) -> list[str]:
    return [f"    {line}" if line else "" for line in block]


def _example(name: str, value: bytes, output: dict[str, Any]) -> list[str]:
    payload = json.dumps(json.loads(value), indent=2, ensure_ascii=False).splitlines()
    code = ["```json", *payload, "```"]
    lines = [f"### `{name}`", ""]
    if len(payload) > LONG_PAYLOAD_LINES:
        lines += [f'??? example "The payload ({len(payload)} lines)"', "", *_indented(code), ""]
    else:
        lines += ["The record value:", "", *code, ""]
    lines += ["What it becomes:", ""]
    for item in output["incidents"]:
        if "incident_key" in item:
            lines += _incident_table(item)
        else:
            lines += [f"- {_effect_line(item)}", ""]
    full = json.dumps(output, indent=2, ensure_ascii=False).splitlines()
    if len(full) <= LONG_OUTPUT_LINES:
        lines += [
            '??? note "The whole normalized output"',
            "",
            *_indented(["```json", *full, "```"]),
        ]
    return [*lines, ""]


def _kinds(output: dict[str, Any]) -> set[str]:
    return {
        "incident" if "incident_key" in item else next(iter(item)) for item in output["incidents"]
    }


def _pick_examples(
    candidates: list[tuple[str, bytes, dict[str, Any]]],
) -> list[tuple[str, bytes, dict[str, Any]]]:
    """Up to MAX_EXAMPLES real cases: a trigger, a recovery and a source transition first (when
    the source has them), then the others in name order."""
    chosen: list[tuple[str, bytes, dict[str, Any]]] = []
    for kind in ("incident", "recovery", "transition"):
        found = next((c for c in candidates if kind in _kinds(c[2]) and c not in chosen), None)
        if found is not None:
            chosen.append(found)
    chosen += [c for c in candidates if c not in chosen]
    return chosen[:MAX_EXAMPLES]


def _generated(source: Source, folder: Path) -> list[str]:
    ignored, rejected, producing = [], [], []
    for name, value, output in _cases(folder):
        if "rejected" in output:
            rejected.append(f"| `{name}` | `{output['rejected']}` | {cell(output['message'])} |")
        elif not output["incidents"]:
            ignored.append(f"| `{name}` |")
        else:
            producing.append((name, value, output))
    real = [c for c in producing if not any(w in c[0].lower() for w in ("derived", "edge"))]
    examples = _pick_examples(real)
    more = [
        f"| `{name}` | "
        + "<br>".join(cell(_effect_line(item)) for item in output["incidents"])
        + " |"
        for name, value, output in producing
        if (name, value, output) not in examples
    ]
    lines = [
        "## Examples",
        "",
        f"Real payloads from `tests/sources/{source.name}/` and what the worker makes of them, "
        "exactly as the golden tests check it (the folder's README names where each payload "
        "comes from).",
        "",
    ]
    for example in examples:
        lines += _example(*example)
    if more:
        lines += ["## More cases", "", "| case | result |", "|---|---|", *more, ""]
    if ignored:
        lines += ["## Ignored", "", "Valid, counted as `ignored`, no incident:", "", "| case |"]
        lines += ["|---|", *ignored, ""]
    if rejected:
        lines += ["## Rejected", "", "Dead-lettered with this reason:", ""]
        lines += ["| case | reason | message |", "|---|---|---|", *rejected, ""]
    return lines


def _stub(source: Source) -> str:
    return f"# {source.name}\n\nTopic `{source.topic}`.\n"


def _page(source: Source, root: Path) -> str:
    current = root / "docs" / "sources" / f"{source.name}.md"
    text = current.read_text(encoding="utf-8") if current.is_file() else _stub(source)
    prose = text.split(MARKER, 1)[0].rstrip() + "\n"
    folder = root / "tests" / "sources" / source.name
    return "\n".join([prose, MARKER, "", *_generated(source, folder)]).rstrip() + "\n"


def _index() -> str:
    lines = [
        "# Sources",
        "",
        "Every source has its own topic (its default below, `INGEST_TOPIC_<SETTING>` to change "
        "it), one or more accepted payload forms, each with its published JSON Schema, and a page "
        "with real payloads and the incidents they become.",
        "",
        "| source | topic | variable | payload forms (their JSON Schemas) |",
        "|---|---|---|---|",
    ]
    for source in SOURCES:
        shapes = ", ".join(
            f"[{shape.schema_file.removesuffix('.schema.json')}](../schemas/{shape.schema_file})"
            if shape.schema_file
            else shape.name
            for shape in source.shapes
        )
        variable = f"INGEST_TOPIC_{source.setting.upper()}"
        lines.append(
            f"| [{source.name}]({source.name}.md) | `{source.topic}` | `{variable}` | {shapes} |"
        )
    return "\n".join(lines) + "\n"


def _nav(root: Path) -> str:
    """mkdocs.yml with its list of source pages matching the registry."""
    text = (root / "mkdocs.yml").read_text(encoding="utf-8")
    head, found, rest = text.partition(NAV_BEGIN + "\n")
    if not found:
        return text
    _, _, tail = rest.partition(NAV_END)
    entries = [f"      - {s.name}: sources/{s.name}.md\n" for s in SOURCES]
    return head + NAV_BEGIN + "\n" + "".join(entries) + NAV_END + tail


def source_pages(root: Path) -> dict[str, str]:
    """The source pages, their index, and mkdocs.yml's navigation to them."""
    pages = {f"docs/sources/{s.name}.md": _page(s, root) for s in SOURCES}
    pages["docs/sources/index.md"] = _index()
    if (root / "mkdocs.yml").is_file():
        pages["mkdocs.yml"] = _nav(root)
    return pages

"""The lifecycle table in the docs is the code's: `docs/concepts.md` holds `TRANSITIONS`
rendered row by row, so a row changed in `core/incident.py` without the docs fails here."""

from __future__ import annotations

from pathlib import Path

from ingest_worker.core.incident import TRANSITIONS, Status, Step, Transition, When

DOC = Path(__file__).resolve().parents[2] / "docs" / "concepts.md"
BEGIN = "<!-- lifecycle-table: rendered from core/incident.py TRANSITIONS -->"
END = "<!-- /lifecycle-table -->"
_CAUSES = {"signal": "signal", "command": "command", "source": "the source"}
_RATIONALE = {
    "never": "",
    "always": "; a command needs a rationale",
    "unless_mitigation": "; a command needs a rationale unless `MITIGATING`/`MITIGATED`",
}


def _sources(row: Transition) -> str:
    statuses = [s for s in Status if s in row.sources]
    names = ["–"] if None in row.sources else []
    if len(statuses) == len(Status) - 1 and Status.ARCHIVED not in row.sources:
        return ", ".join([*names, "every status but `ARCHIVED`"])
    return ", ".join([*names, *(f"`{s.value}`" for s in statuses)])


def render() -> str:
    lines = [
        "| # | from | by | when | to | event | does |",
        "|---|---|---|---|---|---|---|",
    ]
    for number, row in enumerate(TRANSITIONS, 1):
        by = " or ".join(_CAUSES[c] for c in sorted(row.causes, key=list(_CAUSES).index))
        when = "" if row.when is When.ALWAYS else row.when.value
        to = "(same)" if row.to is None else f"`{row.to.value}`"
        created = "`incident.created`" if row.step is Step.NEW_EPISODE else "`incident.updated`"
        event = created if row.event_type is None else f"`{row.event_type}`"
        if row.step is Step.NEW_EPISODE and row.event_type is not None:
            event = f"`incident.created`, then {event}"
        lines.append(
            f"| {number} | {_sources(row)} | {by} `{row.verb.value}` | {when} | {to} | {event} "
            f"| {row.step.value}{_RATIONALE[row.rationale]} |"
        )
    return "\n".join(lines)


def test_the_docs_show_the_transition_table_of_the_code() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert BEGIN in text and END in text
    shown = text.split(BEGIN, 1)[1].split(END, 1)[0].strip()
    assert shown == render(), "update docs/concepts.md with:\n" + render()

"""The session tally of the fault and hostile-input suites: what was thrown at the worker and what
it survived, printed at the end of the pytest session (and written as JSON to `$TALLY_JSON`)."""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.e2e.expected import Verdict


@dataclass
class Tally:
    signals_sent: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    hostile_inputs: int = 0
    hostile_kinds: set[str] = field(default_factory=set)
    scenarios: int = 0
    incidents_expected: int = 0
    incidents_found: int = 0
    events_expected: int = 0
    events_found: int = 0
    events_published: int = 0
    events_republished: int = 0
    dead_letters_expected: int = 0
    dead_letters_found: int = 0
    lost: int = 0
    duplicated: int = 0
    problems: int = 0
    commands_sent: int = 0  # command records produced (redeliveries included)
    commands_expected: int = 0  # distinct commandIds
    receipts_found: int = 0
    results_published: int = 0
    results_republished: int = 0
    command_outcomes: Counter[str] = field(default_factory=Counter)
    hostile_commands: int = 0
    hostile_command_kinds: set[str] = field(default_factory=set)

    def sent(self, count: int) -> None:
        self.signals_sent += count

    def fault(self, kind: str) -> None:
        self.faults[kind] += 1

    def hostile(self, kind: str, count: int = 1) -> None:
        self.hostile_kinds.add(kind)
        self.hostile_inputs += count

    def hostile_command(self, kind: str, count: int = 1) -> None:
        self.hostile_command_kinds.add(kind)
        self.hostile_commands += count

    def record(self, verdict: Verdict) -> None:
        """Add one scenario's end-state comparison."""
        self.scenarios += 1
        self.incidents_expected += verdict.incidents_expected
        self.incidents_found += verdict.incidents_found
        self.events_expected += verdict.events_expected
        self.events_found += verdict.events_found
        self.events_published += verdict.events_published
        self.events_republished += verdict.republished
        self.dead_letters_expected += verdict.dead_letters_expected
        self.dead_letters_found += verdict.dead_letters_found
        self.lost += verdict.lost
        self.duplicated += verdict.duplicated
        self.problems += len(verdict.problems)
        self.commands_sent += verdict.commands_sent
        self.commands_expected += verdict.commands_expected
        self.receipts_found += verdict.receipts_found
        self.results_published += verdict.results_published
        self.results_republished += verdict.results_republished
        self.command_outcomes.update(verdict.outcomes)

    @property
    def empty(self) -> bool:
        return self.scenarios == 0 and not self.signals_sent

    def as_json(self) -> dict[str, Any]:
        return {
            "signals_sent": self.signals_sent,
            "faults_injected": dict(sorted(self.faults.items())),
            "hostile_inputs_tried": self.hostile_inputs,
            "hostile_input_kinds": len(self.hostile_kinds),
            "scenarios_checked": self.scenarios,
            "incidents": {"expected": self.incidents_expected, "found": self.incidents_found},
            "events": {
                "expected": self.events_expected,
                "found": self.events_found,
                "published": self.events_published,
                "republished_duplicates": self.events_republished,
            },
            "dead_letters": {
                "expected": self.dead_letters_expected,
                "found": self.dead_letters_found,
            },
            "commands": {
                "sent": self.commands_sent,
                "distinct": self.commands_expected,
                "receipts_found": self.receipts_found,
                "outcomes_published": self.results_published,
                "outcomes_republished": self.results_republished,
                "outcomes": dict(sorted(self.command_outcomes.items())),
                "hostile_tried": self.hostile_commands,
                "hostile_kinds": len(self.hostile_command_kinds),
            },
            "lost": self.lost,
            "duplicated": self.duplicated,
            "problems": self.problems,
        }

    def lines(self) -> list[str]:
        faults = ", ".join(f"{k} {v}" for k, v in sorted(self.faults.items())) or "none"
        outcomes = ", ".join(f"{k} {v}" for k, v in sorted(self.command_outcomes.items())) or "none"
        return [
            f"signals sent:          {self.signals_sent}",
            f"faults injected:       {sum(self.faults.values())} ({faults})",
            f"hostile inputs tried:  {self.hostile_inputs} ({len(self.hostile_kinds)} kinds)",
            f"scenarios checked:     {self.scenarios}",
            f"incidents:             expected {self.incidents_expected}, "
            f"found {self.incidents_found}",
            f"events:                expected {self.events_expected}, found {self.events_found}, "
            f"published {self.events_published} "
            f"(+{self.events_republished} at-least-once duplicates with the same ce_id)",
            f"dead letters:          expected {self.dead_letters_expected}, "
            f"found {self.dead_letters_found}",
            f"commands:              sent {self.commands_sent} "
            f"({self.commands_expected} distinct commandIds), receipts found "
            f"{self.receipts_found}, outcomes published {self.results_published} "
            f"(+{self.results_republished} republished with the same ce_id)",
            f"command outcomes:      {outcomes}",
            f"hostile commands:      {self.hostile_commands} "
            f"({len(self.hostile_command_kinds)} kinds)",
            f"lost = {self.lost}, duplicated = {self.duplicated}, problems = {self.problems}",
        ]

    def write_json(self) -> Path | None:
        target = os.environ.get("TALLY_JSON")
        if not target:
            return None
        path = Path(target)
        path.write_text(json.dumps(self.as_json(), indent=2) + "\n", encoding="utf-8")
        return path


#: The one tally of this pytest session.
TALLY = Tally()

"""`core/incident.py` is the only place that names a status: a status literal anywhere else in
`src/` fails this test.

Allowed, each for a reason stated here:
- the migrations: they are history, applied once, never edited;
- `store/sql/store.sql`: its list of active statuses must be the same literal list as the
  partial index's predicate (migration 0005) for the planner to use that index (a parameter
  cannot prove the predicate), so the test below checks the list equals `ACTIVE` instead;
- `service/gateway/read_models.py`: a `Literal` the type checker and the OpenAPI document read
  statically, asserted equal to `Status` where it is defined;
- `sources/newrelic.py`: New Relic's own issue states, its vocabulary rather than ours.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from ingest_worker.core.incident import ACTIVE, Status

SRC = Path(__file__).resolve().parents[2] / "src" / "ingest_worker"
OWNER = SRC / "core" / "incident.py"
ALLOWED = {
    SRC / "service" / "gateway" / "read_models.py",
    SRC / "sources" / "newrelic.py",
}
STATUSES = {s.value for s in Status}


def _python_literals(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and node.value in STATUSES
        and id(node) not in docstrings
    ]


def test_no_status_literal_outside_the_aggregate() -> None:
    found = [
        f"{path.relative_to(SRC)}:{line}: {value!r}"
        for path in sorted(SRC.rglob("*.py"))
        if path != OWNER and path not in ALLOWED
        for line, value in _python_literals(path)
    ]
    quoted = re.compile(r"'(" + "|".join(sorted(STATUSES)) + r")'")
    for path in sorted((SRC / "store" / "sql").glob("*.sql")):
        body = path.read_text(encoding="utf-8")
        if path.name == "store.sql":
            body = body.replace(_ACTIVE_LIST, "")
        found += [f"{path.relative_to(SRC)}: {m.group(0)}" for m in quoted.finditer(body)]
    assert found == []


_ACTIVE_LIST = "n.status IN ('PENDING', 'OPEN', 'ACKNOWLEDGED', 'MITIGATING', 'MITIGATED')"


def test_the_active_statuses_of_the_store_sql_are_the_aggregates() -> None:
    body = (SRC / "store" / "sql" / "store.sql").read_text(encoding="utf-8")
    assert _ACTIVE_LIST in body
    listed = set(re.findall(r"'([A-Z]+)'", _ACTIVE_LIST))
    assert listed == {s.value for s in ACTIVE}
    index = (SRC / "store" / "migrations" / "0005_tenants.sql").read_text(encoding="utf-8")
    assert "status IN ('PENDING', 'OPEN', 'ACKNOWLEDGED', 'MITIGATING', 'MITIGATED')" in index


def test_the_check_finds_a_literal_but_not_a_docstring(tmp_path: Path) -> None:
    module = tmp_path / "module.py"
    module.write_text('"""OPEN"""\n\nSTATUS = "OPEN"\n', encoding="utf-8")
    assert _python_literals(module) == [(3, "OPEN")]

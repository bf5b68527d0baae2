"""The import rules of docs/architecture.md, read from the code with ast.

A unit is a top-level module (receiver/policy.py → "policy") or a package folder
(receiver/verify/ → "verify"). Imports inside functions count too.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.helpers import ROOT

PACKAGE = ROOT / "receiver"

# The inner units: values in, values out (verify also fetches DNS keys). Each may import
# only these units.
INNER = {
    "config": set(),
    "mail": set(),
    "parse": {"config", "mail", "malloc", "stages", "faults"},
    "threads": {"config", "parse", "mail"},
    "verify": {"config", "parse", "mail", "stages", "faults"},
    "policy": {"config", "verify"},
    "allowlist": {"config", "policy", "verify"},
    # The leaves, used from above.
    "metrics": {"config", "logs", "stages"},
    "logs": set(),
    "stages": set(),
    "faults": set(),
    "mailfiles": {"mail"},
    "exits": set(),
    "instructions": set(),
    "malloc": set(),
    "service": set(),
}
# The rest: units each must not import (the edges and the CLI sit above everything).
FORBIDDEN = {
    "store": {"smtp", "cli", "pipeline", "bulk_import", "allowlist"},
    "pipeline": {"smtp", "cli", "bulk_import"},
    "smtp": {"cli", "bulk_import"},
    "bulk_import": {"smtp", "cli"},
    "delivery": {"store", "smtp", "cli", "pipeline", "bulk_import"},
}


def _unit(module: str) -> str | None:
    """The unit of a dotted module name inside receiver, or None outside it."""
    parts = module.split(".")
    if parts[0] != "receiver" or len(parts) < 2:
        return None
    return parts[1]


def _imports(path: Path) -> set[str]:
    """The receiver units a file imports."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {_unit(a.name) for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "receiver":  # from receiver import metrics, policy
                found |= {a.name for a in node.names}
            else:
                found.add(_unit(node.module))
    return {u for u in found if u is not None}


def import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE).parts
        unit = rel[0].removesuffix(".py")
        graph.setdefault(unit, set()).update(_imports(path) - {unit})
    return graph


def test_inner_units_import_only_inner_units():
    graph = import_graph()
    broken = {
        unit: sorted(graph.get(unit, set()) - allowed)
        for unit, allowed in INNER.items()
        if graph.get(unit, set()) - allowed
    }
    assert broken == {}, "inner units importing what docs/architecture.md does not allow"


def test_lower_units_do_not_import_the_edges():
    graph = import_graph()
    broken = {
        unit: sorted(graph.get(unit, set()) & banned)
        for unit, banned in FORBIDDEN.items()
        if graph.get(unit, set()) & banned
    }
    assert broken == {}, "imports against the flow in docs/architecture.md"


def test_only_the_entry_point_imports_the_cli():
    graph = import_graph()
    assert sorted(u for u, deps in graph.items() if "cli" in deps) == ["__main__"]


def test_the_rules_name_real_units():
    """A renamed package must not make its rule vacuous."""
    graph = import_graph()
    named = (
        set(INNER) | set(FORBIDDEN) | {u for s in [*INNER.values(), *FORBIDDEN.values()] for u in s}
    )
    assert named - set(graph) == set()


def test_the_document_states_the_rules():
    doc = (ROOT / "docs" / "architecture.md").read_text()
    for unit in [*INNER, *FORBIDDEN]:
        assert f"receiver/{unit}" in doc or f"`{unit}.py`" in doc, unit

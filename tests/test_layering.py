"""Apps depend one way: communities ← chargers ← rules ← notifications ← forwarding ← billing ← meters ← power (an app's core imports only
the apps to its left). `rules` (rules of use) sits after chargers because its policies name sites
and outlets and it stops sessions through the command path; billing never needs it. The core is
everything but the presentation modules (views, URLs, forms, template tags, context processors,
admin, management commands), which compose pages from several apps and may import any of them.
Two declared exceptions: the worker's event pipeline and the
session reads price sessions with `billing.prices` (light on purpose: it imports only
`billing.models`); and a portal remote start obeys the rules of use through `rules.evaluation`
(the one evaluation function the gateway uses too).

An AST walk (no extra tool): every import, at module level or inside a function, counts."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# meters reads chargers (an OCPP main meter is a charger's connector 0) and is read by power
# management; billing never needs a meter, so meters sits after it.
# power decides from what meters measure and what chargers report, and commands chargers through
# their command rows: it sits last, nothing below it ever needs a limit it computed.
# forwarding relays chargers' traffic (it reads chargers, the worker applies its events
# through chargers.events.handlers.register); billing needs neither.
# notifications reads what communities, chargers and rules record (access requests, refusals,
# sessions, connections) and tells people; nothing needs it, the worker reaches it through
# chargers.events.batch.EXTRA_FLUSHES.
# support sits last: a report may describe anything (its community, later a charger), and
# nothing depends on the support desk.
ORDER = [
    "communities",
    "chargers",
    "rules",
    "notifications",
    "forwarding",
    "billing",
    "meters",
    "power",
    "support",
]
PRESENTATION = {"views", "urls", "forms", "templatetags", "context_processors", "admin"}
ALLOWED = {("chargers", "billing.prices"), ("chargers", "rules.evaluation")}


def is_presentation(path: Path) -> bool:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return bool(PRESENTATION & set(parts[1:])) or "management" in parts or "migrations" in parts


def imported_modules(path: Path):
    tree = ast.parse(path.read_text(), filename=str(path))
    package = path.relative_to(ROOT).with_suffix("").parts
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: stays inside its own app
                base = package[: len(package) - node.level]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            yield node.lineno, module
            for alias in node.names:  # `from billing import prices`
                yield node.lineno, f"{module}.{alias.name}"


def core_modules(app):
    return [p for p in sorted((ROOT / app).rglob("*.py")) if not is_presentation(p)]


def violations(app):
    forbidden = ORDER[ORDER.index(app) + 1 :]
    found = []
    for path in core_modules(app):
        for line, module in imported_modules(path):
            top = module.split(".")[0]
            if top not in forbidden:
                continue
            if any(app == a and (module == m or module.startswith(m + ".")) for a, m in ALLOWED):
                continue
            found.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    return sorted(set(found))


@pytest.mark.parametrize("app", ORDER)
def test_app_core_imports_only_the_apps_below_it(app):
    assert violations(app) == []


def test_the_walk_sees_imports_inside_functions(tmp_path, monkeypatch):
    """The check itself can fail: a function-level import of a forbidden app is found."""
    module = ROOT / "communities" / "_layering_probe.py"
    module.write_text("def f():\n    from chargers.models import Charger\n    return Charger\n")
    try:
        assert violations("communities") == [
            "communities/_layering_probe.py:2 imports chargers.models",
            "communities/_layering_probe.py:2 imports chargers.models.Charger",
        ]
    finally:
        module.unlink()

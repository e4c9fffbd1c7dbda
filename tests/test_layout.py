"""The project's rooms and what each may import: no cycle, and nothing reaches up a floor.

Every module of `batches/` and of the helpers they stand on (`foundations/`) is on a floor; a
module imports only from its own floor or below, and the imports form no cycle, lazy imports
inside functions included. A new module must be given a floor here, which is the point: where
it goes is decided, not drifted into. The README's layout table describes the same floors.

And no room grows past MAX_LINES: a module that does is split into a package of rooms named for
what they hold (as `batches.models` and `batches.intake` are).
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

FLOORS = [
    (
        "foundations: storage, settings helpers, the API client, outbound rules, claims, change "
        "stamps, polls, and intake's parsing and rules (no model)",
        ["foundations.env", "foundations.errors", "foundations.schemas", "foundations.betas",
         "foundations.storage", "foundations.object_storage", "foundations.local_files",
         "foundations.slow_clients", "batches.text", "batches.spreadsheets",
         "batches.pricing", "batches.changes", "batches.outbound", "batches.outbound_http",
         "batches.bulk", "batches.claims", "batches.crypto", "batches.client", "batches.polling",
         "batches.ratelimit", "batches.call_stats", "batches.answers", "batches.audit_chain",
         "batches.intake.problems", "batches.intake.splitting", "batches.intake.templating",
         "batches.intake.reading", "batches.intake.bounds", "batches.intake.rules",
         "batches.intake.estimating", "batches.intake.accepted", "batches.intake.line_checking",
         "batches.intake.segments", "batches.intake.merging", "batches.intake.bodies",
         "batches.intake.checking", "batches.intake.command_line"],
    ),
    (
        "the models, a module per kind of thing, all of them imported by the package",
        ["batches.models.workspaces", "batches.models.batches", "batches.models.results",
         "batches.models.usage", "batches.models.uploads", "batches.models.webhooks",
         "batches.models.audit", "batches.models"],
    ),
    (
        "one concern each, on the models: roles, the audit log, totals, read queries, "
        "workspaces, invitations, forms, the check job",
        ["batches.roles", "batches.audit", "batches.audit_verify", "batches.metrics",
         "batches.totals", "batches.selectors",
         "batches.search", "batches.usage", "batches.budgets", "batches.labels",
         "batches.workspaces",
         "batches.invitations", "batches.forms", "batches.intake.job"],
    ),
    (
        "the write paths: the mirror, results ingestion, submissions, downloads, notices, tries",
        ["batches.webhooks", "batches.mirror", "batches.ingestion", "batches.submissions",
         "batches.downloads", "batches.notices", "batches.trials"],
    ),
    ("what combines them: the actions on a batch", ["batches.actions"]),
    ("the Celery tasks, thin doors into the floors below", ["batches.tasks"]),
    (
        "the change functions: each change with its rule, its audit entry and its task",
        ["batches.operations", "batches.operations.batches", "batches.operations.uploads",
         "batches.operations.members", "batches.operations.workspaces",
         "batches.operations.accounts"],
    ),
    (
        "the edges: pages (one module each), template tags, admin, commands, URLs",
        ["batches.views.access", "batches.views.batch_list", "batches.views.batch_page",
         "batches.views.downloads", "batches.views.header", "batches.views.results",
         "batches.views.uploads", "batches.views.workspace_settings", "batches.views.metrics",
         "batches.views.usage",
         "batches.templatetags.batch_tags", "batches.admin",
         "batches.apps", "batches.urls"],
    ),
]  # fmt: skip
FLOOR_OF = {module: number for number, (_, modules) in enumerate(FLOORS) for module in modules}
COMMANDS_FLOOR = len(FLOORS) - 1
# The most lines a module may have (ours, migrations aside).
MAX_LINES = 600


def _modules() -> dict[str, Path]:
    """Every module of ours, and every package whose `__init__.py` holds more than a docstring
    (`batches.models`, which imports every model), named as they are imported."""
    found = {}
    for package in ("batches", "dashboard", "foundations"):
        for path in (ROOT / package).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            parts = path.relative_to(ROOT).with_suffix("").parts
            if path.name == "__init__.py":
                if not _holds_code(path):
                    continue
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def _holds_code(path: Path) -> bool:
    body = ast.parse(path.read_text(encoding="utf-8")).body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]  # the docstring
    return bool(body)


def _imports(path: Path, modules) -> set[str]:
    """The project modules `path` imports, at the top or inside functions."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in names if name in modules}


def _floor(module: str) -> int | None:
    if module.startswith("batches.management.commands."):
        return COMMANDS_FLOOR
    return FLOOR_OF.get(module)


# The project package's own wiring (settings, URLs, the WSGI/ASGI and Celery apps, the
# supervisor, its two views) is outside the floors: it may name the app, nothing names it.
WIRING = {
    "dashboard.settings",
    "dashboard.urls",
    "dashboard.wsgi",
    "dashboard.asgi",
    "dashboard.supervisor",
    "dashboard.views",
    "dashboard.middleware",
    "dashboard.accounts",
    "dashboard.celery",
    "dashboard",
}


def test_every_module_has_a_floor():
    unplaced = [name for name in _modules() if name not in WIRING and _floor(name) is None]
    assert unplaced == [], f"give these a floor in tests/test_layout.py: {unplaced}"


def test_no_module_imports_from_a_floor_above_it():
    modules = _modules()
    upward = []
    for name, path in modules.items():
        if name in WIRING:
            continue
        own = _floor(name)
        for imported in _imports(path, modules):
            floor = _floor(imported)
            if imported in WIRING:
                upward.append(f"{name} imports the project's wiring {imported}")
            # A module with no floor is test_every_module_has_a_floor's to report.
            elif floor is not None and own is not None and floor > own:
                upward.append(f"{name} (floor {own}) imports {imported} ({floor})")
    assert upward == []


def test_the_imports_form_no_cycle():
    modules = _modules()
    graph = {name: _imports(path, modules) for name, path in modules.items()}
    visiting, done, cycles = set(), set(), []

    def visit(name, trail):
        if name in done:
            return
        if name in visiting:
            cycles.append(" -> ".join([*trail[trail.index(name) :], name]))
            return
        visiting.add(name)
        for imported in sorted(graph[name]):
            visit(imported, [*trail, name])
        visiting.discard(name)
        done.add(name)

    for name in sorted(graph):
        visit(name, [])
    assert cycles == []


def test_the_views_are_reached_only_from_the_urls_and_settings():
    modules = _modules()
    for name, path in modules.items():
        if name.startswith("batches.views") or name in ("batches.urls", "dashboard.settings"):
            continue
        assert not [i for i in _imports(path, modules) if i.startswith("batches.views")], name


def test_no_module_is_over_max_lines():
    too_long = {}
    for package in ("batches", "dashboard", "foundations", "emulator"):
        for path in (ROOT / package).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            with path.open(encoding="utf-8") as handle:
                count = sum(1 for _ in handle)
            if count > MAX_LINES:
                too_long[str(path.relative_to(ROOT))] = count
    assert too_long == {}, f"split these into rooms of at most {MAX_LINES} lines: {too_long}"


# Where an audit entry may be written: the change functions, and the system's own findings (the
# mirror's ended and vanished batches; the login signals and the chain, in the audit modules).
AUDIT_WRITERS = ("batches.operations.", "batches.audit", "batches.mirror")


def test_audit_entries_are_written_only_by_the_change_functions():
    writers = []
    for name, path in _modules().items():
        if name.startswith(AUDIT_WRITERS):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("record", "record_batches", "entry")
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "audit"
            ):
                writers.append(f"{name}:{node.lineno}")
    assert writers == [], "write audit entries through batches.operations"


def test_the_helpers_stand_on_nothing_of_ours():
    """`foundations` is below everything: it imports no app and not the project."""
    modules = _modules()
    for name, path in modules.items():
        if name.startswith("foundations"):
            ours = {i for i in _imports(path, modules) if not i.startswith("foundations")}
            assert ours == set(), f"{name} imports {ours}"


def test_the_project_is_only_the_project():
    """`dashboard/` holds settings, URLs, the WSGI, ASGI and Celery apps, the supervisor and
    their views: every module of it is wiring, and nothing below imports it."""
    assert {name for name in _modules() if name.startswith("dashboard")} <= WIRING

"""The usage pages: cost, tokens, requests, errors and turnaround over a period, for one
workspace (with its budget) or every workspace the viewer sees; each table also as CSV."""

import csv
import io
from datetime import timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from django.http import Http404, HttpRequest, HttpResponse, QueryDict
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from batches import budgets, roles, usage
from batches.forms import UsagePeriodForm
from batches.models import Workspace
from batches.spreadsheets import BOM, safe_row
from batches.views.access import AuthenticatedHttpRequest, workspace_for

# The charts drawn from the tables (the page's script reads these from a JSON island): which
# table, and how to draw it.
CHARTS: list[dict[str, Any]] = [
    {"table": "cost-by-model", "kind": "bar", "stacked": True, "skip_last": True},
    {"table": "tokens", "kind": "bar", "stacked": True},
    {"table": "outcomes", "kind": "bar", "stacked": True, "columns": [1, 2, 3, 4]},
    {"table": "turnaround", "kind": "line", "columns": [2, 3]},
    {"table": "batch-sizes", "kind": "bar"},
]


@require_GET
def usage_overview(request: AuthenticatedHttpRequest) -> HttpResponse:
    """Every workspace the viewer sees."""
    workspaces = list(Workspace.objects.visible_to(request.user).order_by("name"))
    return _page(request, workspaces, workspace=None)


@require_GET
def workspace_usage(request: AuthenticatedHttpRequest, slug: str) -> HttpResponse:
    workspace = workspace_for(request, slug)
    return _page(request, [workspace], workspace=workspace)


def _page(
    request: HttpRequest, workspaces: list[Workspace], workspace: Workspace | None
) -> HttpResponse:
    zone = timezone.get_current_timezone()
    form = UsagePeriodForm(request.GET, zone=zone)
    figures = None
    if form.is_valid():
        figures = usage.usage(workspaces, form.cleaned_data["period"])
        table_name = request.GET.get("csv")
        if table_name:
            return _csv(figures, table_name, workspace)
    context = {
        "form": form,
        "workspace": workspace,
        "workspaces": workspaces,
        "figures": figures,
        "charts": _charts(figures) if figures else [],
        "budget": budgets.budget_status(workspace) if workspace else None,
        "can": roles.abilities(request.user, workspace) if workspace else {},
        "query": _without_csv(request.GET),
        "presets": _presets(zone),
        "zone_name": str(zone),
    }
    return render(request, "batches/usage.html", context, status=200 if form.is_valid() else 400)


def _without_csv(params: QueryDict) -> str:
    params = params.copy()
    params.pop("csv", None)
    return params.urlencode()


def _presets(zone: ZoneInfo) -> list[dict]:
    """A few periods one click away: the last 7 and 30 days by day, this month, the last 12
    months by month."""
    today = timezone.localdate(timezone=zone)
    year_ago = (today.replace(day=1) - timedelta(days=335)).replace(day=1)
    periods = [
        ("Last 7 days", today - timedelta(days=6), "day"),
        ("Last 30 days", today - timedelta(days=29), "day"),
        ("This month", today.replace(day=1), "day"),
        ("Last 12 weeks", today - timedelta(weeks=12), "week"),
        ("Last 12 months", year_ago, "month"),
    ]
    return [
        {"label": label, "query": urlencode({"start": start, "end": today, "by": by})}
        for label, start, by in periods
    ]


def _charts(figures: usage.Usage) -> list[dict]:
    """What the page's script draws: each chart's labels and series, from its table."""
    tables = figures.tables()
    charts = []
    for chart in CHARTS:
        table = tables[chart["table"]]
        columns = chart.get("columns") or list(range(1, len(table.columns)))
        if chart.get("skip_last"):
            columns = columns[:-1]
        charts.append(
            {
                "id": chart["table"],
                "kind": chart["kind"],
                "stacked": chart.get("stacked", False),
                "labels": [row[0] for row in table.rows],
                "series": [
                    {
                        "name": table.columns[column],
                        "values": [_number(row[column]) for row in table.rows],
                    }
                    for column in columns
                ],
            }
        )
    return charts


def _number(value: str | int | float | Decimal | None) -> float | None:
    if value in ("", None):
        return None
    return float(value)


def _csv(figures: usage.Usage, table_name: str, workspace: Workspace | None) -> HttpResponse:
    table = figures.tables().get(table_name)
    if table is None:
        raise Http404("No such table.")
    out = io.StringIO()
    out.write(BOM)
    writer = csv.writer(out)
    writer.writerow(table.columns)
    for row in table.rows:
        writer.writerow(safe_row(row))
    period = figures.period
    scope = workspace.slug if workspace else "all-workspaces"
    name = f"{scope}-{table_name}-{period.start:%Y%m%d}-{period.end:%Y%m%d}-by-{period.bucket}.csv"
    response = HttpResponse(out.getvalue(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response

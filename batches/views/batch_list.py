"""The batch lists: every batch the person can see (home), one workspace's, and the workspaces."""

from typing import Any

from django.http import HttpResponse, QueryDict
from django.shortcuts import render
from django.views.decorators.http import require_GET

from batches import polling, selectors
from batches.models import Workspace
from batches.views.access import AuthenticatedHttpRequest, poll_key, query_text, workspace_for

LIST = "batches/_batch_list.html"


def _chosen_filters(params: QueryDict, *, fixed_workspace: Workspace | None) -> dict[str, str]:
    return {
        "workspace": "" if fixed_workspace else query_text(params, "workspace", 50),
        "status": query_text(params, "status", 20),
        "problems": query_text(params, "problems", 20),
        "submitter": query_text(params, "submitter", 20),
        "label": query_text(params, "label", 40),
        "sort": query_text(params, "sort", 20),
        "q": query_text(params, "q"),
    }


def _sort_links(params: QueryDict, current: str) -> dict[str, dict]:
    """Each sortable column's link (the filters kept, back to the first page) and its state:
    a first click sorts most first, a second least first."""
    name, descending = selectors.sort_key(current)
    links = {}
    for column in selectors.SORTS:
        query = params.copy()
        for key in ("page", "v"):
            query.pop(key, None)
        query["sort"] = column if column == name and descending else f"-{column}"
        state = ("descending" if descending else "ascending") if column == name else ""
        links[column] = {"query": query.urlencode(), "state": state}
    return links


def _batch_list(
    request: AuthenticatedHttpRequest, template: str, *, slug: str | None = None
) -> HttpResponse:
    key = poll_key(request, "batch-list", slug)
    if polling.unchanged(request, key):
        return polling.nothing_new()
    workspace = workspace_for(request, slug) if slug is not None else None
    chosen = _chosen_filters(request.GET, fixed_workspace=workspace)
    page = selectors.batch_page(request.user, chosen, request.GET.get("page"), workspace=workspace)
    rows = list(page.object_list)
    workspaces = [workspace] if workspace else list(Workspace.objects.visible_to(request.user))
    query = request.GET.copy()
    query.pop("page", None)
    query.pop("v", None)
    context: dict[str, Any] = {
        "found": selectors.results_across_batches(request.user, chosen["q"], workspace)
        if chosen["q"]
        else None,
        "search_text": chosen["q"],
        "sorts": _sort_links(request.GET, chosen["sort"]),
        "page": page,
        "rows": rows,
        "workspace": workspace,
        "workspaces": workspaces,
        "any_active": any(batch.still_changing for batch in rows),
        "filtering": any(chosen.values()),
        "query": query.urlencode(),
    }
    polling.render_region(request, LIST, "list", context, key)
    if polling.is_fragment(request):
        return _list_poll_answer(request, context)
    context.update(
        filters=chosen,
        status_filters=selectors.STATUS_FILTERS,
        problem_filters=selectors.PROBLEM_FILTERS,
        submitters=selectors.submitters(workspaces),
        labels_in_use=selectors.labels_in_use(workspaces, chosen["label"]),
        has_workspaces=bool(workspaces),
    )
    if workspace is None:
        context["preference"] = selectors.preference(request.user)
    return render(request, template, context)


def _list_poll_answer(request: AuthenticatedHttpRequest, context: dict[str, Any]) -> HttpResponse:
    """The list polls for as long as it is open (a batch may start anywhere, any time): 204 while
    what it would show is what it shows."""
    if request.GET.get("v") == context["fingerprint"]:
        return polling.nothing_new()
    return polling.announce(render(request, f"{LIST}#list", context))


@require_GET
def home(request: AuthenticatedHttpRequest) -> HttpResponse:
    return _batch_list(request, "batches/home.html")


@require_GET
def workspace_batches(request: AuthenticatedHttpRequest, slug: str) -> HttpResponse:
    return _batch_list(request, "batches/workspace_batches.html", slug=slug)


@require_GET
def workspace_list(request: AuthenticatedHttpRequest) -> HttpResponse:
    workspaces = selectors.workspaces_with_counts(request.user)
    return render(request, "batches/workspace_list.html", {"workspaces": workspaces})

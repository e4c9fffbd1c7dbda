from django.core.paginator import Paginator
from django.db.models import Count, Q
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET

from batches.models import Batch, Result, Workspace

BATCHES_PER_PAGE = 25
RESULTS_PER_PAGE = 50


def _get_workspace_for_user(request, slug) -> Workspace:
    return get_object_or_404(Workspace.objects.visible_to(request.user), slug=slug)


def _get_batch_for_user(request, slug, api_id) -> Batch:
    batches = Batch.objects.visible_to(request.user).select_related("workspace", "submitted_by")
    return get_object_or_404(batches, workspace__slug=slug, api_id=api_id)


@require_GET
def home(request):
    workspaces = Workspace.objects.visible_to(request.user)
    batches = (
        Batch.objects.visible_to(request.user)
        .select_related("workspace", "submitted_by")
        .order_by("-created_at", "-id")
    )
    page = Paginator(batches, BATCHES_PER_PAGE).get_page(request.GET.get("page"))
    return render(
        request,
        "batches/home.html",
        {"page": page, "has_workspaces": workspaces.exists()},
    )


@require_GET
def workspace_list(request):
    workspaces = Workspace.objects.visible_to(request.user).annotate(
        batch_count=Count("batches", filter=Q(batches__gone_at=None)),
        active_count=Count(
            "batches",
            filter=Q(batches__gone_at=None, batches__processing_status__in=Batch.ACTIVE),
        ),
    )
    return render(request, "batches/workspace_list.html", {"workspaces": workspaces})


@require_GET
def workspace_batches(request, slug):
    workspace = _get_workspace_for_user(request, slug)
    batches = workspace.batches.select_related("submitted_by").order_by("-created_at", "-id")
    page = Paginator(batches, BATCHES_PER_PAGE).get_page(request.GET.get("page"))
    return render(request, "batches/workspace_batches.html", {"workspace": workspace, "page": page})


@require_GET
def batch_detail(request, slug, api_id):
    batch = _get_batch_for_user(request, slug, api_id)
    return render(request, "batches/batch_detail.html", {"batch": batch})


@require_GET
def batch_results(request, slug, api_id):
    """Results in custom_id order, paged by key (`after`/`before` a custom_id) on the unique
    (batch, custom_id) index, so page 2,000 costs what page 1 does."""
    batch = _get_batch_for_user(request, slug, api_id)
    results = Result.objects.filter(batch=batch).defer("content")
    result_type = request.GET.get("type", "")
    if result_type in Result.Type.values:
        results = results.filter(result_type=result_type)
    after, before = request.GET.get("after", ""), request.GET.get("before", "")
    if before:
        rows = list(
            results.filter(custom_id__lt=before).order_by("-custom_id")[: RESULTS_PER_PAGE + 1]
        )
        has_previous = len(rows) > RESULTS_PER_PAGE
        rows = rows[:RESULTS_PER_PAGE][::-1]
        has_next = True
    else:
        if after:
            results = results.filter(custom_id__gt=after)
        rows = list(results.order_by("custom_id")[: RESULTS_PER_PAGE + 1])
        has_next = len(rows) > RESULTS_PER_PAGE
        rows = rows[:RESULTS_PER_PAGE]
        has_previous = bool(after)
    return render(
        request,
        "batches/batch_results.html",
        {
            "batch": batch,
            "results": rows,
            "result_type": result_type,
            "result_types": Result.Type.choices,
            "has_next": has_next and bool(rows),
            "has_previous": has_previous and bool(rows),
            "first_id": rows[0].custom_id if rows else "",
            "last_id": rows[-1].custom_id if rows else "",
        },
    )

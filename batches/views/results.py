"""A batch's results: the explorer (filtered, paged by key), one result, and its raw line."""

import json
from urllib.parse import urlencode

from django.http import HttpResponse, QueryDict
from django.shortcuts import render
from django.views.decorators.http import require_GET

from batches import downloads, polling, selectors
from batches.models import Result
from batches.pricing import USAGE_FIELDS, usage_cost
from batches.views.access import AuthenticatedHttpRequest, batch_for, query_text, result_for

RESULTS = "batches/batch_results.html"


def _chosen_filters(params: QueryDict) -> dict[str, str]:
    chosen = {
        "type": query_text(params, "type", 20),
        "error_type": query_text(params, "error_type", 64),
        "stop_reason": query_text(params, "stop_reason", 32),
        "q": query_text(params, "q"),
    }
    if chosen["type"] not in Result.Type.values:
        chosen["type"] = ""
    return chosen


@require_GET
def batch_results(request: AuthenticatedHttpRequest, slug: str, api_id: str) -> HttpResponse:
    batch = batch_for(request, slug, api_id)
    chosen = _chosen_filters(request.GET)
    page = selectors.results_page(
        selectors.filter_results(batch, chosen),
        after=query_text(request.GET, "after"),
        before=query_text(request.GET, "before"),
    )
    query = {key: value for key, value in chosen.items() if value}
    context = {
        "batch": batch,
        **page,
        "result_type": chosen["type"],
        "filters": chosen,
        "filtering": bool(query),
        "query": urlencode(query),
        "result_types": Result.Type.choices,
    }
    if polling.is_fragment(request):
        return render(request, f"{RESULTS}#results", context)
    context["facets"] = selectors.facet_counts(batch)
    return render(request, RESULTS, context)


def _usage(result: Result) -> dict:
    return {name: getattr(result, name) for name in USAGE_FIELDS}


@require_GET
def result_detail(
    request: AuthenticatedHttpRequest, slug: str, api_id: str, custom_id: str
) -> HttpResponse:
    batch = batch_for(request, slug, api_id)
    result = result_for(batch, custom_id)
    previous_id, next_id = selectors.neighbours(batch, custom_id)
    batch_request = selectors.request_for(batch, custom_id)
    succeeded = result.result_type == Result.Type.SUCCEEDED
    context = {
        "batch": batch,
        "result": result,
        "params": batch_request.load()["params"] if batch_request else None,
        "batch_request": batch_request,
        "previous_id": previous_id,
        "next_id": next_id,
        "cost": usage_cost(result.model, _usage(result)) if succeeded else None,
    }
    return render(request, "batches/result_detail.html", context)


def _rebuilt_line(result: Result) -> dict:
    """The result's line as the API sends it, rebuilt from what is stored of it."""
    item: dict = {"custom_id": result.custom_id, "result": {"type": result.result_type}}
    if result.content is not None:
        item["result"]["message"] = {
            "model": result.model,
            "content": result.content,
            "stop_reason": result.stop_reason or None,
            "usage": _usage(result),
        }
    if result.error_type:
        item["result"]["error"] = {
            "type": "error",
            "error": {"type": result.error_type, "message": result.error_message},
        }
    return item


@require_GET
def result_raw(
    request: AuthenticatedHttpRequest, slug: str, api_id: str, custom_id: str
) -> HttpResponse:
    batch = batch_for(request, slug, api_id)
    result = result_for(batch, custom_id)
    item = downloads.raw_result_line(batch, custom_id)
    source = "the results file as the API sent it"
    if item is None:
        source = "rebuilt from the stored result (the raw file is not kept, or too big to search)"
        item = _rebuilt_line(result)
    batch_request = selectors.request_for(batch, custom_id)
    context = {
        "source": source,
        "raw": json.dumps(item, indent=2, ensure_ascii=False),
        "request_raw": json.dumps(batch_request.load(), indent=2, ensure_ascii=False)
        if batch_request
        else "",
    }
    return render(request, "batches/result_detail.html#raw", context)

"""The Message Batches API's endpoints, thin: the work is in `processing` and `validation`.

Every view goes through `api_view`, which does what the API does before any endpoint runs: a
`request-id` on every answer, the key (401 without one), the version header, and the faults the
key or the settings ask for.
"""

import functools
import itertools
import time
from collections.abc import Callable, Iterator
from typing import Any, Concatenate, NoReturn

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.http import Http404, HttpRequest, JsonResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.common import no_append_slash
from django.views.decorators.csrf import csrf_exempt

from emulator import catalog, faults, processing
from emulator.faults import FaultPlan
from emulator.models import EmulatedBatch, ProcessingStatus
from emulator.validation import InvalidBatch, check_params, parse_create_body, parse_message_body

_FAULT_ERRORS = {
    429: ("rate_limit_error", "This request would exceed the rate limit for your organization."),
    500: ("api_error", "Internal server error"),
    529: ("overloaded_error", "Overloaded"),
}


class ErrorAnswer(Exception):
    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status, self.kind, self.message = status, kind, message


def error_response(request_id: str, status: int, kind: str, message: str) -> JsonResponse:
    body = {"type": "error", "error": {"type": kind, "message": message}, "request_id": request_id}
    return JsonResponse(body, status=status)


def _api_key(request: HttpRequest) -> str | None:
    key = request.headers.get("x-api-key", "").strip()
    if not key:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer":
            key = token.strip()
    return key or None


# An endpoint as written: it is given the request, the key's workspace and the key's faults, then
# the URL's arguments; `api_view` makes it a Django view, given the request and those arguments.
type Endpoint[**P] = Callable[Concatenate[HttpRequest, str, FaultPlan, P], HttpResponseBase]
type View[**P] = Callable[Concatenate[HttpRequest, P], HttpResponseBase]


def api_view[**P](methods: tuple[str, ...]) -> Callable[[Endpoint[P]], View[P]]:
    def decorate(view: Endpoint[P]) -> View[P]:
        @csrf_exempt
        @login_not_required
        @no_append_slash
        @functools.wraps(view)
        def wrapper(request: HttpRequest, *args: P.args, **kwargs: P.kwargs) -> HttpResponseBase:
            if not settings.EMULATOR_ENABLED:
                # Off in production unless asked for: anyone could store batches in it.
                raise Http404("The emulator is turned off (EMULATOR_ENABLED).")
            request_id = processing.random_id("req_")
            response = _answer(request, request_id, view, methods, args, kwargs)
            response["request-id"] = request_id
            return response

        return wrapper

    return decorate


def _answer(
    request: HttpRequest,
    request_id: str,
    view: Endpoint[...],
    methods: tuple[str, ...],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> HttpResponseBase:
    api_key = _api_key(request)
    if api_key is None:
        return error_response(
            request_id, 401, "authentication_error", "x-api-key header is required"
        )
    if faults.is_revoked(api_key):
        return error_response(request_id, 401, "authentication_error", "invalid x-api-key")
    if not request.headers.get("anthropic-version"):
        return error_response(
            request_id, 400, "invalid_request_error", "anthropic-version: header is required"
        )
    plan = faults.plan_for(api_key)
    if plan.latency_seconds:
        time.sleep(plan.latency_seconds)
    status = faults.failure_for(api_key, plan)
    if status is not None:
        response = error_response(request_id, status, *_FAULT_ERRORS[status])
        if status == 429 or plan.retry_after_seconds:
            response["retry-after"] = str(plan.retry_after_seconds)
        return response
    if request.method not in methods:
        return error_response(
            request_id, 405, "invalid_request_error", f"Method {request.method} not allowed"
        )
    try:
        return view(request, faults.workspace_of(api_key), plan, *args, **kwargs)
    except ErrorAnswer as exc:
        return error_response(request_id, exc.status, exc.kind, exc.message)


def _get_batch(workspace: str, batch_id: str) -> EmulatedBatch:
    """The batch if this key's workspace has it; another workspace's batch is simply not found."""
    batch = EmulatedBatch.objects.in_workspace(workspace).filter(batch_id=batch_id).first()
    if batch is None:
        raise ErrorAnswer(404, "not_found_error", f"Message batch {batch_id} not found")
    return batch


def _batch_json(request: HttpRequest, batch: EmulatedBatch) -> dict:
    url = request.build_absolute_uri(reverse("emulator:batch_results", args=[batch.batch_id]))
    return processing.batch_body(batch, url)


def _limit(request: HttpRequest) -> int:
    raw = request.GET.get("limit", "20")
    try:
        limit = int(raw)
    except ValueError:
        raise ErrorAnswer(
            400, "invalid_request_error", "limit: Input should be a valid integer"
        ) from None
    if not 1 <= limit <= 1000:
        raise ErrorAnswer(
            400,
            "invalid_request_error",
            "limit: Input should be greater than or equal to 1 and less than or equal to 1000",
        )
    return limit


def _page[T](items: list[T], ids: list[str], request: HttpRequest) -> tuple[list[T], bool]:
    """One page of `items` (newest first) as the API pages: `after_id` older, `before_id` newer."""
    limit = _limit(request)
    after_id, before_id = request.GET.get("after_id"), request.GET.get("before_id")
    if after_id and before_id:
        raise ErrorAnswer(
            400, "invalid_request_error", "Specify only one of after_id and before_id"
        )
    cursor = after_id or before_id
    if cursor:
        if cursor not in ids:
            name = "after_id" if after_id else "before_id"
            raise ErrorAnswer(400, "invalid_request_error", f"{name}: no object with id {cursor}")
        at = ids.index(cursor)
        if after_id:
            rest = items[at + 1 :]
            return rest[:limit], len(rest) > limit
        rest = items[:at]
        return rest[-limit:], len(rest) > limit
    return items[:limit], len(items) > limit


def _list_body(data: list[dict], has_more: bool) -> dict:
    return {
        "data": data,
        "has_more": has_more,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
    }


@api_view(("GET", "POST"))
def batches(request: HttpRequest, workspace: str, plan: FaultPlan) -> JsonResponse:
    if request.method == "POST":
        return _create(request, workspace, plan)
    # Only ids are loaded to find the page, so a workspace with many batches stays cheap.
    rows = list(
        EmulatedBatch.objects.in_workspace(workspace).newest_first().values_list("seq", "batch_id")
    )
    page, has_more = _page(rows, [batch_id for _, batch_id in rows], request)
    found = EmulatedBatch.objects.in_bulk([seq for seq, _ in page])
    data = [_batch_json(request, found[seq]) for seq, _ in page]
    return JsonResponse(_list_body(data, has_more))


def _body(request: HttpRequest) -> bytes:
    """The request's body, refused (413) above EMULATOR_MAX_BODY_BYTES as the API refuses."""
    limit = settings.EMULATOR_MAX_BODY_BYTES
    too_large = ErrorAnswer(
        413, "request_too_large", f"Request exceeds the maximum size of {limit} bytes"
    )
    try:
        declared = int(request.headers.get("content-length") or 0)
    except ValueError:
        declared = 0
    if declared > limit:
        raise too_large
    # Read the stream directly: `request.body` would stop at DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB).
    raw = request.read(limit + 1)
    if len(raw) > limit:
        raise too_large
    return raw


def _betas(request: HttpRequest) -> list[str]:
    names = [name.strip() for name in request.headers.get("anthropic-beta", "").split(",")]
    return [name for name in names if name][:10]


def _create(request: HttpRequest, workspace: str, plan: FaultPlan) -> JsonResponse:
    raw = _body(request)
    try:
        requests = parse_create_body(raw)
    except InvalidBatch as exc:
        raise ErrorAnswer(400, "invalid_request_error", str(exc)) from None
    del raw
    betas = _betas(request)
    batch = processing.create_batch(workspace, requests, slow=plan.slow_batches, betas=betas)
    if plan.lose_create_answers and faults.take_lost_create_answer(workspace):
        # The batch exists, but the client hears only an error (a rehearsal of a lost answer).
        for _ in range(plan.lookalikes_with_lost_answer):
            processing.create_batch(workspace, requests, slow=plan.slow_batches, betas=betas)
        raise ErrorAnswer(500, "api_error", "Internal server error")
    return JsonResponse(_batch_json(request, batch))


@api_view(("POST",))
def messages(request: HttpRequest, workspace: str, plan: FaultPlan) -> JsonResponse:
    """`POST /v1/messages`: one request answered at once, by the generator, validation and
    faults that answer a batch's requests, at the standard service tier."""
    try:
        params = parse_message_body(_body(request))
    except InvalidBatch as exc:
        raise ErrorAnswer(400, "invalid_request_error", str(exc)) from None
    problem = check_params(params, _betas(request), in_batch=False)
    if problem:
        raise ErrorAnswer(400, "invalid_request_error", problem)
    request_id = processing.random_id("req_")
    message = processing.generate_message(request_id, "message", params, service_tier="standard")
    return JsonResponse(message)


@api_view(("GET", "DELETE"))
def batch(request: HttpRequest, workspace: str, plan: FaultPlan, batch_id: str) -> JsonResponse:
    found = _get_batch(workspace, batch_id)
    if request.method == "GET":
        return JsonResponse(_batch_json(request, found))
    found = processing.finalize_if_due(found)
    if processing.status_at(found, timezone.now()) != ProcessingStatus.ENDED:
        raise ErrorAnswer(
            400,
            "invalid_request_error",
            f"Message batch {batch_id} cannot be deleted while it is processing; cancel it first",
        )
    found.delete()
    return JsonResponse({"id": batch_id, "type": "message_batch_deleted"})


@api_view(("POST",))
def batch_cancel(
    request: HttpRequest, workspace: str, plan: FaultPlan, batch_id: str
) -> JsonResponse:
    found = processing.cancel(_get_batch(workspace, batch_id))
    return JsonResponse(_batch_json(request, found))


@api_view(("GET",))
def batch_results(
    request: HttpRequest, workspace: str, plan: FaultPlan, batch_id: str
) -> HttpResponseBase:
    found = processing.finalize_if_due(_get_batch(workspace, batch_id))
    if found.ended_at is None:
        raise ErrorAnswer(
            400,
            "invalid_request_error",
            f"Message batch {batch_id} has not finished processing; its results are available "
            "once processing_status is ended",
        )
    if timezone.now() >= found.created_at + processing.RESULTS_KEPT:
        raise ErrorAnswer(
            404, "not_found_error", f"The results of message batch {batch_id} have been archived"
        )
    if plan.redirect_results:
        response = JsonResponse({}, status=307)
        response["Location"] = f"https://files.example.invalid/results/{batch_id}.jsonl"
        return response
    lines = processing.results_lines(found)
    if plan.cut_results:
        lines = _cut_midway(lines, found.request_count)
    elif plan.short_results:
        lines = itertools.islice(lines, found.request_count // 2)
    return StreamingHttpResponse(lines, content_type="application/binary")


def _cut_midway(lines: Iterator[bytes], count: int) -> Iterator[bytes]:
    """Half the lines, then half a line: what a client sees when a download breaks."""
    for number, line in enumerate(lines):
        if number == count // 2:
            yield line[: len(line) // 2]
            return
        yield line


@api_view(("GET",))
def models_list(request: HttpRequest, workspace: str, plan: FaultPlan) -> JsonResponse:
    ids = [spec.id for spec in catalog.MODELS]
    page, has_more = _page(list(catalog.MODELS), ids, request)
    return JsonResponse(_list_body([catalog.model_info(spec) for spec in page], has_more))


@api_view(("GET",))
def model_detail(
    request: HttpRequest, workspace: str, plan: FaultPlan, model_id: str
) -> JsonResponse:
    spec = catalog.find(model_id)
    if spec is None:
        raise ErrorAnswer(404, "not_found_error", f"model: {model_id}")
    return JsonResponse(catalog.model_info(spec))


@api_view(("GET", "POST", "PUT", "PATCH", "DELETE"))
def not_found(request: HttpRequest, workspace: str, plan: FaultPlan, path: str = "") -> NoReturn:
    raise ErrorAnswer(404, "not_found_error", f"Not found: /{path}")

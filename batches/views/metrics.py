"""`/metrics` for operators: Prometheus' text format, behind a bearer token (METRICS_TOKEN);
without the setting the page does not exist."""

import hmac

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.http import Http404, HttpRequest, HttpResponse
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from batches.metrics import DashboardCollector


@login_not_required
@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    token = settings.METRICS_TOKEN
    if not token:
        raise Http404("Metrics are turned off (METRICS_TOKEN).")
    # RFC 6750's form only: the scheme (any case), one space, the token. A bare token is not
    # taken, so a token pasted into the wrong header or a proxy's log line is not one.
    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        given.strip().encode(), token.encode()
    ):
        # A wrong token and a missing one are told apart (an operator's typo is not a
        # forgotten header); neither says anything of the right one.
        said = (
            "That bearer token is not the one METRICS_TOKEN holds.\n"
            if scheme.lower() == "bearer"
            else "A bearer token is needed: send Authorization: Bearer <METRICS_TOKEN>.\n"
        )
        response = HttpResponse(said, status=401, content_type="text/plain")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    registry = CollectorRegistry()
    registry.register(DashboardCollector())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)

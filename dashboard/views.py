import logging
from collections.abc import Mapping
from typing import Any

import redis
from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.db import connection
from django.http import HttpRequest, HttpResponse, HttpResponsePermanentRedirect, JsonResponse
from django.templatetags.static import static
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

logger = logging.getLogger(__name__)


def _database_ok() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception:
        logger.exception("Health check: the database is unreachable")
        return False
    return True


def _broker_ok() -> bool:
    client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2, socket_timeout=2)
    try:
        return bool(client.ping())
    except redis.RedisError:
        logger.warning("Health check: the broker at REDIS_URL is unreachable")
        return False
    finally:
        client.close()


@login_not_required
@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """200 when the database and the broker both answer, 503 naming the one that does not."""
    checks = {
        "database": "ok" if _database_ok() else "unreachable",
        "broker": "ok" if _broker_ok() else "unreachable",
    }
    healthy = all(state == "ok" for state in checks.values())
    return JsonResponse(
        {"status": "ok" if healthy else "unavailable", **checks}, status=200 if healthy else 503
    )


def locked_out(
    request: HttpRequest,
    credentials: Mapping[str, Any] | None = None,
    *args: Any,
    **kwargs: Any,
) -> HttpResponse:
    """What a login form answers after too many failures (django-axes calls this): the form
    again, saying until when logins from here wait. 429, as for any rate limit."""
    from django.contrib.auth.forms import AuthenticationForm
    from django.shortcuts import render
    from django.utils import timezone
    from django.utils.formats import time_format

    minutes = int(settings.AXES_COOLOFF_TIME.total_seconds() // 60)
    until = timezone.localtime(timezone.now() + settings.AXES_COOLOFF_TIME)
    form = AuthenticationForm(request, initial={"username": (credentials or {}).get("username")})
    message = (
        f"Too many failed logins. Try again in {minutes} minutes, at {time_format(until)}; "
        "an administrator can lift the wait sooner."
    )
    template = (
        "admin/login.html" if request.path.startswith("/admin/") else "registration/login.html"
    )
    context = {"form": form, "locked_out": message, "next": request.POST.get("next", "")}
    if template.startswith("admin/"):
        from django.contrib import admin

        context.update(admin.site.each_context(request), title="Log in")
        form.errors["__all__"] = form.error_class([message])
    return render(request, template, context, status=429)


@login_not_required
@require_GET
def favicon(request: HttpRequest) -> HttpResponsePermanentRedirect:
    """The icon the pages link to, for whatever asks /favicon.ico (looked up at the request: the
    static files' manifest names it)."""
    return HttpResponsePermanentRedirect(static("favicon.svg"))

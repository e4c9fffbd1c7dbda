import contextlib
import logging
import zoneinfo
from collections.abc import Callable
from functools import cache

import redis
from django.conf import settings
from django.contrib import messages
from django.core.handlers.wsgi import WSGIRequest
from django.http import HttpRequest, HttpResponseRedirect, JsonResponse
from django.http.response import HttpResponseBase
from django.utils import timezone

from foundations import slow_clients

logger = logging.getLogger(__name__)

GetResponse = Callable[[HttpRequest], HttpResponseBase]


@cache
def _redis() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=1, socket_connect_timeout=1)


class TimezoneMiddleware:
    """Show times in the viewer's timezone.

    The base template's script stores the browser's IANA zone in the `tz` cookie; until it is
    there (the very first page), times are shown in UTC and labelled so.
    """

    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        name = request.COOKIES.get("tz", "")
        try:
            timezone.activate(zoneinfo.ZoneInfo(name)) if name else timezone.deactivate()
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            timezone.deactivate()
        try:
            return self.get_response(request)
        finally:
            timezone.deactivate()


class UploadsPerPersonMiddleware:
    """At most UPLOADS_PER_USER uploads on their way for one login at once, counted in Redis
    across every process (foundations/slow_clients.py): another is answered 429 at once, its
    body unread, saying what to do. Redis out of reach counts nothing rather than refuse."""

    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response

    # The body is the WSGI server's (foundations.slow_clients wraps it): a WSGI request.
    def __call__(self, request: WSGIRequest) -> HttpResponseBase:
        body = request.environ.get("dashboard.body")
        if (
            body is None
            or body.length < settings.UPLOAD_MIN_BYTES
            or not request.user.is_authenticated
        ):
            return self.get_response(request)
        in_flight = slow_clients.UploadsInFlight(_redis(), request.user.pk)
        try:
            entered = in_flight.enter()
        except redis.RedisError as error:
            logger.warning("Uploads in flight not counted (Redis: %s)", error)
            return self.get_response(request)
        if not entered:
            return self._refusal(request)
        body.on_progress = in_flight.keep
        try:
            return self.get_response(request)
        finally:
            body.on_progress = None
            with contextlib.suppress(redis.RedisError):  # else the entry lapses by itself
                in_flight.leave()

    @staticmethod
    def _refusal(request: WSGIRequest) -> HttpResponseBase:
        slow_clients.leave_unread(request.environ)
        count = settings.UPLOADS_PER_USER
        uploads = f"{count} uploads on their way" if count != 1 else "an upload on its way"
        message = f"You have {uploads} already: wait for one to finish, then upload this file."
        if request.content_type == "application/octet-stream":  # the upload page's script
            return JsonResponse({"message": message}, status=429, headers={"Retry-After": "30"})
        messages.error(request, message)
        return HttpResponseRedirect(request.path, status=303)

import zoneinfo

from django.utils import timezone


class TimezoneMiddleware:
    """Show times in the viewer's timezone.

    The base template's script stores the browser's IANA zone in the `tz` cookie; until it is
    there (the very first page), times are shown in UTC and labelled so.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        name = request.COOKIES.get("tz", "")
        try:
            timezone.activate(zoneinfo.ZoneInfo(name)) if name else timezone.deactivate()
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            timezone.deactivate()
        try:
            return self.get_response(request)
        finally:
            timezone.deactivate()

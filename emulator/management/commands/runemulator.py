"""Serve the emulator alone: `python manage.py runemulator --port 8765`.

Base URL `http://127.0.0.1:PORT` (the API's paths at the root), for scripts, the SDK and other
tools that want a sandbox without the dashboard. Threaded, so a long results download does not
block a poll.
"""

from typing import Any

from django.conf import settings
from django.core.handlers.wsgi import WSGIHandler
from django.core.management.base import BaseCommand, CommandParser
from django.core.servers.basehttp import run
from django.http import HttpRequest
from django.http.response import HttpResponseBase


class StandaloneHandler(WSGIHandler):
    """The project's WSGI handler with the emulator's URLconf at the root."""

    def get_response(self, request: HttpRequest) -> HttpResponseBase:
        request.urlconf = "emulator.standalone_urls"
        return super().get_response(request)


class Command(BaseCommand):
    help = "Serve the Message Batches API emulator alone, at the root of 127.0.0.1:PORT."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=8765)
        parser.add_argument("--host", default="127.0.0.1")

    def handle(self, *args: Any, host: str, port: int, **options: Any) -> None:
        settings.EMULATOR_ENABLED = True  # running it on purpose is turning it on
        # Scripts use whatever host name they were given; this server answers only on `host`.
        if host not in settings.ALLOWED_HOSTS and "*" not in settings.ALLOWED_HOSTS:
            settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, host]
        self.stdout.write(f"Emulator at http://{host}:{port} (base URL for the SDK)", ending="\n")
        self.stdout.flush()
        run(host, port, StandaloneHandler(), ipv6=":" in host, threading=True)

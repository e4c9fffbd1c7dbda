"""The WSGI application: Django's, with every request body watched so that slow clients cannot
hold the web process (foundations/slow_clients.py)."""

import os
from wsgiref.types import WSGIApplication

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
application: WSGIApplication = get_wsgi_application()

from foundations.slow_clients import guard_bodies  # noqa: E402 (after Django is set up)

application = guard_bodies(application)

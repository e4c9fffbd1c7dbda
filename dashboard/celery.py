"""The Celery app, configured from Django settings (the CELERY_* names)."""

import os

from celery import Celery
from celery.signals import worker_ready

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")

app = Celery("dashboard")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_ready.connect
def _sweep_scratch(**kwargs: object) -> None:
    """A worker starting on this machine removes what killed workers here left behind."""
    from foundations.storage import sweep_scratch

    sweep_scratch()


@app.task(name="dashboard.ping", ignore_result=False)
def ping(value: object) -> dict[str, object]:
    """A no-op round trip, used by the health check's tests and by operators to test a worker."""
    return {"pong": value}

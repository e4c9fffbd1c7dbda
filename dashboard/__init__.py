"""The Django project. Its Celery app is loaded with Django (Celery's documented way), so the
apps' shared tasks bind to it, with its settings and its Django task class (`delay_on_commit`),
whichever process imports them first."""

from dashboard.celery import app as celery_app

__all__ = ["celery_app"]

import pytest
from django.db import DatabaseError
from django.test import override_settings

pytestmark = pytest.mark.django_db


def test_it_answers_200_when_the_database_and_broker_are_up(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "broker": "ok"}


def test_it_needs_no_login(client):
    assert client.get("/healthz").status_code == 200


@override_settings(REDIS_URL="redis://127.0.0.1:1/0")
def test_it_answers_503_naming_the_broker_when_redis_is_unreachable(client):
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["broker"] == "unreachable"
    assert response.json()["database"] == "ok"


def test_it_answers_503_naming_the_database_when_it_fails(client, monkeypatch):
    from django.db.backends.utils import CursorWrapper

    def broken(self, sql, params=None):
        raise DatabaseError("connection refused")

    monkeypatch.setattr(CursorWrapper, "execute", broken)
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["database"] == "unreachable"


def test_it_is_never_cached(client):
    assert "no-cache" in client.get("/healthz")["Cache-Control"]

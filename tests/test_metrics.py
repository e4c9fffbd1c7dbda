"""/metrics: Prometheus' text format behind a bearer token, parsed here by the official client's
own parser, with every figure checked against sums worked out by hand."""

from datetime import timedelta

import pytest
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from batches import audit, call_stats
from batches.client import ApiClient, ApiError
from batches.models import Batch
from batches.workspaces import create_workspace
from tests import factories

pytestmark = pytest.mark.django_db
TOKEN = "metrics-token-0123456789"
AUTH = {"HTTP_AUTHORIZATION": f"Bearer {TOKEN}"}


def scrape(client) -> dict:
    """{(name, frozenset(labels)): value} of every sample."""
    response = client.get("/metrics", **AUTH)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def test_it_is_off_without_a_token_and_refuses_a_wrong_one(client, settings):
    settings.METRICS_TOKEN = ""
    assert client.get("/metrics", **AUTH).status_code == 404
    settings.METRICS_TOKEN = TOKEN
    wrong = ["Bearer nope", TOKEN[:-1], TOKEN, f"Basic {TOKEN}", f"Bearer{TOKEN}"]
    for header in [{}, *({"HTTP_AUTHORIZATION": value} for value in wrong)]:
        response = client.get("/metrics", **header)
        assert response.status_code == 401 and response["WWW-Authenticate"].startswith("Bearer")
    assert client.get("/metrics", **AUTH).status_code == 200  # no login needed
    wrong = client.get("/metrics", HTTP_AUTHORIZATION="Bearer nope").content.decode()
    missing = client.get("/metrics").content.decode()
    assert "not the one METRICS_TOKEN holds" in wrong and "A bearer token is needed" in missing
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"bearer {TOKEN}").status_code == 200


def test_batches_results_lag_and_backlog_are_counted(client, settings, workspace, user):
    settings.METRICS_TOKEN = TOKEN
    other = create_workspace("Other", "https://api.example.com", "sk-ant-o", members=[user])
    now = timezone.now()
    factories.running_batch(workspace, last_polled_at=now - timedelta(seconds=40))
    factories.running_batch(workspace, last_polled_at=now - timedelta(seconds=10))
    ended = factories.with_results(factories.batch(workspace))  # 4 results stored
    factories.batch(workspace, gone_at=now)
    waiting = factories.batch(other, results_url="https://api.example.com/v1/r")
    Batch.objects.filter(pk=ended.pk).update(results_ingested=4)
    samples = scrape(client)

    def value(name, **labels):
        return samples[(name, frozenset(labels.items()))]

    assert value("batch_dashboard_batches", workspace="research", status="in_progress") == 2
    assert value("batch_dashboard_batches", workspace="research", status="ended") == 1
    assert value("batch_dashboard_batches", workspace="research", status="deleted") == 1
    assert value("batch_dashboard_batches", workspace="other", status="ended") == 1
    assert value("batch_dashboard_results_stored", workspace="research") == 4
    assert value("batch_dashboard_results_stored", workspace="other") == 0
    assert 40 <= value("batch_dashboard_sync_lag_seconds", workspace="research") < 50
    assert (
        value("batch_dashboard_ingestion_backlog")
        == Batch.objects.filter(Batch.results_fetchable(timezone.now())).count()
        >= 1
    )
    assert waiting.pk in Batch.objects.filter(Batch.results_fetchable(timezone.now())).values_list(
        "pk", flat=True
    )
    assert value("batch_dashboard_celery_queue_length", queue="celery") >= 0


def test_api_calls_are_counted_by_endpoint_and_status_with_latency(client, settings, workspace):
    settings.METRICS_TOKEN = TOKEN
    with ApiClient.for_workspace(workspace, max_attempts=1) as api:
        api.list_batches(limit=1)
        api.list_batches(limit=1)
        with pytest.raises(ApiError):
            api.retrieve_batch("msgbatch_nope")
    samples = scrape(client)
    listed = frozenset({"endpoint": "GET /v1/messages/batches", "status": "200"}.items())
    missing = frozenset({"endpoint": "GET /v1/messages/batches/{id}", "status": "404"}.items())
    assert samples[("batch_dashboard_api_calls_total", listed)] == 2
    assert samples[("batch_dashboard_api_calls_total", missing)] == 1
    route = frozenset({"endpoint": "GET /v1/messages/batches"}.items())
    assert samples[("batch_dashboard_api_call_seconds_count", route)] == 2
    every = frozenset({"endpoint": "GET /v1/messages/batches", "le": "+Inf"}.items())
    assert samples[("batch_dashboard_api_call_seconds_bucket", every)] == 2
    assert samples[("batch_dashboard_api_call_seconds_sum", route)] > 0


def test_retries_are_counted(client, settings, workspace):
    settings.METRICS_TOKEN = TOKEN
    settings.API_RETRY_INITIAL_SECONDS = 0.01
    workspace.set_api_key("sk-ant-fault-500-metrics")
    with ApiClient.for_workspace(workspace, max_attempts=3, sleep=lambda seconds: None) as api:
        api.list_batches(limit=1)
        api.list_batches(limit=1)  # every second call fails: this one is retried
    samples = scrape(client)
    retried = frozenset({"endpoint": "GET /v1/messages/batches"}.items())
    assert samples[("batch_dashboard_api_retries_total", retried)] >= 1
    assert call_stats.endpoint(
        "GET", "http://h/emulator/v1/messages/batches/msgbatch_1/results"
    ) == ("GET /v1/messages/batches/{id}/results")
    assert call_stats.endpoint("GET", "https://elsewhere.example/x") == "GET /other"


def test_the_audit_logs_head_is_reported(client, settings):
    settings.METRICS_TOKEN = TOKEN
    assert scrape(client)[("batch_dashboard_audit_head_id", frozenset())] == 0
    audit.record("login_failed", actor_name="ada", target="username ada")
    newest = audit.record("login_failed", actor_name="lin", target="username lin")
    samples = scrape(client)
    assert samples[("batch_dashboard_audit_head_id", frozenset())] == newest.id
    labels = frozenset({"id": str(newest.id), "hash": newest.hash}.items())
    assert samples[("batch_dashboard_audit_head_info", labels)] == 1

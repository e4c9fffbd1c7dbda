"""Faults on demand: off by default, on for one key or for every key, deterministic."""

import json

import anthropic
import pytest

from emulator.faults import clear_key_faults, set_key_faults
from emulator.testing import make_batch

KEY = "sk-test-faults"
AUTH = {"x-api-key": KEY}


def test_it_answers_normally_by_default(emulator_http):
    statuses = {emulator_http.get("/v1/models", headers=AUTH).status_code for _ in range(10)}
    assert statuses == {200}


def test_it_fails_a_share_of_one_keys_calls_with_429_and_retry_after(emulator_http):
    set_key_faults(KEY, rate_429=0.5, retry_after_seconds=3)
    answers = [emulator_http.get("/v1/models", headers=AUTH) for _ in range(4)]
    assert [answer.status_code for answer in answers] == [200, 429, 200, 429]
    assert answers[1].headers["retry-after"] == "3"
    assert answers[1].json()["error"]["type"] == "rate_limit_error"
    other = emulator_http.get("/v1/models", headers={"x-api-key": "sk-test-other"})
    assert other.status_code == 200

    clear_key_faults(KEY)
    assert emulator_http.get("/v1/models", headers=AUTH).status_code == 200


@pytest.mark.parametrize(("word", "status", "kind"), [
    ("fault-500", 500, "api_error"),
    ("fault-529", 529, "overloaded_error"),
    ("fault-429", 429, "rate_limit_error"),
])  # fmt: skip
def test_it_reads_faults_from_words_in_the_key(emulator_http, word, status, kind):
    headers = {"x-api-key": f"sk-test-{word}"}
    answers = [emulator_http.get("/v1/messages/batches", headers=headers) for _ in range(2)]
    assert [answer.status_code for answer in answers] == [200, status]
    assert answers[1].json()["error"]["type"] == kind


def test_it_fails_every_keys_calls_from_the_settings(emulator_http, settings):
    settings.EMULATOR_FAULT_RATE_529 = 1.0
    assert emulator_http.get("/v1/models", headers=AUTH).status_code == 529


def test_the_sdk_recovers_from_a_fault_by_retrying(emulator_sdk):
    set_key_faults(KEY, rate_500=0.5, retry_after_seconds=0)
    sdk = emulator_sdk(KEY, max_retries=2)
    sdk.models.list()  # call 1 passes, so the next one fails
    assert sdk.models.list().data  # call 2 fails with a 500, the retry (call 3) passes
    with pytest.raises(anthropic.InternalServerError):
        emulator_sdk(KEY, max_retries=0).models.list()


def test_it_cuts_a_results_stream_midway(emulator_http, emulator_sdk, frozen_now):
    batch = make_batch(KEY, 10)
    frozen_now.shift(60)
    set_key_faults(KEY, cut_results=True)
    results = emulator_http.get(f"/v1/messages/batches/{batch.batch_id}/results", headers=AUTH)
    lines = results.text.splitlines()
    assert len(lines) == 6
    for line in lines[:5]:
        json.loads(line)
    with pytest.raises(ValueError):
        json.loads(lines[-1])
    with pytest.raises(ValueError):
        list(emulator_sdk(KEY).messages.batches.results(batch.batch_id))


def test_it_answers_slowly_when_asked(emulator_http):
    set_key_faults(KEY, latency_seconds=0.05)
    answer = emulator_http.get("/v1/models", headers=AUTH)
    assert answer.status_code == 200
    assert answer.elapsed.total_seconds() >= 0.05


@pytest.mark.django_db
def test_it_is_off_unless_enabled(client, settings, admin_user):
    from django.apps import apps

    from batches.apps import BatchesConfig
    from batches.models import Workspace

    settings.EMULATOR_ENABLED = False
    response = client.get("/emulator/v1/models", headers={"x-api-key": "sk-x"})
    assert response.status_code == 404
    config = apps.get_app_config("batches")
    assert isinstance(config, BatchesConfig)
    config.first_run(lambda text: None)
    assert not Workspace.objects.filter(is_sandbox=True).exists()
    settings.EMULATOR_ENABLED = True
    assert client.get("/emulator/v1/models", headers={"x-api-key": "sk-x",
                      "anthropic-version": "2023-06-01"}).status_code == 200  # fmt: skip


@pytest.mark.parametrize(
    "rates",
    [
        {"rate_429": 0.1, "rate_500": 0.1, "rate_529": 0.1},
        {"rate_429": 0.05, "rate_500": 0.2, "rate_529": 0.0},
        {"rate_429": 0.3, "rate_500": 0.1, "rate_529": 0.1},
    ],
)
def test_the_fault_rates_give_the_mix_asked_for_over_a_thousand_calls(db, rates):
    from emulator.faults import failure_for, plan_for

    set_key_faults(KEY, **rates)
    plan = plan_for(KEY)
    seen = [failure_for(KEY, plan) for _ in range(1000)]
    for status, name in ((429, "rate_429"), (500, "rate_500"), (529, "rate_529")):
        assert abs(seen.count(status) - 1000 * rates[name]) <= 1, (status, seen.count(status))
    assert seen.count(None) == 1000 - round(1000 * sum(rates.values()))

"""Beta features per upload: read from what people type, applied by the file check and the
emulator alike (a larger output limit for the model that has one), and sent in the create
call's anthropic-beta header."""

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command

from batches import submissions
from batches.models import Batch, Submission
from emulator.models import EmulatedBatch
from emulator.validation import check_params
from foundations import betas
from tests.helpers import run_checks
from tests.test_dashboard_flows import finish, submit

OUTPUT_128K = "output-128k-2025-02-19"
SONNET_37 = "claude-3-7-sonnet-20250219"


def long_request(custom_id="long", max_tokens=100_000) -> dict:
    params = {"model": SONNET_37, "max_tokens": max_tokens,
              "messages": [{"role": "user", "content": "Write at length."}]}  # fmt: skip
    return {"custom_id": custom_id, "params": params}


def test_betas_are_read_once_each_and_named_plainly():
    assert betas.parse(f" {OUTPUT_128K.upper()}, {OUTPUT_128K},other-2026-01-01") == [
        OUTPUT_128K,
        "other-2026-01-01",
    ]
    with pytest.raises(betas.BetaError, match="is not a beta's name"):
        betas.parse("not a beta")
    with pytest.raises(betas.BetaError, match="at most 5"):
        betas.parse(",".join(f"beta-{n}" for n in range(6)))
    assert betas.header([]) == {} and betas.header(["a", "b"]) == {"anthropic-beta": "a,b"}


def test_a_beta_raises_the_output_limit_of_its_model_only():
    assert betas.output_limit(SONNET_37, 64_000, [OUTPUT_128K]) == 128_000
    assert betas.output_limit(SONNET_37, 64_000, []) == 64_000
    assert betas.output_limit("claude-haiku-4-5", 64_000, [OUTPUT_128K]) == 64_000
    assert betas.output_limit(SONNET_37, 64_000, ["unknown-beta"]) == 64_000


def test_the_emulator_answers_what_the_beta_allows_and_refuses_the_rest():
    params = long_request()["params"]
    assert "max_tokens: 100000 > 64000" in (check_params(params) or "")
    assert check_params(params, [OUTPUT_128K]) is None
    assert "> 128000" in (check_params({**params, "max_tokens": 130_000}, [OUTPUT_128K]) or "")


@pytest.mark.django_db
def test_an_upload_with_the_beta_is_checked_sent_and_answered(workspace, user, frozen_now):
    workspace.models_available = [{"id": SONNET_37, "max_tokens": 64_000}]
    workspace.save()
    body = (json.dumps(long_request()) + "\n").encode()
    plain = submissions.create_submission(workspace, user, SimpleUploadedFile("a.jsonl", body))
    run_checks()
    plain.refresh_from_db()
    assert plain.state == Submission.State.HAS_PROBLEMS
    assert plain.problems[0]["field"] == "params.max_tokens"
    upload = SimpleUploadedFile("b.jsonl", body)
    sent = submit(workspace, user, upload, betas=[OUTPUT_128K])  # checked ready, then created
    assert EmulatedBatch.objects.get().betas == [OUTPUT_128K]  # the header reached the API
    finish(workspace, frozen_now)
    batch = Batch.objects.get(submission=sent)
    assert batch.results.get().result_type == "succeeded"


@pytest.mark.django_db
def test_submitbatch_sends_betas_and_refuses_a_bad_name(workspace, user, tmp_path):
    path = tmp_path / "long.jsonl"
    path.write_text(json.dumps(long_request()) + "\n")
    with pytest.raises(CommandError, match="is not a beta's name"):
        call_command("submitbatch", str(path), "--workspace", workspace.name, "--beta", "a b")
    call_command("submitbatch", str(path), "--workspace", workspace.name, "--beta", OUTPUT_128K)
    assert Submission.objects.get().betas == [OUTPUT_128K]
    assert EmulatedBatch.objects.get().betas == [OUTPUT_128K]

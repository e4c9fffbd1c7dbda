import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

from batches.models import Batch, Submission
from batches.workspaces import create_workspace
from emulator.models import EmulatedBatch
from emulator.testing import BASE_URL
from tests.mirror import KEY

SAMPLES = Path(__file__).parent / "fixtures" / "samples"


def validatebatch(*args):
    """The command in its own process, to see its exit code and output as a user would."""
    return subprocess.run(
        [sys.executable, "manage.py", "validatebatch", *map(str, args)],
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "DJANGO_SETTINGS_MODULE": "tests.settings"},
    )


def test_validatebatch_accepts_a_good_file_with_exit_0():
    result = validatebatch(SAMPLES / "questions.jsonl")
    assert result.returncode == 0, result.stderr
    assert "4 requests ready" in result.stdout


def test_validatebatch_counts_one_request_in_the_singular(tmp_path):
    one = tmp_path / "one.jsonl"
    one.write_bytes((SAMPLES / "questions.jsonl").read_bytes().splitlines(keepends=True)[0])
    result = validatebatch(one)
    assert result.returncode == 0, result.stderr
    assert "1 request ready (" in result.stdout


def test_validatebatch_names_each_problem_line_and_exits_1(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"custom_id": "a b", "params": {}}\nnot json\n')
    result = validatebatch(bad)
    assert result.returncode == 1
    assert "bad.jsonl: line 1 [custom_id]: custom_id 'a b' is not 1 to 64" in result.stdout
    assert "bad.jsonl: line 2 [column 1]: Not valid JSON" in result.stdout
    assert "0 requests, 5 problems." in result.stdout


def test_validatebatch_checks_a_csv_with_a_template():
    args = [SAMPLES / "reviews.csv", "--template", "Sentiment of: {review}", "--id-column",
            "review_id", "--model", "claude-haiku-4-5", "--max-tokens", "5"]  # fmt: skip
    result = validatebatch(*args)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "5 requests ready" in result.stdout
    missing = validatebatch(SAMPLES / "reviews.csv", "--model", "claude-haiku-4-5")
    assert missing.returncode != 0 and "A CSV file needs --template, --max-tokens" in missing.stderr


@pytest.mark.django_db
def test_submitbatch_validates_and_submits(api_in_process, user, capsys):
    create_workspace("Research", BASE_URL, KEY, members=[user])
    call_command("submitbatch", str(SAMPLES / "questions.jsonl"), "--workspace", "Research",
                 "--name", "Capitals", "--user", "owner", "--label", "geography",
                 "--label", "quiz, eval")  # fmt: skip
    out = capsys.readouterr().out
    batch = Batch.objects.get()
    assert f"Created {batch.api_id} (4 requests): Capitals" in out
    assert [label.name for label in batch.labels.all()] == ["eval", "geography", "quiz"]
    assert batch.submitted_by == user
    assert EmulatedBatch.objects.count() == 1
    assert Submission.objects.get().state == Submission.State.SUBMITTED


@pytest.mark.django_db
def test_submitbatch_keeps_the_budget_as_the_page_does(api_in_process, user, teammate):
    workspace = create_workspace(
        "Research", BASE_URL, KEY, members=[(user, "admin"), (teammate, "submitter")]
    )
    workspace.monthly_budget = Decimal("0.000001")  # below what any file could cost
    workspace.save()
    questions = str(SAMPLES / "questions.jsonl")
    with pytest.raises(CommandError, match=r"left of the workspace's budget.*Confirm"):
        call_command("submitbatch", questions, "--workspace", "Research")
    with pytest.raises(CommandError, match="A workspace admin must confirm"):
        call_command("submitbatch", questions, "--workspace", "Research",
                     "--user", "teammate", "--over-budget")  # fmt: skip
    assert not EmulatedBatch.objects.exists()
    call_command("submitbatch", questions, "--workspace", "Research",
                 "--user", "owner", "--over-budget")  # fmt: skip
    assert EmulatedBatch.objects.count() == 1
    assert Submission.objects.get(state=Submission.State.SUBMITTED).over_budget_confirmed_by == user


@pytest.mark.django_db
def test_submitbatch_refuses_a_file_with_problems(api_in_process, tmp_path, user):
    create_workspace("Research", BASE_URL, KEY, members=[user])
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"custom_id": "x"}\n')
    with pytest.raises(SystemExit) as exit_info:
        call_command("submitbatch", str(bad), "--workspace", "Research")
    assert exit_info.value.code == 1
    assert not EmulatedBatch.objects.exists()
    with pytest.raises(CommandError, match="No workspace named"):
        call_command("submitbatch", str(bad), "--workspace", "Nope")
    with pytest.raises(CommandError, match="at most 40 characters"):
        call_command("submitbatch", str(bad), "--workspace", "Research", "--label", "x" * 41)


@pytest.mark.django_db
def test_validatebatch_goes_through_django_only_for_a_workspace(tmp_path):
    """Without --workspace the check starts without Django's machinery (a third of a second
    sooner); naming a workspace needs the database, so that goes the whole way."""
    from batches.intake.command_line import wants_the_database

    assert not wants_the_database(["f.jsonl", "--model", "x"])
    assert wants_the_database(["f.jsonl", "--workspace", "Research"])
    assert wants_the_database(["f.jsonl", "--workspace=Research"])
    assert wants_the_database(["f.jsonl", "--settings", "tests.settings"])
    assert wants_the_database(["f.jsonl", "-v", "2"])
    # No abbreviations: `--works` would otherwise pass for --workspace and skip the model check.
    shortened = validatebatch(SAMPLES / "questions.jsonl", "--works", "Research")
    assert shortened.returncode == 2 and "unrecognized arguments: --works" in shortened.stderr
    probe = subprocess.run(
        [sys.executable, "-X", "importtime", "manage.py", "validatebatch",
         str(SAMPLES / "questions.jsonl")],
        cwd=settings.BASE_DIR, capture_output=True, text=True, timeout=60,
        env={"PATH": "/usr/bin:/bin", "DJANGO_SETTINGS_MODULE": "tests.settings"},
    )  # fmt: skip
    assert probe.returncode == 0 and "4 requests ready" in probe.stdout
    assert "django.core.management" not in probe.stderr
    assert "django.db.models" not in probe.stderr
    with pytest.raises(CommandError, match="No workspace named 'Nowhere'"):
        call_command("validatebatch", str(SAMPLES / "questions.jsonl"), "--workspace", "Nowhere")

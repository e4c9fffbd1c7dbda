from datetime import timedelta
from io import StringIO

import pytest
import time_machine
from django.apps import apps
from django.core.management import CommandError, call_command
from django.utils import timezone

from batches.apps import BatchesConfig
from batches.models import Batch, Result, Workspace
from emulator.testing import BASE_URL, make_batch
from tests.mirror import KEY

pytestmark = pytest.mark.django_db


def run(*args, **kwargs):
    out = StringIO()
    call_command(*args, stdout=out, stderr=out, **kwargs)
    return out.getvalue()


def test_createworkspace_takes_the_key_from_the_environment(monkeypatch, user):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-api03-secret-value-wxyz")
    output = run("createworkspace", "Team A", "--base-url", "https://api.anthropic.com",
                 "--member", "owner")  # fmt: skip
    workspace = Workspace.objects.get(name="Team A")
    assert workspace.api_key == "sk-ant-api03-secret-value-wxyz"
    assert "sk-ant-...wxyz" in output and "secret-value" not in output
    assert list(workspace.members.all()) == [user]


def test_createworkspace_reads_a_key_file(tmp_path, monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    key_file = tmp_path / "key"
    key_file.write_text("sk-ant-from-file-1234\n")
    run("createworkspace", "Team B", "--base-url", BASE_URL, "--api-key-file", str(key_file))
    assert Workspace.objects.get(name="Team B").api_key == "sk-ant-from-file-1234"


def test_createworkspace_refuses_a_missing_key_and_has_no_key_argument(monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(CommandError, match="No API key"):
        run("createworkspace", "Team C", "--base-url", BASE_URL)
    with pytest.raises(CommandError):
        run("createworkspace", "Team C", "--base-url", BASE_URL, "--api-key", "sk-x")
    for bad in ("ftp://x", "http://127.0.0.1:0x1", "https://10.0.0.8", "https://169.254.169.254"):
        with pytest.raises(CommandError, match="--base-url"):
            run("createworkspace", "Team C", "--base-url", bad)
    assert not Workspace.objects.filter(name="Team C").exists()


def test_syncbatches_syncs_and_ingests_in_the_foreground(api_in_process, user):
    from batches.workspaces import create_workspace

    create_workspace("Research", BASE_URL, KEY, members=[user])
    make_batch(KEY, 6)
    with time_machine.travel(timezone.now() + timedelta(minutes=10), tick=False):
        output = run("syncbatches", "--workspace", "Research")
    assert "Research: 6 listed" not in output  # it lists batches, not requests
    assert "1 listed, 1 new" in output
    assert "6 results stored" in output
    assert Result.objects.count() == 6 and Batch.objects.get().results_ingested_at
    with pytest.raises(CommandError, match="No workspace named"):
        run("syncbatches", "--workspace", "Nope")


def test_first_run_creates_the_sandbox_once_and_a_real_workspace_with_a_key(
    admin_user, monkeypatch, settings
):
    config = apps.get_app_config("batches")
    assert isinstance(config, BatchesConfig)
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    config.first_run(lambda text: None)
    config.first_run(lambda text: None)
    sandbox = Workspace.objects.get()
    assert sandbox.name == "Sandbox" and sandbox.is_sandbox
    assert sandbox.base_url == f"{settings.SITE_URL}/emulator"
    assert list(sandbox.members.all()) == [admin_user]
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-real-key-5678")
    config.first_run(lambda text: None)
    real = Workspace.objects.get(is_sandbox=False)
    assert real.base_url == "https://api.anthropic.com" and real.api_key == "sk-ant-real-key-5678"


def test_createworkspace_takes_the_key_from_a_key_file_variable(tmp_path, monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    secret = tmp_path / "key"
    secret.write_text("sk-ant-mounted-secret-9876\n")
    monkeypatch.setenv("ANTHROPIC_API_KEY_FILE", str(secret))
    run("createworkspace", "Mounted", "--base-url", BASE_URL)
    assert Workspace.objects.get(name="Mounted").api_key == "sk-ant-mounted-secret-9876"

"""The settings module as a whole, loaded in a fresh interpreter with a given environment."""

import os
import subprocess
import sys

from django.conf import settings

BASE_ENV = {"PATH": os.environ["PATH"], "DJANGO_SETTINGS_MODULE": "dashboard.settings"}


def run_django(args, env, tmp_path):
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=settings.BASE_DIR,
        env={**BASE_ENV, "VAR_DIR": str(tmp_path), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_it_refuses_to_start_without_a_secret_key_when_not_debugging(tmp_path):
    result = run_django(["check"], {"DEBUG": "false"}, tmp_path)
    assert result.returncode != 0
    assert "SECRET_KEY is required when DEBUG is false" in result.stderr


def test_it_refuses_to_start_without_its_address_when_not_debugging(tmp_path):
    """Without SITE_URL, production would take 127.0.0.1 for the dashboard's own host."""
    result = run_django(["check"], {"DEBUG": "false", "SECRET_KEY": "s" * 50}, tmp_path)
    assert result.returncode != 0
    assert "SITE_URL is required when DEBUG is false" in result.stderr


def test_it_fails_loudly_on_a_bad_port(tmp_path):
    result = run_django(["check"], {"PORT": "eighty"}, tmp_path)
    assert result.returncode != 0
    assert "PORT='eighty' is not a whole number" in result.stderr


def test_it_generates_a_debug_secret_key_once_and_keeps_it(tmp_path):
    assert run_django(["check"], {}, tmp_path).returncode == 0
    first = (tmp_path / "secret_key").read_text()
    assert run_django(["check"], {}, tmp_path).returncode == 0
    assert (tmp_path / "secret_key").read_text() == first
    assert len(first) >= 50


def test_it_passes_the_deployment_checklist_with_production_values(tmp_path):
    production = {
        "DEBUG": "false",
        "SECRET_KEY": "x" * 20 + "a-long-and-random-production-secret-key-value",
        "ALLOWED_HOSTS": "batches.example.com",
        "SITE_URL": "https://batches.example.com",
        "FERNET_KEYS": "q8F1vY0qEw6m7l2b6tZ0lq7o5C8qQy1zQm3kQ0pYb0U=",
    }
    result = run_django(["check", "--deploy", "--fail-level", "WARNING"], production, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


def test_it_trusts_x_forwarded_proto_only_when_told_a_proxy_sets_it(tmp_path, rf):
    assert not rf.get("/", HTTP_X_FORWARDED_PROTO="https").is_secure()
    show = [
        "shell",
        "--no-imports",
        "-c",
        "from django.conf import settings; print(settings.SECURE_PROXY_SSL_HEADER)",
    ]
    assert run_django(show, {}, tmp_path).stdout.strip() == "None"
    trusted = run_django(show, {"TRUST_X_FORWARDED_PROTO": "true"}, tmp_path)
    assert trusted.stdout.strip() == "('HTTP_X_FORWARDED_PROTO', 'https')"

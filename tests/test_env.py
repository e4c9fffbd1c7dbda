import pytest
from django.core.exceptions import ImproperlyConfigured

from foundations.env import env_bool, env_float, env_int, env_list, env_str, env_url


def test_it_reads_booleans_in_the_usual_spellings():
    for word in ("1", "true", "True", "yes", "on"):
        assert env_bool("DEBUG", False, environ={"DEBUG": word}) is True
    for word in ("0", "false", "FALSE", "no", "off"):
        assert env_bool("DEBUG", True, environ={"DEBUG": word}) is False


def test_it_uses_the_default_for_an_unset_or_blank_value():
    assert env_bool("DEBUG", True, environ={}) is True
    assert env_int("PORT", 8000, environ={"PORT": ""}) == 8000
    assert env_list("ALLOWED_HOSTS", ["a"], environ={}) == ["a"]


def test_it_rejects_a_boolean_it_cannot_read_and_names_the_variable():
    with pytest.raises(ImproperlyConfigured, match=r"DEBUG='maybe' is not a boolean"):
        env_bool("DEBUG", True, environ={"DEBUG": "maybe"})


def test_it_rejects_a_port_that_is_not_a_number():
    with pytest.raises(ImproperlyConfigured, match=r"PORT='80a' is not a whole number"):
        env_int("PORT", 8000, environ={"PORT": "80a"})


def test_it_rejects_numbers_outside_the_allowed_range():
    with pytest.raises(ImproperlyConfigured, match="too large: the maximum is 65535"):
        env_int("PORT", 8000, minimum=1, maximum=65535, environ={"PORT": "70000"})
    with pytest.raises(ImproperlyConfigured, match="too small: the minimum is 1"):
        env_float("SYNC_INTERVAL_SECONDS", 15, minimum=1, environ={"SYNC_INTERVAL_SECONDS": "0.5"})


def test_it_rejects_a_float_that_is_not_finite():
    with pytest.raises(ImproperlyConfigured, match="finite"):
        env_float("X", 1.0, environ={"X": "nan"})


def test_it_requires_a_value_without_default():
    with pytest.raises(ImproperlyConfigured, match="SECRET_KEY is required"):
        env_str("SECRET_KEY", environ={})


def test_it_splits_lists_on_commas_and_drops_blanks():
    hosts = env_list("ALLOWED_HOSTS", [], environ={"ALLOWED_HOSTS": " a.example , ,b.example,"})
    assert hosts == ["a.example", "b.example"]


def test_it_rejects_a_url_with_the_wrong_scheme_without_echoing_it():
    with pytest.raises(ImproperlyConfigured) as caught:
        env_url(
            "DATABASE_URL",
            schemes=("sqlite", "postgres"),
            environ={"DATABASE_URL": "mysql://user:hunter2@db/x"},
        )
    assert "postgres://" in str(caught.value)
    assert "hunter2" not in str(caught.value)


def test_it_reads_a_secret_from_a_file(tmp_path):
    secret = tmp_path / "key"
    secret.write_text("s3cret\n")
    assert env_str("SECRET_KEY", environ={"SECRET_KEY_FILE": str(secret)}) == "s3cret"


def test_it_refuses_both_a_value_and_a_file(tmp_path):
    with pytest.raises(ImproperlyConfigured, match="not both"):
        env_str("SECRET_KEY", environ={"SECRET_KEY": "a", "SECRET_KEY_FILE": str(tmp_path)})


def test_it_names_an_unreadable_secret_file(tmp_path):
    with pytest.raises(ImproperlyConfigured, match="cannot be read"):
        env_str("SECRET_KEY", environ={"SECRET_KEY_FILE": str(tmp_path / "missing")})


def test_it_rejects_a_log_level_or_time_zone_it_does_not_know():
    from foundations.env import env_choice, env_timezone

    with pytest.raises(ImproperlyConfigured, match=r"LOG_LEVEL='LOUD' is not one of: DEBUG"):
        env_choice("LOG_LEVEL", "INFO", ("DEBUG", "INFO"), environ={"LOG_LEVEL": "LOUD"})
    with pytest.raises(ImproperlyConfigured, match="is not a time zone name"):
        env_timezone("TIME_ZONE", "UTC", environ={"TIME_ZONE": "Mars/Olympus"})
    assert env_timezone("TIME_ZONE", "UTC", environ={"TIME_ZONE": "Europe/Paris"})

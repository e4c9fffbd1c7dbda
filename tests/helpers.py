"""Small helpers for tests: what stands in for a process the test does not start, and the
dashboard's own URLs, read from the URLconf."""

from collections.abc import Iterator

from django.urls import URLPattern, URLResolver, get_resolver

from batches import actions, ingestion
from batches.intake import job
from batches.models import Batch, Submission


def run_checks() -> list[str]:
    """What a worker does after an upload: run every pending check, here in the test."""
    pending = Submission.objects.filter(state=Submission.State.CHECKING)
    return [job.run_check(pk) for pk in list(pending.values_list("pk", flat=True))]


def run_actions() -> list[str]:
    """What a worker does after a cancel, delete or refresh: carry out every pending action
    (and fetch the results a refresh found missing)."""
    done = []
    for pk in list(Batch.objects.exclude(pending_action="").values_list("pk", flat=True)):
        outcome = actions.run_action(pk)
        if outcome.fetch_results:
            ingestion.ingest_results(pk)
        done.append(outcome.error or outcome.action)
    return done


def named_urls(
    resolver: URLResolver | None = None, parameters: tuple[str, ...] = ()
) -> Iterator[tuple[str, tuple[str, ...]]]:
    """(name, parameter names) of every named URL but the admin's (it has its own tests and
    login) and the emulator's (it takes API keys)."""
    resolver = resolver or get_resolver()
    for pattern in resolver.url_patterns:
        own = (*parameters, *pattern.pattern.converters)
        if isinstance(pattern, URLResolver):
            if pattern.namespace in ("admin", "emulator"):
                continue
            yield from named_urls(pattern, own)
        elif isinstance(pattern, URLPattern) and pattern.name:
            yield pattern.name, own

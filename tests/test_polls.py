"""What polls compare (the region as it would render) and what pages may do on a GET (read)."""

import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.urls import URLPattern, get_resolver, reverse

from batches import submissions
from batches.models import Batch
from tests import factories
from tests.helpers import run_checks
from tests.polls import fingerprint_of, header_fingerprint

pytestmark = pytest.mark.django_db
HX = {"HTTP_HX_REQUEST": "true"}
SAMPLES = Path(__file__).parent / "fixtures" / "samples"
TEMPLATES = Path(settings.BASE_DIR) / "templates"


@pytest.fixture
def changed_templates(tmp_path, settings):
    """A copy of the project's templates that a test may edit, used instead of them."""
    copy = tmp_path / "templates"
    shutil.copytree(TEMPLATES, copy)
    engine = {**settings.TEMPLATES[0], "DIRS": [copy]}

    def use():
        settings.TEMPLATES = [engine]

    return copy, use


@pytest.mark.parametrize(
    ("template", "region", "page"),
    [
        ("batches/_batch_list.html", "list_content", lambda batch: "/"),
        (
            "batches/_batch_list.html",
            "list_content",
            lambda batch: batch.workspace.get_absolute_url(),
        ),
        ("batches/batch_detail.html", "live_content", lambda batch: batch.get_absolute_url()),
    ],
)
def test_a_poll_answers_200_when_only_its_template_changed(
    owner_client, workspace, changed_templates, template, region, page
):
    batch = factories.running_batch(workspace, processing=3)
    address = page(batch)
    seen = fingerprint_of(owner_client.get(address).content.decode())
    assert owner_client.get(address, {"v": seen}, **HX).status_code == 204
    copy, use = changed_templates
    path = copy / template
    opening = f"{{% partialdef {region} %}}"
    path.write_text(path.read_text().replace(opening, f"{opening}<p>Changed NOW</p>"))
    use()  # as a deploy (or the development server's reload) would
    changed = owner_client.get(address, {"v": seen}, **HX)
    assert changed.status_code == 200 and "NOW" in changed.content.decode()


def test_the_header_poll_answers_200_when_only_its_template_changed(
    owner_client, workspace, changed_templates
):
    factories.running_batch(workspace)
    seen = header_fingerprint(owner_client.get("/").content.decode())
    assert owner_client.get("/poll/", {"v": seen}, **HX).status_code == 204
    copy, use = changed_templates
    path = copy / "batches/_poll.html"
    path.write_text(path.read_text().replace("}} running</span>", "}} batches running</span>"))
    use()
    changed = owner_client.get("/poll/", {"v": seen}, **HX)
    assert changed.status_code == 200 and "1 batches running" in changed.content.decode()


@pytest.mark.parametrize("region", ["list", "workspace", "batch", "header"])
def test_a_poll_that_answers_204_counts_nothing(
    owner_client, workspace, user, region, django_assert_max_num_queries
):
    """Once a region's fingerprint is remembered, "nothing changed" costs the session and the
    user (what authentication reads on any request), and no query of the page's own."""
    batch = factories.running_batch(workspace, submitted_by=user)
    factories.with_results(factories.batch(workspace, 2, submitted_by=user))
    address = {
        "list": "/",
        "workspace": workspace.get_absolute_url(),
        "batch": batch.get_absolute_url(),
        "header": "/poll/",
    }[region]
    page = owner_client.get(address if region != "header" else "/").content.decode()
    seen = header_fingerprint(page) if region == "header" else fingerprint_of(page)
    owner_client.get(address, {"v": seen}, **HX)  # the first poll may render to remember
    with django_assert_max_num_queries(2) as queries:
        assert owner_client.get(address, {"v": seen}, **HX).status_code == 204
    assert not [q for q in queries.captured_queries if "COUNT(" in q["sql"].upper()]
    tables = " ".join(q["sql"] for q in queries.captured_queries)
    assert "batches_" not in tables


def test_a_change_from_any_process_reaches_a_remembered_poll(owner_client, workspace):
    """A write through the ORM moves the workspace's stamp, so the next poll renders again."""
    batch = factories.running_batch(workspace, processing=2)
    seen = fingerprint_of(owner_client.get("/").content.decode())
    assert owner_client.get("/", {"v": seen}, **HX).status_code == 204
    batch.processing, batch.succeeded = 1, 1
    batch.save(update_fields=["processing", "succeeded"])
    assert owner_client.get("/", {"v": seen}, **HX).status_code == 200


# GET never writes --------------------------------------------------------------------------------


class Writes:
    """Fails the test on any INSERT, UPDATE or DELETE run while it is installed, but for the
    audit log's entries (downloads of results are recorded there, and a download is a GET)."""

    def __init__(self):
        self.seen = []
        self.audited = 0

    def __call__(self, execute, sql, params, many, context):
        verb = sql.lstrip().split(None, 1)[0].upper()
        if verb == "INSERT" and "batches_auditentry" in sql.split("(", 1)[0]:
            self.audited += 1
        elif verb in ("INSERT", "UPDATE", "DELETE", "REPLACE"):
            self.seen.append(sql[:120])
        return execute(sql, params, many, context)


def _uploaded(workspace, user, name, **kwargs):
    data = (SAMPLES / name).read_bytes()
    submission = submissions.create_submission(
        workspace, user, SimpleUploadedFile(name, data), name=name, **kwargs
    )
    run_checks()
    submission.refresh_from_db()
    return submission


def _get_urls(values: dict) -> list[str]:
    """Every named URL of the dashboard's own, filled in with `values`; POST-only views are
    asked too (they must refuse a GET without writing)."""
    urls = []
    for pattern in get_resolver().url_patterns:
        if getattr(pattern, "namespace", None) in ("admin", "emulator"):
            continue  # the admin has its own tests; the emulator stands in for the API
        for inner in getattr(pattern, "url_patterns", [pattern]):
            if isinstance(inner, URLPattern) and inner.name:
                names = inner.pattern.converters.keys()
                urls.append(reverse(inner.name, kwargs={name: values[name] for name in names}))
    return urls


def test_no_get_writes_to_the_database(owner_client, admin_client, workspace, user, frozen_now):
    jsonl = _uploaded(workspace, user, "mixed-requests.jsonl")
    csv = _uploaded(workspace, user, "reviews.csv")
    batch = factories.with_results(factories.batch(workspace, submitted_by=user, submission=jsonl))
    batch.results_file.save("r.jsonl.gz", ContentFile(b""))
    factories.ended_news(workspace, timedelta(minutes=1), submitted_by=user)  # a toast waits
    Batch.objects.filter(pk=batch.pk).update(pending_action="")
    values = {
        "slug": workspace.slug,
        "api_id": batch.api_id,
        "custom_id": "req-0001",
        "key": jsonl.key,
        "pk": 1,
        "uidb64": "MQ",
        "token": "not-a-token",
    }
    addresses = _get_urls(values) + _get_urls({**values, "key": csv.key})
    addresses += ["/healthz", "/login/"]
    admin_pages = ["/admin/", f"/admin/batches/batch/{batch.pk}/change/"]
    admin_pages += [f"/admin/batches/{name}/" for name in ("batch", "workspace", "submission")]
    writes, answered = Writes(), []
    with connection.execute_wrapper(writes):
        for address in addresses:
            for extra in ({}, HX):
                response = owner_client.get(address, **extra)
                assert response.status_code < 500, address
                if response.streaming:
                    b"".join(response.streaming_content)
                assert not writes.seen, (address, writes.seen)
                answered.append((response.status_code, address))
        for address in admin_pages:
            assert admin_client.get(address).status_code == 200, address
            assert not writes.seen, (address, writes.seen)
        # The check sees writes: acknowledging the waiting toast (a POST) is one.
        owner_client.post(
            "/poll/toasts/", {"batch": list(Batch.objects.values_list("pk", flat=True))}
        )
    assert writes.seen
    assert writes.audited  # the downloads of results, each in the audit log
    assert sum(1 for status, _ in answered if status in (200, 286)) >= 40

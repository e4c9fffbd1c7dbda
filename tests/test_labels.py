"""Names and labels: read from what people type, set on the batch page by a submitter (any
batch, one made outside the dashboard too), carried from an upload to its batches, filtered on
in the lists, and sent with the notices."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from batches import labels, notices, search
from batches.models import AuditEntry, Batch, BatchLabel
from tests import factories
from tests.test_dashboard_flows import SAMPLES, submit

pytestmark = pytest.mark.django_db


def test_labels_are_read_trimmed_and_once_each():
    assert labels.parse(" eval,  Nightly run ,EVAL, , nightly   run") == ["eval", "Nightly run"]
    assert labels.parse(["a, b", "c"]) == ["a", "b", "c"]
    assert labels.parse("") == []
    with pytest.raises(labels.LabelError, match="at most 40 characters"):
        labels.parse("x" * 41)
    with pytest.raises(labels.LabelError, match="at most 40 characters"):
        labels.parse("bell\x07")
    with pytest.raises(labels.LabelError, match="11 labels: a batch has at most 10"):
        labels.parse(",".join(f"l{n}" for n in range(11)))


def rename(client, batch, name, text, **extra):
    url = reverse("batch_rename", args=[batch.workspace.slug, batch.api_id])
    return client.post(url, {"name": name, "labels": text}, **extra)


def test_a_submitter_names_and_labels_a_batch_made_outside(owner_client, workspace):
    batch = factories.batch(workspace)  # no submission, no submitter: made by a script
    response = rename(owner_client, batch, "  Churn   model v2 ", "eval, churn")
    assert response.status_code == 302
    batch.refresh_from_db()
    assert batch.name == "Churn model v2"
    assert labels.names(batch) == ["churn", "eval"]
    entry = AuditEntry.objects.get(action="rename")
    assert entry.before == {"name": "", "labels": []}
    assert entry.after == {"name": "Churn model v2", "labels": ["eval", "churn"]}
    page = owner_client.get(batch.get_absolute_url()).content.decode()
    assert 'class="tag"' in page and "?label=churn" in page
    # Labels can be taken away again, and the name cleared back to the id.
    rename(owner_client, batch, "", "churn")
    batch.refresh_from_db()
    assert batch.display_name == batch.api_id and labels.names(batch) == ["churn"]


def test_labels_that_cannot_be_kept_are_explained_and_nothing_changes(owner_client, workspace):
    batch = factories.batch(workspace, name="Kept")
    response = rename(owner_client, batch, "New", ",".join(f"l{n}" for n in range(12)))
    assert response.status_code == 400
    assert "12 labels: a batch has at most 10" in response.content.decode()
    batch.refresh_from_db()
    assert batch.name == "Kept" and not BatchLabel.objects.exists()


def test_the_list_filters_by_label_in_the_page_and_its_polls(owner_client, workspace):
    tagged = factories.batch(workspace, name="Tagged run")
    factories.batch(workspace, name="Other run")
    labels.set_labels(tagged, ["eval"])
    page = owner_client.get(reverse("home"), {"label": "eval"}).content.decode()
    assert "Tagged run" in page and "Other run" not in page
    assert '<option value="eval" selected>eval</option>' in page
    fragment = owner_client.get(reverse("home"), {"label": "eval"}, headers={"HX-Request": "true"})
    assert "Tagged run" in fragment.content.decode()
    assert "Other run" not in fragment.content.decode()
    assert "Other run" in owner_client.get(workspace.get_absolute_url()).content.decode()


def test_an_upload_gives_its_labels_to_its_batches_and_the_notices_carry_them(workspace, user):
    upload = SimpleUploadedFile("questions.jsonl", (SAMPLES / "questions.jsonl").read_bytes())
    submission = submit(workspace, user, upload, name="Capitals", labels=["geo", "quiz"])
    batch = Batch.objects.get(submission=submission)
    assert batch.name == "Capitals" and labels.names(batch) == ["geo", "quiz"]
    assert notices.webhook_payload(batch)["labels"] == ["geo", "quiz"]


def test_the_upload_form_reads_the_labels(owner_client, workspace):
    url = reverse("upload", args=[workspace.slug])
    upload = SimpleUploadedFile("questions.jsonl", (SAMPLES / "questions.jsonl").read_bytes())
    refused = owner_client.post(url, {"file": upload, "oversize": "split", "labels": "y" * 50})
    assert refused.status_code == 400 and "at most 40 characters" in refused.content.decode()
    upload.seek(0)
    owner_client.post(url, {"file": upload, "oversize": "split", "labels": "eval, Eval, q4"})
    assert workspace.submissions.get().labels == ["eval", "q4"]


def test_the_search_box_finds_a_custom_id_in_every_batch_and_answers_in_a_workspace(
    owner_client, workspace
):
    first = factories.with_results(factories.batch(workspace, name="Monday"), 4)
    factories.with_results(factories.batch(workspace, name="Tuesday"), 2)
    if search.supported():  # PostgreSQL: answers are found in the search text, written apart
        for batch in Batch.objects.all():
            search.index_results(batch.pk)
    page = owner_client.get(reverse("home"), {"q": "req-0001"}).content.decode()
    assert "custom_id “req-0001”</strong> in\n    2 batches" in page
    assert reverse("result_detail", args=[workspace.slug, first.api_id, "req-0001"]) in page
    # Answers only within one workspace: the factories answer "Answer <b>N</b>".
    answers = owner_client.get(workspace.get_absolute_url(), {"q": "<b>2</b>"}).content.decode()
    assert "Answers holding" in answers and "req-0002" in answers
    assert "&lt;b&gt;2&lt;/b&gt;" in answers  # shown as text, never as markup
    fragment = owner_client.get(reverse("home"), {"q": "req-0002"}, headers={"HX-Request": "true"})
    assert "req-0002" in fragment.content.decode()
    assert (
        "custom_id" not in owner_client.get(reverse("home"), {"q": "nothing-here"}).content.decode()
    )


def test_the_list_sorts_by_a_column_and_keeps_its_filters(owner_client, workspace):
    cheap = factories.batch(workspace, name="Cheap run", hours_ago=1)
    dear = factories.batch(workspace, name="Dear run", hours_ago=2)
    # Two requests, no cost or end yet (last either way for those).
    factories.running_batch(workspace, name="Running run", processing=2)
    Batch.objects.filter(pk=cheap.pk).update(cost="1.00")
    Batch.objects.filter(pk=dear.pk).update(cost="9.00")

    def order(**query):
        html = owner_client.get(reverse("home"), query).content.decode()
        names = ("Cheap run", "Dear run", "Running run")
        return sorted(names, key=html.index), html

    assert order()[0] == ["Running run", "Cheap run", "Dear run"]  # newest first
    most, html = order(sort="-cost")
    assert most == ["Dear run", "Cheap run", "Running run"]
    assert 'aria-sort="descending"' in html and "sort=cost" in html  # the next click: least first
    assert order(sort="cost")[0] == ["Cheap run", "Dear run", "Running run"]
    labels.set_labels(dear, ["eval"])
    labels.set_labels(cheap, ["eval"])
    page = owner_client.get(reverse("home"), {"sort": "-cost", "label": "eval"}).content.decode()
    assert "Running run" not in page and page.index("Dear run") < page.index("Cheap run")
    assert "label=eval" in page.split('title="Sort by requests"')[0].rsplit("href=", 1)[1]
    assert '<input type="hidden" name="sort" value="-cost">' in page
    assert order(sort="nonsense")[0] == ["Running run", "Cheap run", "Dear run"]
    assert order(sort="-requests")[0] == ["Cheap run", "Dear run", "Running run"]  # ties: newest
    assert order(sort="duration")[0][:2] == ["Cheap run", "Dear run"]

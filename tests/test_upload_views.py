import gzip
import io
import random
from pathlib import Path
from urllib.parse import quote

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from batches.models import Submission
from tests.helpers import run_checks

pytestmark = pytest.mark.django_db
SAMPLES = Path(__file__).parent / "fixtures" / "samples"


def post_file(client, workspace, filename, data, **fields):
    """Upload a file, and run its check as the worker would right after."""
    response = client.post(
        reverse("upload", args=[workspace.slug]),
        {"file": SimpleUploadedFile(filename, data), "oversize": "split", **fields},
    )
    run_checks()
    return response


def test_the_upload_page_renders_for_members_and_404s_for_outsiders(
    owner_client, client, outsider, workspace
):
    response = owner_client.get(reverse("upload", args=[workspace.slug]))
    assert response.status_code == 200
    assert b"New batch from a file" in response.content
    client.force_login(outsider)
    assert client.get(reverse("upload", args=[workspace.slug])).status_code == 404


def test_a_good_jsonl_upload_shows_the_report_price_and_submit_button(owner_client, workspace):
    data = (SAMPLES / "questions.jsonl").read_bytes()
    response = post_file(owner_client, workspace, "questions.jsonl", data, name="Capitals")
    submission = Submission.objects.get()
    assert response.status_code == 302 and response["Location"] == submission.get_absolute_url()
    html = owner_client.get(submission.get_absolute_url()).content.decode()
    assert "4 requests ready." in html
    assert "Input cost (est.)" in html and "claude-sonnet-4-5" in html
    assert "Submit 4 requests" in html
    assert "How do solar panels convert sunlight into electricity?" in html


def test_a_bad_jsonl_upload_lists_problems_with_lines_and_a_full_report(owner_client, workspace):
    lines = [
        '{"custom_id": "a", "params": {"model": "claude-sonnet-4-5", "max_tokens": 5, '
        '"messages": [{"role": "user", "content": "hi"}]}}',
        '{"custom_id": "a", "params": {',
        '{"custom_id": "b c", "params": {"model": "claude-sonnet-4-5", "max_tokens": 5, '
        '"messages": []}}',
    ]
    post_file(owner_client, workspace, "bad.jsonl", "\n".join(lines).encode())
    submission = Submission.objects.get()
    assert submission.state == Submission.State.HAS_PROBLEMS
    html = owner_client.get(submission.get_absolute_url()).content.decode()
    assert "1 request ready, 3 problems on 2 lines." in html
    assert "Not valid JSON at column" in html and "messages is empty." in html
    # Nothing goes without an explicit choice: the only submit button sends the valid part.
    assert "Submit 1 request" not in html
    assert 'name="valid_only" value="1"' in html
    assert "Submit the 1 valid request, leave out 2" in html
    args = [workspace.slug, submission.key]
    report = owner_client.get(reverse("submission_report", args=args))
    body = b"".join(report.streaming_content).decode()
    assert report["Content-Disposition"].startswith('attachment; filename="bad-problems.csv"')
    assert body.splitlines()[0] == "\ufeffline,field,problem,how to fix it"
    assert len(body.strip().splitlines()) == 4
    left_out = owner_client.get(reverse("submission_left_out_lines", args=args))
    assert b"".join(left_out.streaming_content).decode().splitlines() == lines[1:]
    valid = owner_client.get(reverse("submission_valid_lines", args=args))
    assert b"".join(valid.streaming_content).decode().splitlines() == lines[:1]


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("notes.txt", b"hello", "is not a .jsonl or .csv file"),
        ("empty.jsonl", b"", "The submitted file is empty."),
    ],
)
def test_a_wrong_file_is_refused_with_a_message(owner_client, workspace, name, data, message):
    response = post_file(owner_client, workspace, name, data)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not Submission.objects.exists()


def test_no_file_at_all_is_refused_with_a_message(owner_client, workspace):
    response = owner_client.post(reverse("upload", args=[workspace.slug]), {"oversize": "split"})
    assert response.status_code == 400
    assert "This field is required." in response.content.decode()


@pytest.mark.parametrize("name", ["noise.jsonl", "noise.csv", "noise.jsonl.gz", "noise.csv.gz"])
def test_garbage_never_gets_a_500(owner_client, workspace, name):
    noise = bytes(random.Random(name).randrange(256) for _ in range(5000))
    if name.endswith(".gz") and random.Random(name).random() < 2:
        noise = gzip.compress(noise)[:-20]  # compressed, and cut short
    response = post_file(owner_client, workspace, name, noise)
    assert response.status_code == 302
    submission = Submission.objects.get()
    page = owner_client.get(submission.get_absolute_url())
    assert page.status_code == 200
    if name.startswith("noise.csv"):
        options = {"template": "{x}", "model": "claude-haiku-4-5", "max_tokens": "5"}
        url = reverse("submission_template", args=[workspace.slug, submission.key])
        assert owner_client.post(url, options).status_code in (302, 400)
        run_checks()
        assert owner_client.get(submission.get_absolute_url()).status_code == 200


def test_the_csv_flow_template_preview_then_report(owner_client, workspace):
    data = (SAMPLES / "reviews.csv").read_bytes()
    post_file(owner_client, workspace, "reviews.csv", data)
    submission = Submission.objects.get()
    assert submission.state == Submission.State.NEEDS_TEMPLATE
    page = owner_client.get(submission.get_absolute_url()).content.decode()
    assert "Turn each row into a request" in page and "Column “review”" in page
    # The file's columns beside the template, each inserting its {column}; the custom_id
    # column guessed from the header.
    assert 'data-insert="{review}">review</button>' in page
    assert 'data-insert="{review_id}">review_id</button>' in page
    assert '<option value="review_id" selected>' in page

    preview_url = reverse("submission_preview", args=[workspace.slug, submission.key])
    options = {
        "template": "Classify as positive, negative or neutral (one word): {review}",
        "id_column": "review_id",
        "model": "claude-haiku-4-5",
        "max_tokens": "5",
    }
    preview = owner_client.post(preview_url, options, HTTP_HX_REQUEST="true")
    assert preview.status_code == 200
    assert "The product quality is excellent!" in preview.content.decode()
    assert "&quot;custom_id&quot;: &quot;r1&quot;" in preview.content.decode()
    assert "<html" not in preview.content.decode()

    template_url = reverse("submission_template", args=[workspace.slug, submission.key])
    wrong = owner_client.post(template_url, {**options, "template": "Say {text}"})
    assert wrong.status_code == 400
    assert "The file has no column &#x27;text&#x27;" in wrong.content.decode()
    assert owner_client.post(template_url, options).status_code == 302
    run_checks()
    submission.refresh_from_db()
    assert submission.state == Submission.State.READY, submission.problems
    assert submission.request_count == 5


def test_the_status_region_polls_while_submitting_and_stops_after(owner_client, workspace):
    post_file(owner_client, workspace, "q.jsonl", (SAMPLES / "questions.jsonl").read_bytes())
    submission = Submission.objects.get()
    Submission.objects.filter(pk=submission.pk).update(state=Submission.State.SUBMITTING)
    fragment = owner_client.get(submission.get_absolute_url(), HTTP_HX_REQUEST="true")
    assert fragment.status_code == 200 and b"Submitting" in fragment.content
    assert b"<html" not in fragment.content
    Submission.objects.filter(pk=submission.pk).update(state=Submission.State.SUBMITTED)
    done = owner_client.get(submission.get_absolute_url(), HTTP_HX_REQUEST="true")
    assert done.status_code == 286 and b"Submitted." in done.content


def test_outsiders_get_404_on_every_submission_url(client, outsider, owner_client, workspace):
    post_file(owner_client, workspace, "q.jsonl", (SAMPLES / "questions.jsonl").read_bytes())
    submission = Submission.objects.get()
    client.force_login(outsider)
    args = [workspace.slug, submission.key]
    assert client.get(reverse("submission_detail", args=args)).status_code == 404
    assert client.get(reverse("submission_report", args=args)).status_code == 404
    assert client.post(reverse("submission_preview", args=args)).status_code == 404
    assert client.post(reverse("submission_submit", args=args)).status_code == 404
    assert client.post(reverse("submission_template", args=args)).status_code == 404


# The upload page's script sends the file as the request's body (a progress bar, no multipart).


def post_raw(client, workspace, filename, data, *, query="oversize=split", **extra):
    # (The test client leaves out the type and length of an empty body; a browser sends them.)
    extra = {"CONTENT_TYPE": "application/octet-stream", "CONTENT_LENGTH": str(len(data)), **extra}
    response = client.generic(
        "POST",
        reverse("upload", args=[workspace.slug]) + "?" + query,
        data,
        content_type="application/octet-stream",
        headers={"X-Upload-Filename": quote(filename)} if filename is not None else {},
        **extra,
    )
    run_checks()
    return response


def test_a_file_sent_as_the_body_is_stored_whole_and_checked(owner_client, workspace):
    data = (SAMPLES / "questions.jsonl").read_bytes()
    query = "oversize=split&name=Capitals&labels=eval%2C+nightly"
    response = post_raw(owner_client, workspace, "quêtes du 1er.jsonl", data, query=query)
    submission = Submission.objects.get()
    assert response.status_code == 201
    assert response.json() == {"location": submission.get_absolute_url()}
    assert submission.source_filename == "quêtes du 1er.jsonl"
    assert submission.name == "Capitals" and submission.labels == ["eval", "nightly"]
    with submission.upload.open("rb") as stored:
        assert stored.read() == data
    assert submission.state == Submission.State.READY and submission.request_count == 4


@pytest.mark.parametrize(
    ("filename", "data", "extra", "message"),
    [
        ("notes.txt", b"hello", {}, "notes.txt is not a .jsonl or .csv file"),
        ("empty.jsonl", b"", {}, "The submitted file is empty."),
        (None, b"{}", {}, "The file&#x27;s name is missing"),
        ("../../etc/" + "x" * 300 + ".jsonl", b"{}", {}, "longer than 255 characters"),
        ("..", b"{}", {}, "The file&#x27;s name is missing"),
        # The body ends before the length it declared: the connection dropped.
        ("cut.jsonl", b"{}", {"CONTENT_LENGTH": "5000"}, "cut off after 2\xa0bytes of 4.9\xa0KB"),
        ("huge.jsonl", b"{}", {"CONTENT_LENGTH": str(10**12)}, "the limit is"),
    ],
)
def test_a_file_sent_as_the_body_is_refused_with_what_to_do(
    owner_client, workspace, filename, data, extra, message
):
    if "CONTENT_LENGTH" in extra:
        extra["wsgi.input"] = io.BytesIO(data)  # what actually arrives
    response = post_raw(owner_client, workspace, filename, data, **extra)
    assert response.status_code == 400
    html = response.content.decode()
    assert message in html
    assert 'id="id_file"' in html and "This field is required." not in html
    assert not Submission.objects.exists()


def test_a_name_sent_in_the_header_is_cleaned_as_a_multipart_name_is(owner_client, workspace):
    data = (SAMPLES / "questions.jsonl").read_bytes()
    response = post_raw(owner_client, workspace, "C:\\Users\\ada/../ques\ntions\t.jsonl", data)
    assert response.status_code == 201
    assert Submission.objects.get().source_filename == "questions.jsonl"


def test_the_temporary_copy_of_a_refused_body_is_removed(owner_client, workspace, monkeypatch):
    from django.core.files import uploadedfile

    made = []

    class Watched(uploadedfile.TemporaryUploadedFile):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self.temporary_file_path())

    monkeypatch.setattr("batches.views.uploads.TemporaryUploadedFile", Watched)
    response = post_raw(owner_client, workspace, "notes.txt", b"hello")
    assert response.status_code == 400 and len(made) == 1
    assert not Path(made[0]).exists()


def test_a_file_sent_as_the_body_needs_the_csrf_token_in_its_header(user, workspace):
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    page = client.get(reverse("upload", args=[workspace.slug]))
    token = page.cookies["csrftoken"].value
    data = (SAMPLES / "questions.jsonl").read_bytes()
    assert post_raw(client, workspace, "q.jsonl", data).status_code == 403
    assert not Submission.objects.exists()
    assert post_raw(client, workspace, "q.jsonl", data, HTTP_X_CSRFTOKEN=token).status_code == 201


@pytest.mark.parametrize(
    ("columns", "guessed"),
    [
        (["text", "custom_id", "id"], "custom_id"),
        (["text", "ID"], "ID"),
        (["review", "review_id"], "review_id"),
        (["Question", "RowId"], "RowId"),
        (["Review ID", "text"], "Review ID"),
        (["paid", "text"], ""),  # "paid" ends in "id" but names no row
        ([], ""),
    ],
)
def test_the_custom_id_column_is_guessed_from_the_header(columns, guessed):
    from batches.intake.templating import guess_id_column

    assert guess_id_column(columns) == guessed


def test_the_upload_page_picks_another_workspace_to_upload_to(owner_client, user, workspace):
    from batches.workspaces import create_workspace

    other = create_workspace(
        "Support", workspace.base_url, "sk-ant-other-1", members=[(user, "submitter")]
    )
    create_workspace("Finance", workspace.base_url, "sk-ant-other-2", members=[(user, "viewer")])
    page = owner_client.get(reverse("upload", args=[workspace.slug])).content.decode()
    picker = page.split('class="workspace-picker"')[1].split("</form>")[0]
    assert 'value="research" selected>Research' in picker and ">Support</option>" in picker
    assert "Finance" not in picker  # a viewer there: no upload
    chosen = owner_client.get(reverse("upload_choose"), {"workspace": other.slug})
    assert chosen.status_code == 302 and chosen["Location"] == reverse("upload", args=[other.slug])
    for not_allowed in ("finance", "nowhere"):
        answer = owner_client.get(reverse("upload_choose"), {"workspace": not_allowed})
        assert answer["Location"] == reverse("upload", args=[workspace.slug])


def test_someone_who_may_upload_nowhere_is_told_why(client, outsider):
    client.force_login(outsider)
    response = client.get(reverse("upload_choose"), follow=True)
    assert response.redirect_chain[-1][0] == reverse("home")
    assert "You may not upload to any workspace" in response.content.decode()


def test_the_csv_preview_waits_for_a_template_and_invents_no_row(owner_client, workspace):
    post_file(owner_client, workspace, "reviews.csv", (SAMPLES / "reviews.csv").read_bytes())
    post_file(owner_client, workspace, "header.csv", b"review_id,review\n")
    full, header_only = Submission.objects.order_by("pk")

    def preview(submission, **typed) -> str:
        url = reverse("submission_preview", args=[workspace.slug, submission.key])
        fields = {"model": "claude-haiku-4-5", "max_tokens": "5", **typed}
        return owner_client.post(url, fields, HTTP_HX_REQUEST="true").content.decode()

    assert "Write a template to see the first row&#x27;s request." in preview(full)
    assert "This field is required" not in preview(full, template="  ")
    assert "The file has no column &#x27;text&#x27;" in preview(full, template="Say {text}")
    only_header = preview(header_only, template="Say {review}")
    assert "The file has a header but no rows" in only_header and "custom_id" not in only_header


def test_a_line_that_is_not_json_says_where_and_what_whole(tmp_path):
    from tests.test_intake import check

    report = check(tmp_path, '{"custom_id": "a", "params": {"x": "abc\n')
    assert report.problems[0].message == (
        "Not valid JSON at column 36: a string starts here and is never closed."
    )

import json

from django.core.files.base import ContentFile
from django.db import migrations
from django.utils import timezone

HEAD = b'{"requests":[\n'
TAIL = b"\n]}"


def requests_into_bodies(apps, schema_editor):
    """Requests used to be copied into the database; now each batch's create body is a stored
    file and a request row says where in it the request sits. Write the bodies of the requests
    already stored; uploads whose requests were never stored (checked but not yet submitted) are
    checked again, which writes their bodies."""
    Submission = apps.get_model("batches", "Submission")
    SubmissionPart = apps.get_model("batches", "SubmissionPart")
    BatchRequest = apps.get_model("batches", "BatchRequest")
    with_requests = set(BatchRequest.objects.values_list("submission_id", flat=True).distinct())
    for submission in Submission.objects.filter(pk__in=with_requests).iterator():
        for part in SubmissionPart.objects.filter(submission=submission):
            rows = BatchRequest.objects.filter(submission=submission, part=part.index).order_by(
                "line"
            )
            body, offsets = bytearray(HEAD), []
            for row in rows.iterator():
                raw = json.dumps(
                    {"custom_id": row.custom_id, "params": row.params},
                    ensure_ascii=False,
                    separators=(",", ":"),
                ).encode()
                if len(body) > len(HEAD):
                    body += b",\n"
                offsets.append((row.pk, len(body), len(raw)))
                body += raw
            body += TAIL
            part.body.save(f"part-{part.index + 1}.json", ContentFile(bytes(body)), save=False)
            part.request_bytes = len(body)
            part.save(update_fields=["body", "request_bytes"])
            for pk, offset, length in offsets:
                BatchRequest.objects.filter(pk=pk).update(offset=offset, length=length)
        submission.requests_indexed_at = timezone.now()
        submission.save(update_fields=["requests_indexed_at"])
    Submission.objects.filter(state__in=["has_problems", "ready", "submitting"]).exclude(
        pk__in=with_requests
    ).update(state="checking", check_requested_at=timezone.now())




class Migration(migrations.Migration):
    dependencies = [("batches", "0005_checks_in_storage")]

    operations = [
        migrations.RunPython(requests_into_bodies, migrations.RunPython.noop),
    ]

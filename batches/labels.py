"""Names and labels of batches: read from what a person typed, checked, and set.

Labels are free text, several per batch: at most BatchLabel.MAX_PER_BATCH, each at most 40
characters, without commas (they separate labels where people type them) or control characters.
A label is kept as it was typed but compared without regard to case or surrounding spaces, so
"Eval" and "eval " are one label.
"""

import re

from django.db import transaction

from batches.models import LABEL_PATTERN, Batch, BatchLabel

LABEL = re.compile(LABEL_PATTERN)


class LabelError(ValueError):
    """What is wrong with the labels as typed; the message says how to fix it."""


def parse(text: str | list[str]) -> list[str]:
    """Labels from a comma-separated text (or a list, each maybe comma-separated): trimmed,
    without repeats (ignoring case), in the order given. Raises LabelError."""
    pieces = text if isinstance(text, list) else [text]
    found: dict[str, str] = {}
    for piece in pieces:
        for raw in piece.split(","):
            label = " ".join(raw.split())
            if not label:
                continue
            if not LABEL.match(label):
                shown = label[:40] + ("…" if len(label) > 40 else "")
                raise LabelError(
                    f"The label “{shown}” is too long or holds a control character: a label has "
                    "at most 40 characters."
                )
            found.setdefault(label.casefold(), label)
    if len(found) > BatchLabel.MAX_PER_BATCH:
        raise LabelError(
            f"{len(found)} labels: a batch has at most {BatchLabel.MAX_PER_BATCH}. "
            "Remove some, or join related ones."
        )
    return list(found.values())


def set_labels(batch: Batch, labels: list[str]) -> bool:
    """Give the batch exactly these labels; True when that changed anything."""
    with transaction.atomic():
        current = {label.name: label for label in BatchLabel.objects.filter(batch=batch)}
        wanted = set(labels)
        gone = [label.pk for name, label in current.items() if name not in wanted]
        new = [BatchLabel(batch=batch, name=name) for name in labels if name not in current]
        if gone:
            BatchLabel.objects.filter(pk__in=gone).delete()
        if new:
            BatchLabel.objects.bulk_create(new)
    return bool(gone or new)


def names(batch: Batch) -> list[str]:
    """The batch's labels, from a prefetch when there is one."""
    return [label.name for label in batch.labels.all()]

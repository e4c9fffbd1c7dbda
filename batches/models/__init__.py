"""The app's models, one module per kind of thing they hold:

- `workspaces`: Workspace, Membership (a person's role in one), UserPreference.
- `batches`: the mirror of the API's batches (Batch) and their labels (BatchLabel).
- `results`: a batch's results (Result) and the explorer's search text (ResultText).
- `usage`: the usage rows the usage pages add up (BatchUsage) and the budget notices sent.
- `uploads`: an upload (Submission), its parts and their create bodies, where each request lies
  in them (BatchRequest), and the requests tried before their batch (Trial).
- `webhooks`: the deliveries of the workspaces' webhook events.
- `audit`: the audit log, append-only and hash-chained.

Everything is imported here: code names a model as `batches.models.Batch`, whichever module it is
written in (and the migrations name `batches.models.upload_path`).
"""

from batches.models.audit import AuditEntry, AuditEntryQuerySet
from batches.models.batches import (
    COUNT_FIELDS,
    LABEL_PATTERN,
    PROBLEM_COUNTS,
    Batch,
    BatchLabel,
    BatchQuerySet,
)
from batches.models.results import Result, ResultText
from batches.models.uploads import (
    BatchRequest,
    Submission,
    SubmissionPart,
    SubmissionQuerySet,
    Trial,
    part_body_path,
    upload_path,
)
from batches.models.usage import BatchUsage, BudgetNotice
from batches.models.webhooks import WebhookDelivery
from batches.models.workspaces import Membership, UserPreference, Workspace, WorkspaceQuerySet

__all__ = [
    "COUNT_FIELDS",
    "LABEL_PATTERN",
    "PROBLEM_COUNTS",
    "AuditEntry",
    "AuditEntryQuerySet",
    "Batch",
    "BatchLabel",
    "BatchQuerySet",
    "BatchRequest",
    "BatchUsage",
    "BudgetNotice",
    "Membership",
    "Result",
    "ResultText",
    "Submission",
    "SubmissionPart",
    "SubmissionQuerySet",
    "Trial",
    "UserPreference",
    "WebhookDelivery",
    "Workspace",
    "WorkspaceQuerySet",
    "part_body_path",
    "upload_path",
]

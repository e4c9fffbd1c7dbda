import re
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from django import forms
from django.conf import settings
from django.contrib.auth.models import User
from django.core.files.uploadedfile import UploadedFile
from django.http import QueryDict
from django.template.defaultfilters import filesizeformat
from django.views.decorators.debug import sensitive_variables

from batches import labels
from batches.intake.job import MAX_TRIES
from batches.intake.reading import detect_format
from batches.intake.templating import CsvOptions
from batches.models import AuditEntry, Membership, Submission, Workspace
from batches.outbound import validate_outbound_url
from batches.usage import MAX_BUCKETS, Period, default_period, too_many_buckets
from foundations import betas
from foundations.errors import remember_secret
from foundations.schemas import is_custom_id


def _choice_field(form: forms.Form, name: str) -> forms.ChoiceField:
    """A ChoiceField the form declares (the stubs type `form.fields` as plain Fields)."""
    field = form.fields[name]
    if not isinstance(field, forms.ChoiceField):
        raise TypeError(f"{type(form).__name__}.{name} is not a ChoiceField.")
    return field


class LabelsField(forms.CharField):
    """Labels typed separated by commas, cleaned to a list (batches.labels.parse)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(required=False, max_length=500, **kwargs)

    def clean(self, value: str | None) -> list[str]:
        try:
            return labels.parse(super().clean(value))
        except labels.LabelError as error:
            raise forms.ValidationError(str(error)) from None


class UploadForm(forms.Form):
    file = forms.FileField(
        help_text="JSONL (one request per line) or CSV (one row per request); .gz is fine too."
    )
    name = forms.CharField(
        max_length=200, required=False, help_text="A name for the batch, shown in the lists."
    )
    oversize = forms.ChoiceField(
        label="If the file is larger than one batch",
        choices=Submission.Oversize.choices,
        initial=Submission.Oversize.SPLIT,
        widget=forms.RadioSelect,
        help_text="A batch holds at most 100,000 requests and 256 MB.",
    )
    labels = LabelsField(
        help_text="Optional, separated by commas: e.g. eval, nightly. The list filters by them."
    )
    betas = forms.CharField(
        label="Beta features",
        required=False,
        max_length=400,
        help_text="Optional: names sent in the anthropic-beta header of the create call, "
        "separated by commas.",
    )
    spend_cap = forms.DecimalField(
        label="Spend cap (USD)",
        required=False,
        min_value=Decimal("0.01"),
        max_digits=12,
        decimal_places=2,
        help_text="Optional. Submit is refused when the file could cost more than this.",
    )

    def __init__(self, *args: Any, file_problem: str = "", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Why a file sent as a request's body was not taken (the view read it): said in place of
        # "This field is required."
        self.file_problem = file_problem
        if file_problem:
            self.fields["file"].required = False

    def clean_betas(self) -> list[str]:
        try:
            return betas.parse(self.cleaned_data["betas"])
        except betas.BetaError as error:
            raise forms.ValidationError(str(error)) from None

    def clean_file(self) -> UploadedFile:
        if self.file_problem:
            raise forms.ValidationError(self.file_problem)
        upload = self.cleaned_data["file"]
        if detect_format(upload.name) is None:
            raise forms.ValidationError(
                f"{upload.name} is not a .jsonl or .csv file (optionally gzipped as .gz). "
                "Rename it if it is one."
            )
        if upload.size == 0:
            raise forms.ValidationError(f"{upload.name} is empty.")
        if upload.size > settings.MAX_UPLOAD_BYTES:
            raise forms.ValidationError(
                f"{upload.name} is {filesizeformat(upload.size)}; the limit is "
                f"{filesizeformat(settings.MAX_UPLOAD_BYTES)}."
            )
        return upload


class TryForm(forms.Form):
    """Which requests of a checked upload to try: the first `count`, or these custom_ids."""

    count = forms.IntegerField(
        min_value=1,
        max_value=MAX_TRIES,
        initial=3,
        required=False,
        error_messages=dict.fromkeys(
            ("min_value", "max_value", "invalid"),
            f"How many: try 1 to {MAX_TRIES} requests at once.",
        ),
    )
    custom_ids = forms.CharField(
        label="Or these custom_ids",
        required=False,
        max_length=800,
        help_text=f"Up to {MAX_TRIES}, separated by commas or spaces.",
    )

    def clean_custom_ids(self) -> list[str]:
        chosen = list(dict.fromkeys(re.split(r"[,\s]+", self.cleaned_data["custom_ids"].strip())))
        chosen = [value for value in chosen if value]
        if len(chosen) > MAX_TRIES:
            raise forms.ValidationError(
                f"{len(chosen)} custom_ids: at most {MAX_TRIES} can be tried at once."
            )
        for value in chosen:
            if not is_custom_id(value):
                raise forms.ValidationError(
                    f"{value[:70]!r} is not a custom_id: 1 to 64 letters, digits, _ or -."
                )
        return chosen


class CsvOptionsForm(forms.Form):
    template = forms.CharField(
        label="Prompt template",
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text="Use {column} for a cell of the row, e.g. "
        "“Classify as positive, negative or neutral: {review}”.",
    )
    id_column = forms.ChoiceField(
        label="custom_id",
        required=False,
        help_text="The column that names each request; or let the dashboard number the rows "
        "(row-1, row-2, …).",
    )
    model = forms.ChoiceField()
    max_tokens = forms.IntegerField(min_value=1, initial=1024)
    system = forms.CharField(
        label="System prompt", required=False, widget=forms.Textarea(attrs={"rows": 2})
    )
    temperature = forms.FloatField(
        required=False, min_value=0, max_value=1, help_text="0 to 1; leave empty for the default."
    )

    def __init__(
        self, *args: Any, columns: list[str], models: list[dict[str, Any]], **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.columns = columns
        self.models = {model["id"]: model for model in models}
        _choice_field(self, "id_column").choices = [("", "Number the rows: row-1, row-2, …")] + [
            (column, f"Column “{column}”") for column in columns
        ]
        if models:
            _choice_field(self, "model").choices = [
                (model["id"], f"{model.get('display_name') or model['id']} ({model['id']})")
                for model in models
            ]
        else:
            # No model list from the API yet: accept a typed model id.
            self.fields["model"] = forms.CharField(max_length=100)

    def clean_template(self) -> str:
        template = self.cleaned_data["template"]
        try:
            names = CsvOptions(template=template, model="", max_tokens=1).placeholders()
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from None
        if not names:
            raise forms.ValidationError(
                "The template uses no column: put a {column} where each row's text goes."
            )
        unknown = [name for name in names if name not in self.columns]
        if unknown:
            raise forms.ValidationError(
                f"The file has no column {unknown[0]!r}. Its columns are: "
                + ", ".join(self.columns)
                + "."
            )
        return template

    def clean(self) -> dict[str, Any]:
        # Form.clean returns cleaned_data; the stubs allow the None a subclass may return.
        super().clean()
        cleaned = self.cleaned_data
        model = self.models.get(cleaned.get("model"))
        max_tokens = cleaned.get("max_tokens")
        if model and max_tokens and model.get("max_tokens") and max_tokens > model["max_tokens"]:
            self.add_error(
                "max_tokens",
                f"{cleaned['model']} allows at most {model['max_tokens']:,} output tokens.",
            )
        return cleaned

    def options(self) -> dict:
        data = self.cleaned_data
        return {
            "template": data["template"],
            "id_column": data.get("id_column") or "",
            "model": data["model"],
            "max_tokens": data["max_tokens"],
            "system": data.get("system") or "",
            "temperature": data.get("temperature"),
        }


class ConnectionForm(forms.Form):
    """A workspace's API address and key. The key is write-only (never sent back to the browser);
    the pair is tried against the API before anything is saved."""

    # A CharField: the outbound check is the whole rule (an http(s) address the dashboard may
    # call); URLField would also refuse a local host name without a dot.
    base_url = forms.CharField(
        label="API base URL",
        max_length=300,
        validators=[validate_outbound_url],
        widget=forms.URLInput,
        help_text="https://api.anthropic.com for the Anthropic API.",
    )
    api_key = forms.CharField(
        label="New API key",
        required=False,
        strip=True,
        max_length=500,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text="Leave blank to keep the current key. Enter it again when the address changes.",
    )

    def __init__(self, *args: Any, workspace: Workspace, **kwargs: Any) -> None:
        kwargs.setdefault("initial", {"base_url": workspace.base_url})
        super().__init__(*args, **kwargs)
        self.workspace = workspace

    @sensitive_variables("key", "cleaned")
    def clean(self) -> dict[str, Any]:
        super().clean()
        cleaned = self.cleaned_data
        base_url = (cleaned.get("base_url") or "").rstrip("/")
        key = cleaned.get("api_key") or ""
        remember_secret(key)  # hidden from error reports from here on, whatever holds it
        if self.errors:
            return cleaned
        if base_url != self.workspace.base_url and not key:
            # Otherwise the stored key would be sent to whatever host the new address names.
            self.add_error("api_key", "Enter the key again when the API base URL changes.")
        elif base_url == self.workspace.base_url and not key:
            self.add_error(None, "Nothing changed: enter a new key or a new address.")
        else:
            self._try(base_url, key)
        cleaned["base_url"] = base_url
        return cleaned

    @sensitive_variables("key")
    def _try(self, base_url: str, key: str) -> None:
        """One bounded call with the new pair: a refused key or an unreachable address is a
        form error, and nothing is saved."""
        from batches.client import ApiClient, ApiError

        try:
            with ApiClient(base_url, key, max_attempts=1, timeout=10) as client:
                client.list_batches(limit=1)
        except ApiError as error:
            self.add_error("api_key", f"The API did not accept it: {error}")


class WorkspaceOptionsForm(forms.ModelForm):
    class Meta:
        model = Workspace
        fields = [
            "notify_email",
            "notify_webhook_url",
            "results_downloadable",
            "monthly_budget",
            "daily_tries",
        ]
        labels = {
            "notify_email": "Email the submitter when a batch ends",
            "notify_webhook_url": "Webhook URL",
        }
        help_texts = {"notify_email": ""}


ROLE_HELP = (
    "Viewer: sees batches and results. Submitter: also uploads, submits, cancels, resubmits. "
    "Admin: also deletes batches and manages the workspace."
)


class AddMemberForm(forms.Form):
    who = forms.CharField(
        label="Username or email", max_length=254, help_text="Someone who already has a login."
    )
    role = forms.ChoiceField(
        choices=Membership.Role.choices, initial=Membership.Role.SUBMITTER, help_text=ROLE_HELP
    )

    def __init__(self, *args: Any, workspace: Workspace, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.workspace = workspace

    def clean_who(self) -> User:
        from django.contrib.auth import get_user_model

        who = self.cleaned_data["who"].strip().replace("\x00", "")
        users = get_user_model().objects.filter(is_active=True)
        user = users.filter(username=who).first() or (
            users.filter(email__iexact=who).first() if "@" in who else None
        )
        if user is None:
            raise forms.ValidationError(
                f"No one with the login or email “{who}”. To add someone new, invite them by "
                "email below."
            )
        if self.workspace.memberships.filter(user=user).exists():
            raise forms.ValidationError(f"{user.get_username()} is already a member.")
        return user


class InviteForm(forms.Form):
    email = forms.EmailField(label="Email", help_text="They get a link to set their password.")
    role = forms.ChoiceField(
        choices=Membership.Role.choices, initial=Membership.Role.VIEWER, help_text=ROLE_HELP
    )

    def clean_email(self) -> str:
        from django.contrib.auth import get_user_model

        email = self.cleaned_data["email"].strip()
        users = get_user_model().objects.filter(email__iexact=email)
        # Someone invited before who never set a password is invited again (a new link).
        if any(user.has_usable_password() for user in users[:5]):
            raise forms.ValidationError(
                f"{email} already has a login: add them as a member above instead."
            )
        return email


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=Membership.Role.choices)


class AuditFilterForm(forms.Form):
    """The audit page's filters; anything it cannot read is ignored, never an error page."""

    person = forms.CharField(required=False, max_length=150)
    action = forms.ChoiceField(
        required=False, choices=[("", "Any action"), *AuditEntry.Action.choices]
    )
    since = forms.DateField(
        required=False, label="From", widget=forms.DateInput(attrs={"type": "date"})
    )
    until = forms.DateField(
        required=False, label="To", widget=forms.DateInput(attrs={"type": "date"})
    )


class BatchNameForm(forms.Form):
    """A batch's name and labels, as a submitter changes them on its page."""

    name = forms.CharField(max_length=200, required=False, help_text="Empty: the batch's id.")
    labels = LabelsField(help_text="Separated by commas, at most 10.")

    def clean_name(self) -> str:
        name = " ".join(self.cleaned_data["name"].split())
        if any(ord(character) < 32 for character in name):
            raise forms.ValidationError("A name cannot hold control characters.")
        return name


class UsagePeriodForm(forms.Form):
    """The usage page's period: from, to and the bucket. A period the page cannot show (the
    wrong way round, or too many buckets) is an error that says so, never an error page."""

    start = forms.DateField(label="From", widget=forms.DateInput(attrs={"type": "date"}))
    end = forms.DateField(label="To", widget=forms.DateInput(attrs={"type": "date"}))
    by = forms.ChoiceField(
        label="By", choices=[("day", "Day"), ("week", "Week"), ("month", "Month")]
    )

    def __init__(self, data: QueryDict, *, zone: ZoneInfo) -> None:
        self.zone = zone
        default = default_period(zone)
        initial = {"start": default.start, "end": default.end, "by": default.bucket}
        super().__init__({**initial, **{k: v for k, v in data.items() if v}}, initial=initial)

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if self.errors:
            return cleaned
        if cleaned["start"] > cleaned["end"]:
            raise forms.ValidationError("The period ends before it starts: swap the two dates.")
        period = Period(cleaned["start"], cleaned["end"], cleaned["by"], self.zone)
        if too_many_buckets(period):
            raise forms.ValidationError(
                f"That is more than {MAX_BUCKETS:,} {cleaned['by']}s: choose a shorter period, "
                "or a longer bucket (week or month)."
            )
        cleaned["period"] = period
        return cleaned

from django import forms
from django.conf import settings
from django.template.defaultfilters import filesizeformat

from batches.intake.reading import detect_format
from batches.intake.templating import CsvOptions
from batches.models import Submission


def _choice_field(form: forms.Form, name: str) -> forms.ChoiceField:
    """A ChoiceField the form declares (the stubs type `form.fields` as plain Fields)."""
    field = form.fields[name]
    if not isinstance(field, forms.ChoiceField):
        raise TypeError(f"{type(form).__name__}.{name} is not a ChoiceField.")
    return field


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

    def clean_file(self):
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

    def __init__(self, *args, columns: list[str], models: list[dict], **kwargs):
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

    def clean_template(self):
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

    def clean(self):
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

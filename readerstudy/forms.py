"""Forms for the reading screen and the coordinator pages."""

from __future__ import annotations

from pathlib import Path

from django import forms
from django.conf import settings
from django.contrib.auth import get_user_model

from readerstudy.models import Case, QualityFlag, Reading, Study
from readerstudy.readings import Answer
from readerstudy.roles import READER

User = get_user_model()


class StudyForm(forms.ModelForm):
    # The blinding gate at "Open for reading" (services.study_update): asked for only when the audit flags something.
    blinding_acknowledged = forms.BooleanField(
        required=False,
        label="Open although the blinding audit flags something",
        help_text="Tick only if the flagged channels cannot be fixed and the study should still be read; the "
        "acknowledgement, your reason and the audit's figures are stored and printed in every report.",
    )
    blinding_reason = forms.CharField(
        required=False,
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 2}),
        label="Why open anyway",
    )

    class Meta:
        model = Study
        fields = list(Study.SETTING_FIELDS)
        widgets = {"instructions": forms.Textarea(attrs={"rows": 4})}

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk is None:  # a new study is a draft until its cases are in (services.study_create)
            self.fields["status"].choices = [(Study.Status.DRAFT, Study.Status.DRAFT.label)]
            self.fields["status"].help_text = "A new study starts as a draft: add cases, then open it for reading."

    def settings_values(self) -> dict:
        """The study settings, without the gate's fields."""
        return {name: value for name, value in self.cleaned_data.items() if name in Study.SETTING_FIELDS}


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("widget", MultipleFileInput())
        super().__init__(*args, **kwargs)

    def clean(self, data, initial=None):
        single = super().clean
        if isinstance(data, list | tuple):
            return [single(item, initial) for item in data]
        return [single(data, initial)]


class CaseUploadForm(forms.Form):
    files = MultipleFileField(help_text="PNG, JPEG or DICOM files; each one becomes a case.")
    truth = forms.ChoiceField(choices=Case.Truth.choices)
    generator = forms.CharField(
        required=False,
        max_length=120,
        help_text="For synthetic images: the generator they came from (used to break statistics down).",
    )
    is_practice = forms.BooleanField(required=False, label="Practice cases (never analysed)")


class FolderImportForm(forms.Form):
    folder = forms.CharField(
        max_length=1000, help_text="A folder on the server, inside one of the allowed import roots."
    )
    truth = forms.ChoiceField(choices=Case.Truth.choices)
    generator = forms.CharField(required=False, max_length=120)
    is_practice = forms.BooleanField(required=False, label="Practice cases (never analysed)")

    def clean_folder(self) -> Path:
        folder = Path(self.cleaned_data["folder"]).expanduser().resolve()
        roots = settings.IMPORT_ROOTS
        if not roots:
            raise forms.ValidationError("Importing from server folders is switched off (set IMPORT_ROOTS).")
        if not any(folder == root or root in folder.parents for root in roots):
            allowed = ", ".join(str(root) for root in roots)
            raise forms.ValidationError(f"The folder must be inside an allowed import root: {allowed}.")
        if not folder.is_dir():
            raise forms.ValidationError(f"There is no folder {folder}.")
        return folder


class AssignReadersForm(forms.Form):
    readers = forms.ModelMultipleChoiceField(
        queryset=User.objects.none(), widget=forms.CheckboxSelectMultiple, required=True
    )

    def __init__(self, *args, study: Study, **kwargs):
        super().__init__(*args, **kwargs)
        assigned = study.sessions.values_list("reader_id", flat=True)
        self.fields["readers"].queryset = (
            User.objects.filter(groups__name=READER, is_active=True).exclude(pk__in=assigned).order_by("username")
        )


class ReadingForm(forms.Form):
    """One answer on the reading screen. Field errors are shown beside the controls; nothing is saved on error."""

    item = forms.CharField(max_length=32)
    submission_id = forms.UUIDField()
    call = forms.ChoiceField(choices=Reading.Call.choices, error_messages={"required": "Choose real or synthetic."})
    confidence = forms.IntegerField(min_value=1, max_value=5, error_messages={"required": "Choose a confidence."})
    anatomy = forms.IntegerField(min_value=1, max_value=5, required=False)
    style = forms.IntegerField(min_value=1, max_value=5, required=False)
    artifacts = forms.IntegerField(min_value=1, max_value=5, required=False)
    flags = forms.MultipleChoiceField(choices=QualityFlag.choices, required=False)
    comment = forms.CharField(max_length=2000, required=False)
    active_ms = forms.IntegerField(min_value=0, max_value=24 * 3600 * 1000, required=False)

    def answer(self) -> Answer:
        return Answer.from_data(self.cleaned_data)

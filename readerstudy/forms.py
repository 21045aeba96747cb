"""Forms for the reading screen and the coordinator pages."""

from __future__ import annotations

from pathlib import Path

from django import forms
from django.contrib.auth import get_user_model

from readerstudy.imports import folder_in_import_roots
from readerstudy.models import Case, QualityFlag, Reading, Study
from readerstudy.planning import FIGURE_LABELS
from readerstudy.readings import Answer
from readerstudy.roles import READER
from readerstudy.stats.mrmc import CHANCE_LEVEL, FIGURES_OF_MERIT
from readerstudy.stats.power import MAX_PLANNED_CASES, ORComponents

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
        return folder_in_import_roots(self.cleaned_data["folder"])


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


# The planning table stays readable: at most this many numbers of readers, and of cases.
MAX_PLAN_VALUES = 30


class StudyPlanForm(forms.Form):
    """What a planned study should achieve and the readers x cases to tabulate ("Plan a study")."""

    DEFAULTS = {
        "figure": "auc",
        "target": "power",
        "expected": 0.6,
        "power": 0.8,
        "half_width": 0.05,
        "alpha": 0.05,
        "readers_from": 3,
        "readers_to": 15,
        "readers_step": 2,
        "cases_from": 50,
        "cases_to": 500,
        "cases_step": 50,
    }

    figure = forms.ChoiceField(
        choices=[(name, FIGURE_LABELS[name][0].upper() + FIGURE_LABELS[name][1:]) for name in FIGURES_OF_MERIT],
        label="Figure of merit",
        help_text="AUC uses the confidence ratings; accuracy, sensitivity and specificity use the calls.",
    )
    target = forms.ChoiceField(
        choices=[
            ("power", "Power: tell readers apart from chance"),
            ("half_width", "Precision: a narrow confidence interval"),
        ],
        widget=forms.RadioSelect,
        label="Target",
    )
    expected = forms.FloatField(
        required=False,
        min_value=0,
        max_value=1,
        label="Reader-averaged value to detect",
        help_text="For the power target: the AUC (or accuracy) the study should be able to tell from chance, 0.5.",
    )
    power = forms.FloatField(min_value=0.5, max_value=0.99, label="Power wanted")
    half_width = forms.FloatField(
        min_value=0.001,
        max_value=0.5,
        label="Half-width wanted",
        help_text="For the precision target: the reader-averaged value ± this, at the confidence level 1 − alpha.",
    )
    alpha = forms.FloatField(min_value=0.001, max_value=0.2, label="Alpha (two-sided)")
    readers_from = forms.IntegerField(min_value=2, max_value=200, label="Readers from")
    readers_to = forms.IntegerField(min_value=2, max_value=200, label="to")
    readers_step = forms.IntegerField(min_value=1, max_value=100, label="step")
    cases_from = forms.IntegerField(min_value=2, max_value=MAX_PLANNED_CASES, label="Cases from")
    cases_to = forms.IntegerField(min_value=2, max_value=MAX_PLANNED_CASES, label="to")
    cases_step = forms.IntegerField(min_value=1, max_value=MAX_PLANNED_CASES, label="step")

    def clean(self):
        data = super().clean()
        for kind in ("readers", "cases"):
            low, high, step = (data.get(f"{kind}_{part}") for part in ("from", "to", "step"))
            if None in (low, high, step):
                continue
            if low > high:
                self.add_error(f"{kind}_to", f"The last number of {kind} is below the first.")
            elif len(range(low, high + 1, step)) > MAX_PLAN_VALUES:
                self.add_error(f"{kind}_step", f"At most {MAX_PLAN_VALUES} numbers of {kind}: take a larger step.")
        figure, chance = data.get("figure"), CHANCE_LEVEL.get(data.get("figure"))
        if data.get("target") == "power" and figure:
            if chance is None:
                self.add_error(
                    "target",
                    f"{FIGURE_LABELS[figure].capitalize()} has no chance level on its own (a guesser trades it "
                    "for the other class's): plan the width of its confidence interval instead.",
                )
            elif data.get("expected") is None:
                self.add_error("expected", "Give the value the study should be able to tell from chance.")
            elif data["expected"] == chance:
                self.add_error("expected", f"{data['expected']:g} is chance itself: give the value to detect.")
        return data

    def readers(self) -> list[int]:
        data = self.cleaned_data
        return list(range(data["readers_from"], data["readers_to"] + 1, data["readers_step"]))

    def cases(self) -> list[int]:
        data = self.cleaned_data
        return list(range(data["cases_from"], data["cases_to"] + 1, data["cases_step"]))

    def effect(self) -> float:
        """The reader-averaged value to detect minus chance (0 for the precision target)."""
        data = self.cleaned_data
        chance = CHANCE_LEVEL[data["figure"]]
        if data["target"] != "power" or chance is None:
            return 0.0
        return data["expected"] - chance

    def goal(self) -> float:
        return self.cleaned_data["power" if self.cleaned_data["target"] == "power" else "half_width"]


class PilotComponentsForm(forms.Form):
    """Obuchowski-Rockette components of a pilot typed in: a published study's, or another site's."""

    pilot_cases = forms.IntegerField(
        min_value=2,
        label="Cases in the pilot",
        help_text="The number of cases the components below were estimated on (read by every reader).",
    )
    var_reader = forms.FloatField(
        label="Reader variance σ²R",
        help_text="How much readers' values differ beyond what their cases explain; negative estimates count as 0.",
    )
    var_error = forms.FloatField(
        label="Error variance Var",
        help_text="The variance of one reader's value over samples of the pilot's cases (the jackknife's).",
    )
    cov2 = forms.FloatField(
        label="Covariance Cov2",
        help_text="The covariance of two readers' values on the same cases (OR-DBM MRMC and RJafroc call it Cov2).",
    )

    def clean_var_error(self) -> float:
        value = self.cleaned_data["var_error"]
        if value <= 0:
            raise forms.ValidationError("A variance is positive.")
        return value

    def clean(self):
        data = super().clean()
        if data.get("var_error") is not None and data.get("cov2") is not None and data["cov2"] > data["var_error"]:
            self.add_error("cov2", "Two readers cannot covary more than one reader varies: Cov2 ≤ Var.")
        return data

    def components(self) -> ORComponents:
        data = self.cleaned_data
        return ORComponents(
            n_cases=data["pilot_cases"], var_reader=data["var_reader"], var_error=data["var_error"], cov2=data["cov2"]
        )

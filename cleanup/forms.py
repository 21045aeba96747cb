"""The form that starts a cleanup job: on a study's cases (which ones, clean or check) or on a generation batch, and
the cleanup settings."""

from __future__ import annotations

from django import forms

from cleanup.inpaint import DEFAULT_PROMPT
from cleanup.models import CleanupJob
from cleanup.pipeline import CleanupConfig
from cleanup.selectors import study_cases_for_scope
from cleanup.services import config_problems
from readerstudy.models import Case, Study

DETECTORS = [
    ("xray", "Text, markers and bars (OCR, marker rules and bar detection; recommended)"),
    ("ocr", "Text only (OCR)"),
    ("glyphs+bars", "Markers, labels and bars without OCR (works without Tesseract)"),
]
SEGMENTERS = [
    ("auto", "Automatic (SAM with a checkpoint, else glyph threshold)"),
    ("glyphs", "Glyph threshold (fast, CPU)"),
    ("sam", "Segment Anything (SAM)"),
]
INPAINTERS = [
    ("auto", "Automatic (Stable Diffusion with a model, else classical)"),
    ("classical", "Classical fill with matched film grain (fast, CPU)"),
    ("sd", "Stable Diffusion 2 inpainting"),
]
CLASSICAL_METHODS = [("telea", "Telea"), ("ns", "Navier-Stokes"), ("biharmonic", "Biharmonic")]


class CaseChoiceField(forms.ModelMultipleChoiceField):
    def label_from_instance(self, case: Case) -> str:
        return case.label or f"Case {case.pk}"


class CleanupJobForm(forms.Form):
    """Settings map one to one onto `cleanup.pipeline.CleanupConfig`; `clean()` checks that this machine can run
    them (Tesseract present for an OCR detector, model files where they are said to be)."""

    mode = forms.ChoiceField(choices=CleanupJob.Mode.choices, widget=forms.RadioSelect, initial=CleanupJob.Mode.CLEAN)
    scope = forms.ChoiceField(
        choices=[choice for choice in CleanupJob.Scope.choices if choice[0] != CleanupJob.Scope.BATCH],
        widget=forms.RadioSelect,
        initial=CleanupJob.Scope.ALL,
    )
    cases = CaseChoiceField(queryset=Case.objects.none(), required=False, widget=forms.CheckboxSelectMultiple)
    detector = forms.ChoiceField(choices=DETECTORS, initial="xray")
    segmenter = forms.ChoiceField(choices=SEGMENTERS, initial="auto")
    sam_checkpoint = forms.CharField(
        required=False,
        max_length=1000,
        label="SAM checkpoint",
        help_text="A sam_vit_*.pth file, absolute or relative to the model folder.",
    )
    inpainter = forms.ChoiceField(choices=INPAINTERS, initial="auto")
    inpainting_model = forms.CharField(
        required=False,
        max_length=1000,
        label="Inpainting model",
        help_text="The stable-diffusion-2-inpainting folder (diffusers layout), absolute or relative to the model "
        "folder.",
    )
    classical_method = forms.ChoiceField(choices=CLASSICAL_METHODS, initial="telea", label="Classical method")
    prompt = forms.CharField(initial=DEFAULT_PROMPT, max_length=300, help_text="Stable Diffusion only.")
    inpainting_steps = forms.IntegerField(initial=50, min_value=1, max_value=200, label="Steps")
    guidance_scale = forms.FloatField(initial=7.5, min_value=0.0, max_value=30.0, label="Guidance")
    dilation_kernel = forms.IntegerField(
        initial=5, min_value=1, max_value=31, label="Mask dilation kernel", help_text="Square, in pixels."
    )
    dilation_iterations = forms.IntegerField(initial=2, min_value=0, max_value=10, label="Dilation iterations")
    seed = forms.IntegerField(initial=0, min_value=0, help_text="Seed of the fill's grain or diffusion noise.")
    verify = forms.BooleanField(
        required=False, initial=True, label="Look for text again on the cleaned image (records what is left)"
    )

    def __init__(self, *args, study: Study | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.study = study
        if study is None:  # a generation batch: all its images are cleaned, nothing to choose
            for name in ("mode", "scope", "cases"):
                del self.fields[name]
        else:
            self.fields["cases"].queryset = study.cases.order_by("id")
        self.config: CleanupConfig | None = None
        self.selected_cases: list[Case] = []

    def clean(self) -> dict:
        data = super().clean()
        if self.errors:
            return data
        if self.study is not None:
            scope = data["scope"]
            self.selected_cases = study_cases_for_scope(
                study=self.study, scope=scope, case_ids=[case.pk for case in data.get("cases") or []]
            )
            if not self.selected_cases:
                where = "cases" if scope == CleanupJob.Scope.SELECTED else "scope"
                self.add_error(where, "There is no case to process: choose at least one.")
        values = {
            name: data[name]
            for name in (
                "detector",
                "segmenter",
                "inpainter",
                "classical_method",
                "prompt",
                "inpainting_steps",
                "guidance_scale",
                "dilation_kernel",
                "dilation_iterations",
                "seed",
                "verify",
            )
        }
        values["sam_checkpoint"] = data.get("sam_checkpoint") or None
        values["inpainting_model"] = data.get("inpainting_model") or None
        try:
            config = CleanupConfig(**values)
        except ValueError as error:
            message = str(error)
            field = "sam_checkpoint" if "sam_checkpoint" in message else None
            field = "inpainting_model" if "inpainting_model" in message else field
            self.add_error(field, message)
            return data
        for field, message in config_problems(config).items():
            self.add_error(field if field in self.fields else None, message)
        self.config = config
        return data

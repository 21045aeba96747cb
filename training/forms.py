"""Forms of the training pages: import a dataset from a server folder, and start a LoRA training run."""

from __future__ import annotations

from django import forms
from django.core.exceptions import ValidationError

from generation.selectors import model_folders
from readerstudy.imports import folder_in_import_roots
from training.models import TrainingDataset
from training.prompts import DEFAULT_TEMPLATE

DEMO_SETTINGS = {
    "resolution": 64,
    "batch_size": 2,
    "max_steps": 10,
    "checkpoint_every": 5,
    "validation_prompts": "view_position = PA. chest radiograph.",
    "validation_steps": 4,
}


def _base_models() -> list:
    """The base-model folders in the model roots (one scan of the roots per form)."""
    return [folder for folder in model_folders() if folder.kind == "model"]


def _choices(folders: list) -> list[tuple[str, str]]:
    return [(str(folder.path), str(folder.path)) for folder in folders]


class DatasetForm(forms.Form):
    name = forms.CharField(max_length=200, help_text="A name for the dataset, shown when a run picks it.")
    folder = forms.CharField(
        max_length=1000, help_text="A server folder inside an allowed import root, with manifest.csv or manifest.jsonl."
    )
    manifest = forms.CharField(
        max_length=1000, required=False, help_text="Another manifest file in the folder (empty: manifest.csv/.jsonl)."
    )
    template = forms.CharField(
        initial=DEFAULT_TEMPLATE,
        help_text="How prompts are made from the manifest's columns ({impression} comes from the report); a "
        "manifest with a prompt column uses its prompts as written.",
    )
    tokenizer_model = forms.ChoiceField(
        label="Tokenizer of",
        help_text="The base model whose text encoder's tokenizer counts the 77 tokens prompts are fitted into.",
    )
    train_fraction = forms.FloatField(initial=0.8, min_value=0, max_value=1)
    validation_fraction = forms.FloatField(initial=0.1, min_value=0, max_value=1)
    test_fraction = forms.FloatField(initial=0.1, min_value=0, max_value=1)
    seed = forms.IntegerField(initial=0, help_text="Seed of the patient-level split.")

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["tokenizer_model"].choices = _choices(_base_models())

    def clean_folder(self):
        return folder_in_import_roots(self.cleaned_data["folder"])

    def clean(self):
        data = super().clean()
        fractions = [data.get(name) for name in ("train_fraction", "validation_fraction", "test_fraction")]
        if None not in fractions and abs(sum(fractions) - 1) > 1e-6:
            raise ValidationError("The three split fractions must add up to 1.")
        return data


class RunForm(forms.Form):
    dataset = forms.ModelChoiceField(queryset=TrainingDataset.objects.order_by("-created_at"))
    base_model = forms.ChoiceField(help_text="The Stable Diffusion 2.1-base folder the LoRA adapts.")
    name = forms.CharField(max_length=200, required=False, help_text="Also names the adapter folder.")
    rank = forms.IntegerField(initial=4, min_value=1, max_value=256)
    alpha = forms.FloatField(initial=4.0, min_value=0.0)
    text_encoder_lora = forms.BooleanField(required=False, label="Adapt the text encoder too")
    learning_rate = forms.FloatField(initial=1e-4, min_value=0.0)
    lr_schedule = forms.ChoiceField(choices=[("constant", "Constant"), ("cosine", "Cosine")], initial="constant")
    warmup_steps = forms.IntegerField(initial=0, min_value=0)
    batch_size = forms.IntegerField(initial=5, min_value=1)
    gradient_accumulation = forms.IntegerField(initial=1, min_value=1)
    resolution = forms.IntegerField(initial=512, min_value=8, help_text="A multiple of 8.")
    epochs = forms.IntegerField(initial=10, min_value=1)
    max_steps = forms.IntegerField(required=False, min_value=1, help_text="Optimizer steps; overrides epochs.")
    max_grad_norm = forms.FloatField(initial=1.0, min_value=0.0)
    mixed_precision = forms.ChoiceField(
        choices=[("auto", "Automatic (bf16 where supported)"), ("bf16", "bf16"), ("fp16", "fp16"), ("no", "None")]
    )
    gradient_checkpointing = forms.BooleanField(required=False)
    min_snr_gamma = forms.FloatField(required=False, min_value=0.0, help_text="Min-SNR weighting (5); empty: off.")
    seed = forms.IntegerField(initial=0)
    checkpoint_every = forms.IntegerField(initial=500, min_value=1)
    keep_checkpoints = forms.IntegerField(initial=3, min_value=1)
    validation_every = forms.IntegerField(initial=0, min_value=0, help_text="0: validation images at the end only.")
    validation_prompts = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 2}), help_text="One prompt per line."
    )
    validation_steps = forms.IntegerField(initial=20, min_value=1)

    SETTING_NAMES = (
        "rank",
        "alpha",
        "text_encoder_lora",
        "learning_rate",
        "lr_schedule",
        "warmup_steps",
        "batch_size",
        "gradient_accumulation",
        "resolution",
        "epochs",
        "max_steps",
        "max_grad_norm",
        "mixed_precision",
        "gradient_checkpointing",
        "min_snr_gamma",
        "seed",
        "checkpoint_every",
        "keep_checkpoints",
        "validation_every",
        "validation_steps",
    )

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        base_models = _base_models()
        self.fields["base_model"].choices = _choices(base_models)
        if not self.initial.get("dataset"):
            latest = self.fields["dataset"].queryset.first()
            if latest is not None:
                self.initial["dataset"] = latest.pk
        demo = next((folder for folder in base_models if folder.is_demo), None)
        if demo is not None:  # the tiny demo model trains in seconds at these settings on a CPU
            self.initial.setdefault("base_model", str(demo.path))
            for name, value in DEMO_SETTINGS.items():
                self.initial.setdefault(name, value)

    def training_settings(self):
        """The form as `training.loop.TrainingSettings` (ValueError with the reasons when they do not fit)."""
        from training.loop import TrainingSettings

        values = {name: self.cleaned_data[name] for name in self.SETTING_NAMES}
        prompts = [line.strip() for line in self.cleaned_data["validation_prompts"].splitlines() if line.strip()]
        values["validation_prompts"] = tuple(prompts)
        return TrainingSettings(**values)

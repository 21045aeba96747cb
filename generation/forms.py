"""The form that starts a generation batch. Every problem a worker would otherwise meet (a missing model folder, an
unreadable adapter, an impossible size, a bad prompt CSV, an unknown template field) is reported on the form."""

from __future__ import annotations

from django import forms

from generation.batch_check import BatchInvalid, BatchRequest, batch_check, prompts_from_template
from generation.demo import DEMO_ADAPTER_NAME, DEMO_MODEL_NAME
from generation.pipeline import MAX_GUIDANCE, MAX_SIZE, MAX_STEPS, MIN_SIZE, SCHEDULERS, GenerationSettings
from generation.prompts import MAX_PROMPTS, PromptError, prompts_from_csv, prompts_from_list
from generation.selectors import ModelFolder
from readerstudy.models import Study

SCHEDULER_LABELS = {
    "pndm": "PNDM",
    "ddim": "DDIM",
    "ddpm": "DDPM",
    "dpm++": "DPM++ 2M",
    "dpm++_karras": "DPM++ 2M Karras",
    "deis": "DEIS",
    "unipc": "UniPC",
    "euler": "Euler",
    "euler_a": "Euler ancestral",
    "heun": "Heun",
    "lms": "LMS",
    "kdpm2": "KDPM2",
    "kdpm2_a": "KDPM2 ancestral",
}
SCHEDULER_CHOICES = [("default", "The model's own (PNDM for SD 2.1-base)")] + [
    (name, SCHEDULER_LABELS.get(name, name)) for name in SCHEDULERS
]
DEFAULT_TEMPLATE = "view_position = PA. modality = CR. {finding}"
DEFAULT_TEMPLATE_FIELDS = "finding = 4 x No findings, 4 x small right pleural effusion"
# The demo model is tiny and random: small, quick images show the whole pipeline in seconds on a CPU.
DEMO_SETTINGS = {"width": 128, "height": 128, "steps": 20}


def _number(**attrs) -> forms.NumberInput:
    return forms.NumberInput(attrs=attrs)


class BatchForm(forms.Form):
    """Model, prompts and settings of a new batch; `batch_request` holds the checked request once valid."""

    SOURCE_CHOICES = [("template", "Template with counts"), ("list", "List"), ("csv", "CSV column")]
    # Needed only for the prompt source chosen: not marked "optional" on the page.
    SOURCE_FIELDS = ("template", "template_fields", "prompt_list", "csv_file", "csv_column")

    name = forms.CharField(max_length=200, required=False, help_text="Optional; by default the count and model.")
    base_model = forms.CharField(
        max_length=1000,
        label="Base model folder",
        help_text="A Stable Diffusion 2.1-base folder (diffusers layout) inside the model root, by name or full path.",
        widget=forms.TextInput(attrs={"list": "model-folders", "autocomplete": "off", "spellcheck": "false"}),
    )
    adapter = forms.CharField(
        max_length=1000,
        required=False,
        label="LoRA adapter",
        help_text="Optional: an adapter folder or file inside the model root, fused into the model.",
        widget=forms.TextInput(attrs={"list": "adapter-folders", "autocomplete": "off", "spellcheck": "false"}),
    )
    prompt_source = forms.ChoiceField(choices=SOURCE_CHOICES, initial="template", widget=forms.RadioSelect)
    template = forms.CharField(
        max_length=2000,
        required=False,
        initial=DEFAULT_TEMPLATE,
        help_text="Fields in braces, e.g. {finding}, are filled from the values below.",
    )
    template_fields = forms.CharField(
        required=False,
        label="Field values",
        initial=DEFAULT_TEMPLATE_FIELDS,
        widget=forms.Textarea(attrs={"rows": 3, "spellcheck": "false"}),
        help_text="One field per line: “finding = 100 x No findings, 100 x small right pleural effusion” "
        "(counts), “view = PA | AP” (each once) or “modality = CR” (one value).",
    )
    interleave = forms.BooleanField(
        required=False,
        initial=True,
        label="Interleave prompts",
        help_text="Mix the prompts through the batch, so that any part of it (e.g. before a cancel) is balanced.",
    )
    prompt_list = forms.CharField(
        required=False,
        label="Prompts",
        widget=forms.Textarea(attrs={"rows": 5, "spellcheck": "false"}),
        help_text="One prompt per line; empty lines are skipped.",
    )
    csv_file = forms.FileField(required=False, label="CSV file", help_text="UTF-8, with a header row.")
    csv_column = forms.CharField(max_length=200, required=False, initial="prompt", label="Column")
    images_per_prompt = forms.IntegerField(
        min_value=1,
        max_value=MAX_PROMPTS,
        initial=1,
        label="Images per prompt",
        help_text="For a list or CSV: how many images (with different seeds) each prompt gets.",
        widget=_number(min=1, max=MAX_PROMPTS),
    )
    steps = forms.IntegerField(initial=75, widget=_number(min=1, max=MAX_STEPS), help_text="Denoising steps.")
    guidance_scale = forms.FloatField(
        initial=4.0, label="Guidance", widget=_number(min=0, max=MAX_GUIDANCE, step=0.5), help_text="0 to 30."
    )
    width = forms.IntegerField(initial=512, widget=_number(min=MIN_SIZE, max=MAX_SIZE, step=8), help_text="Pixels.")
    height = forms.IntegerField(initial=512, widget=_number(min=MIN_SIZE, max=MAX_SIZE, step=8), help_text="Pixels.")
    scheduler = forms.ChoiceField(choices=SCHEDULER_CHOICES, initial="default", label="Sampler")
    negative_prompt = forms.CharField(
        required=False, max_length=2000, widget=forms.Textarea(attrs={"rows": 2}), label="Negative prompt"
    )
    batch_size = forms.IntegerField(
        required=False,
        label="Images per call",
        widget=_number(min=1, placeholder="fit to memory"),
        help_text="Empty: as many as fit in the device's memory.",
    )
    base_seed = forms.IntegerField(
        required=False,
        label="Base seed",
        widget=_number(min=0, placeholder="random"),
        help_text="Image i gets seed base + i; the same seeds and settings draw the same images again.",
    )
    write_dicom = forms.BooleanField(
        required=False,
        label="Also write DICOM",
        help_text="A Secondary Capture per image that says it is synthetic and names the model and seed.",
    )

    def __init__(self, *args, folders: list[ModelFolder] = (), **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.folders = list(folders)
        self.batch_request: BatchRequest | None = None
        for name in self.SOURCE_FIELDS:
            self.fields[name].needed_for_source = True
        demo_model = next((f for f in self.folders if f.is_demo and f.kind == "model"), None)
        if demo_model is not None:
            self.initial.setdefault("base_model", DEMO_MODEL_NAME)
            if any(f.is_demo and f.kind == "adapter" and f.path.name == DEMO_ADAPTER_NAME for f in self.folders):
                self.initial.setdefault("adapter", DEMO_ADAPTER_NAME)
            for name, value in DEMO_SETTINGS.items():
                self.initial.setdefault(name, value)
        else:
            first_model = next((f for f in self.folders if f.kind == "model"), None)
            if first_model is not None:
                self.initial.setdefault("base_model", first_model.path.name)

    @property
    def model_folders(self) -> list[ModelFolder]:
        return [folder for folder in self.folders if folder.kind == "model"]

    @property
    def adapter_folders(self) -> list[ModelFolder]:
        return [folder for folder in self.folders if folder.kind == "adapter"]

    @property
    def offers_demo_model(self) -> bool:
        return any(folder.is_demo for folder in self.model_folders)

    def _prompts(self) -> list[str] | None:
        data = self.cleaned_data
        source = data.get("prompt_source")
        per_prompt = data.get("images_per_prompt") or 1
        try:
            if source == "template":
                return prompts_from_template(
                    data.get("template", ""), data.get("template_fields", ""), interleave=data.get("interleave", False)
                )
            if source == "list":
                prompts = prompts_from_list(data.get("prompt_list", ""))
            elif source == "csv":
                upload = data.get("csv_file")
                if upload is None:
                    self.add_error("csv_file", "Choose a CSV file.")
                    return None
                column = data.get("csv_column", "").strip()
                if not column:
                    self.add_error("csv_column", "Name the column that holds the prompts.")
                    return None
                prompts = prompts_from_csv(upload, column)
            else:
                return None
        except PromptError as error:
            self.add_error(self._source_field(source), str(error))
            return None
        total = len(prompts) * per_prompt
        if total > MAX_PROMPTS:
            self.add_error("images_per_prompt", f"That makes {total} images; a batch can have at most {MAX_PROMPTS}.")
            return None
        return [prompt for prompt in prompts for _ in range(per_prompt)]

    @staticmethod
    def _source_field(source: str | None) -> str:
        return {"template": "template", "list": "prompt_list", "csv": "csv_file"}.get(source or "", "prompt_source")

    def clean(self) -> dict:
        data = super().clean()
        prompts = self._prompts()
        numbers = ("steps", "guidance_scale", "width", "height")
        if prompts is None or any(data.get(name) is None for name in numbers) or "base_model" not in data:
            return data
        request = BatchRequest(
            base_model=data["base_model"],
            adapter=data.get("adapter", ""),
            prompts=tuple(prompts),
            settings=GenerationSettings(
                steps=data["steps"],
                guidance_scale=data["guidance_scale"],
                width=data["width"],
                height=data["height"],
                negative_prompt=data.get("negative_prompt", ""),
                scheduler=data.get("scheduler") or None,
                batch_size=data.get("batch_size"),
            ),
            base_seed=data.get("base_seed"),
            write_dicom=data.get("write_dicom", False),
            name=data.get("name", ""),
        )
        try:
            batch_check(request)
        except BatchInvalid as invalid:
            for name, messages in invalid.errors.items():
                target = self._source_field(data.get("prompt_source")) if name == "prompts" else name
                for message in messages:
                    self.add_error(target if target in self.fields else None, message)
            return data
        self.batch_request = request
        return data


class AddToStudyForm(forms.Form):
    """Which study a batch's done images become synthetic cases of."""

    study = forms.ModelChoiceField(queryset=Study.objects.none(), empty_label="Choose a study")
    is_practice = forms.BooleanField(required=False, label="As practice cases (never analysed)")

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["study"].queryset = Study.objects.order_by("-created_at")

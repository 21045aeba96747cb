"""The training domain: datasets of image-prompt pairs for LoRA fine-tuning, each example with its split and weight.

A dataset is imported once from a server folder and its manifest (`training.datasets.dataset_import`) and not edited
afterwards: its hash names exactly the images, prompts and splits a training run reads.
"""

from __future__ import annotations

import uuid

from django.conf import settings as project_settings
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q

from jobs.models import BackgroundJob


def example_upload_to(instance: TrainingExample, filename: str) -> str:
    # No part of the source file name is kept: names can carry patient data.
    return f"training/dataset-{instance.dataset_id}/{uuid.uuid4().hex}.png"


class TrainingDataset(models.Model):
    name = models.CharField(max_length=200, help_text="The dataset's name, shown wherever a training run picks it.")
    folder = models.CharField(
        max_length=1000,
        help_text="The server folder the images and the manifest were read from, inside an allowed import root.",
    )
    manifest = models.CharField(
        max_length=1000, help_text="The manifest file the examples were read from, relative to the folder."
    )
    template = models.TextField(
        blank=True,
        help_text="The caption template every prompt was built from, e.g. 'view_position = {view}. {impression}'. "
        "Empty when the manifest gave the prompts in its prompt column.",
    )
    created_by = models.ForeignKey(
        project_settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="training_datasets"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    example_count = models.PositiveIntegerField(default=0, help_text="The number of examples imported.")
    truncated_prompt_count = models.PositiveIntegerField(
        default=0,
        help_text="The number of prompts cut to fit the text encoder's 77 tokens; each such example is marked "
        "as truncated.",
    )
    refused_row_count = models.PositiveIntegerField(
        default=0, help_text="The number of manifest rows refused; the import report gives the reason for each."
    )
    train_count = models.PositiveIntegerField(default=0, help_text="The number of examples in the training split.")
    validation_count = models.PositiveIntegerField(
        default=0, help_text="The number of examples in the validation split."
    )
    test_count = models.PositiveIntegerField(default=0, help_text="The number of examples in the test split.")
    settings = models.JSONField(
        default=dict,
        blank=True,
        help_text="How the dataset was built: split fractions, seed, whether the split is by patient or by image, "
        "where the prompts came from, the tokenizer and the token limit.",
    )
    dataset_hash = models.CharField(
        max_length=64,
        help_text="SHA-256 over every example's original and stored image digests, prompt and split: the same "
        "folder imported with the same settings gives the same hash.",
    )
    import_report = models.JSONField(
        default=list,
        blank=True,
        help_text="One entry per manifest row, in manifest order: imported (with its split) or refused with the "
        "reason.",
    )

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.name


class TrainingExample(models.Model):
    class Split(models.TextChoices):
        TRAIN = "train", "Training"
        VALIDATION = "validation", "Validation"
        TEST = "test", "Test"

    dataset = models.ForeignKey(TrainingDataset, on_delete=models.CASCADE, related_name="examples")
    image = models.FileField(
        upload_to=example_upload_to,
        max_length=255,
        help_text="The decoded image as a 16-bit grayscale PNG, padded with black to a centred square; never "
        "resized, flipped or rotated, and with no metadata of the source file.",
    )
    image_sha256 = models.CharField(max_length=64, help_text="SHA-256 of the original file's bytes.")
    stored_sha256 = models.CharField(max_length=64, help_text="SHA-256 of the stored, padded PNG.")
    source_path = models.CharField(
        max_length=1000, help_text="The image's path as the manifest gives it, relative to the dataset's folder."
    )
    source_format = models.CharField(max_length=10, help_text="The original file's format: png, jpeg or dicom.")
    manifest_line = models.PositiveIntegerField(help_text="The line of the manifest the example was read from.")
    width = models.PositiveIntegerField(help_text="The width of the original image in pixels, before padding.")
    height = models.PositiveIntegerField(help_text="The height of the original image in pixels, before padding.")
    import_notes = models.JSONField(
        default=list,
        blank=True,
        help_text="What decoding did to the original (e.g. a DICOM window applied, MONOCHROME1 inverted).",
    )
    patient_id = models.CharField(
        max_length=200,
        blank=True,
        help_text="The patient the image belongs to, as the manifest gives it; all of a patient's images are in "
        "the same split. Empty when the manifest gives none.",
    )
    view = models.CharField(max_length=50, blank=True, help_text="The view position as the manifest gives it.")
    sex = models.CharField(max_length=50, blank=True, help_text="The patient's sex as the manifest gives it.")
    age = models.CharField(max_length=50, blank=True, help_text="The patient's age as the manifest gives it.")
    extra = models.JSONField(
        default=dict,
        blank=True,
        help_text="The manifest's other columns for this row, which a template can use.",
    )
    report = models.TextField(blank=True, help_text="The radiology report as the manifest gives it.")
    impression = models.TextField(
        blank=True,
        help_text="The report's IMPRESSION section (or its FINDINGS, or the whole report when it has neither), "
        "whitespace normalised.",
    )
    prompt = models.TextField(
        help_text="The prompt the model is trained with, after any truncation to the text encoder's tokens."
    )
    prompt_tokens = models.PositiveSmallIntegerField(
        help_text="The number of tokens of the prompt, the start and end tokens included."
    )
    truncated = models.BooleanField(
        default=False, help_text="Whether the prompt was cut (at a word boundary) to fit the text encoder."
    )
    dropped_tokens = models.PositiveIntegerField(
        default=0, help_text="The number of tokens the truncation cut from the prompt (0 if it was not cut)."
    )
    split = models.CharField(
        max_length=10,
        choices=Split.choices,
        help_text="Whether the example is for training, validation or testing; a patient's images share one split.",
    )
    weight = models.FloatField(
        default=1.0,
        validators=[MinValueValidator(0.0)],
        help_text="How much the example counts in training relative to the others (1 by default); set later from "
        "reader results. Not part of the dataset hash.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["dataset", "manifest_line"]
        constraints = [
            models.UniqueConstraint(fields=["dataset", "image_sha256"], name="training_example_unique_image"),
            models.CheckConstraint(
                condition=Q(split__in=["train", "validation", "test"]), name="training_example_known_split"
            ),
            models.CheckConstraint(condition=Q(weight__gte=0), name="training_example_weight_not_negative"),
        ]
        indexes = [models.Index(fields=["dataset", "split"], name="training_example_split")]

    def __str__(self) -> str:
        return f"{self.dataset} line {self.manifest_line}: {self.source_path}"


class TrainingRun(BackgroundJob):
    """A LoRA fine-tuning run of a base model on a dataset's training split, run by a worker on the `gpu` queue
    (`jobs.runner`), resumable from its last checkpoint; `total` is the number of optimizer steps planned."""

    task_name = "training.tasks.run_training"
    task_pk_argument = "run_pk"
    job_noun = "training run"

    name = models.CharField(max_length=200, help_text="A name for the run; the adapter folder is named after it.")
    created_by = models.ForeignKey(project_settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    dataset = models.ForeignKey(
        "training.TrainingDataset", on_delete=models.PROTECT, related_name="runs", help_text="What the run learns from."
    )
    dataset_hash = models.CharField(max_length=64, help_text="The hash of the dataset when the run started.")
    base_model_dir = models.CharField(
        max_length=1000, help_text="The Stable Diffusion 2.1-base folder (diffusers layout) the LoRA adapts."
    )
    settings = models.JSONField(help_text="The training settings (`training.loop.TrainingSettings`), as started.")
    output_dir = models.CharField(
        max_length=1000, help_text="Where checkpoints, caches and the adapter are written (inside MODEL_ROOT)."
    )
    step = models.PositiveIntegerField(default=0, help_text="Optimizer steps done so far.")
    last_checkpoint = models.PositiveIntegerField(
        null=True, blank=True, help_text="Step of the latest checkpoint a resumed run starts from."
    )
    loss_log = models.JSONField(
        default=list,
        blank=True,
        help_text="One entry per reported step: step, loss, learning rate, grad norm, images/s.",
    )
    validation = models.JSONField(
        default=list, blank=True, help_text="Validation images per step: [{step, images: [{prompt, seed, file}]}]."
    )
    adapter_dir = models.CharField(max_length=1000, blank=True, help_text="The finished adapter's folder.")
    final_loss = models.FloatField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.name

    @property
    def percent(self) -> int:
        return round(100 * self.step / self.total) if self.total else 0

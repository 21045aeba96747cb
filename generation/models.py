"""Generation batches: what an admin asked a model to draw, one row per requested image, and where each one went.

A batch's images are created up front, one `BatchImage` per (index, prompt, seed), unique per batch and index, so
a worker that stops half-way leaves exactly the unfinished rows pending: resuming can neither skip nor repeat an
image. Each image records its output files and the full provenance the pipeline reported. `BatchImageCase` links
an image to the case it became in a study, which makes "add to study" idempotent.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from jobs.models import BackgroundJob
from readerstudy.models import Case, Study


def png_upload_to(instance: BatchImage, filename: str) -> str:
    return image_file_name(instance.batch_id, instance.index, "png")


def dicom_upload_to(instance: BatchImage, filename: str) -> str:
    return image_file_name(instance.batch_id, instance.index, "dcm")


def image_file_name(batch_id: int, index: int, extension: str) -> str:
    """Storage name of an image's output: fixed per batch and index, so a retry overwrites what a stopped worker
    left behind instead of adding a second copy."""
    return f"generation/batch-{batch_id}/{index:06d}.{extension}"


class GenerationBatch(BackgroundJob):
    """A request for many images from one model, run by a worker on the `gpu` queue (`jobs.runner`), with its
    progress; `total` is the number of images requested."""

    task_name = "generation.tasks.run_batch"
    task_pk_argument = "batch_pk"
    item_relation = "images"
    item_order = "index"
    job_noun = "generation batch"

    name = models.CharField(max_length=200, help_text="A name for the batch, shown to coordinators.")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    base_model_dir = models.CharField(
        max_length=1000, help_text="The Stable Diffusion model folder (diffusers layout) the images come from."
    )
    adapter_dir = models.CharField(
        max_length=1000, blank=True, help_text="The LoRA adapter folder or file fused into the model; empty for none."
    )
    generator_label = models.CharField(
        max_length=120,
        help_text="Short readable name of model and adapter; becomes the generator of the cases made from this batch.",
    )
    is_demo_model = models.BooleanField(
        default=False, help_text="Whether the model is the randomly initialised demo model (it draws no X-rays)."
    )
    steps = models.PositiveIntegerField(help_text="Denoising steps per image.")
    guidance_scale = models.FloatField(help_text="Classifier-free guidance scale.")
    width = models.PositiveIntegerField(help_text="Image width in pixels (a multiple of 8).")
    height = models.PositiveIntegerField(help_text="Image height in pixels (a multiple of 8).")
    negative_prompt = models.TextField(blank=True, help_text="What every image should not show.")
    scheduler = models.CharField(
        max_length=30, default="default", help_text="Sampler; 'default' is the model's own (PNDM for SD 2.1-base)."
    )
    batch_size = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Images generated together per pipeline call; empty fits it to the device's memory.",
    )
    base_seed = models.BigIntegerField(
        null=True, blank=True, help_text="Image i gets seed base_seed + i unless seeds were given one by one."
    )
    write_dicom = models.BooleanField(
        default=False, help_text="Whether each image is also written as a DICOM Secondary Capture marked synthetic."
    )
    dicom_study_uid = models.CharField(max_length=64, blank=True, help_text="One DICOM study for the whole batch.")
    dicom_series_uid = models.CharField(max_length=64, blank=True, help_text="One DICOM series for the whole batch.")

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "generation batches"

    def __str__(self) -> str:
        return self.name


class BatchImage(models.Model):
    """One requested image of a batch: its prompt and seed from the start, its files and provenance once made."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    batch = models.ForeignKey(GenerationBatch, on_delete=models.CASCADE, related_name="images")
    index = models.PositiveIntegerField(help_text="Position in the batch, from 0.")
    prompt = models.TextField()
    seed = models.BigIntegerField(help_text="Seed of the image's starting noise; the same seed redraws the image.")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    png = models.FileField(upload_to=png_upload_to, max_length=255, blank=True)
    png_sha256 = models.CharField(max_length=64, blank=True)
    dicom = models.FileField(upload_to=dicom_upload_to, max_length=255, blank=True)
    seconds = models.FloatField(null=True, blank=True, help_text="Generation time of this image's share of its call.")
    provenance = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["batch", "index"]
        constraints = [models.UniqueConstraint(fields=["batch", "index"], name="batch_image_unique_index")]
        indexes = [models.Index(fields=["batch", "status", "index"], name="batch_image_claim")]

    def __str__(self) -> str:
        return f"{self.batch} #{self.index + 1}"


class BatchImageCase(models.Model):
    """The case a batch image became in a study (at most one per image and study)."""

    image = models.ForeignKey(BatchImage, on_delete=models.CASCADE, related_name="cases")
    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="+")
    case = models.OneToOneField(Case, on_delete=models.CASCADE, related_name="batch_image")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["image", "study"]
        constraints = [models.UniqueConstraint(fields=["image", "study"], name="batch_image_once_per_study")]

    def __str__(self) -> str:
        return f"{self.image} in {self.study}"

"""Cleanup jobs in the site: which images a coordinator sent through text cleanup (or a text check), and per image
what was found, what was changed, the files written and the review decision. An image is a study's case or, for a
job chained after a generation batch, one of the batch's images.

A job's items are created up front, one `CleanupItem` per image, unique per job and image, so a worker that stops
half-way leaves exactly the unfinished items pending: running the job again can neither skip nor repeat an image.
The original of a case is never written to; a cleaned image reaches readers only when a reviewer accepts it.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from jobs.models import BackgroundJob
from readerstudy.models import Case, Study


def item_file_name(job_id: int, item_id: int, kind: str) -> str:
    """Storage name of one of an item's files: fixed per item and kind, so a retry overwrites what a stopped worker
    left behind instead of adding a second copy."""
    return f"cleanup/job-{job_id}/item-{item_id}/{kind}.png"


def _upload_to(instance: CleanupItem, filename: str) -> str:
    # Files are written through `cleanup.item_files` under `item_file_name`; this only satisfies FileField.
    return f"cleanup/job-{instance.job_id}/item-{instance.pk}/{filename}"


class CleanupJob(BackgroundJob):
    """Text cleanup (or a text check) of a set of images, run by a worker on the `gpu` queue (`jobs.runner`), with
    its progress; `total` is the number of images in the job."""

    task_name = "cleanup.tasks.run_cleanup_job"
    item_relation = "items"
    item_order = "position"
    job_noun = "cleanup job"

    class Mode(models.TextChoices):
        CLEAN = "clean", "Clean text"
        CHECK = "check", "Check for text"

    class Scope(models.TextChoices):
        ALL = "all", "All cases of the study"
        REAL = "real", "All real cases"
        SYNTHETIC = "synthetic", "All synthetic cases"
        SELECTED = "selected", "Selected cases"
        BATCH = "batch", "All images of a generation batch"

    study = models.ForeignKey(
        Study,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="cleanup_jobs",
        help_text="The study whose cases are cleaned or checked (or else `batch`).",
    )
    batch = models.ForeignKey(
        "generation.GenerationBatch",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="cleanup_jobs",
        help_text="The generation batch whose images are cleaned once it has finished (or else `study`).",
    )
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    mode = models.CharField(
        max_length=10,
        choices=Mode.choices,
        default=Mode.CLEAN,
        help_text="Clean text: detect, mask and inpaint, for review. Check for text: only count the text regions "
        "on each served image, changing nothing.",
    )
    scope = models.CharField(
        max_length=12, choices=Scope.choices, default=Scope.ALL, help_text="Which images the job was started on."
    )
    config = models.JSONField(
        default=dict,
        help_text="The cleanup settings (`cleanup.pipeline.CleanupConfig`), as given when the job started.",
    )

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(study__isnull=False, batch__isnull=True) | Q(study__isnull=True, batch__isnull=False),
                name="cleanup_job_study_or_batch",
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_mode_display()} #{self.pk} ({self.study or self.batch})"

    @property
    def is_check(self) -> bool:
        return self.mode == self.Mode.CHECK

    @property
    def settings_summary(self) -> str:
        """The settings in a line, with "auto" resolved the way `cleanup.pipeline.build_stages` resolves it."""
        config = self.config
        parts = [f"{config.get('detector', 'xray')} detector"]
        if not self.is_check:
            sam = config.get("segmenter") == "sam" or (
                config.get("segmenter") == "auto" and config.get("sam_checkpoint")
            )
            sd = config.get("inpainter") == "sd" or (
                config.get("inpainter") == "auto" and config.get("inpainting_model")
            )
            parts.append("SAM masks" if sam else "glyph-threshold masks")
            parts.append(
                f"Stable Diffusion fill, {config.get('inpainting_steps')} steps"
                if sd
                else f"classical fill ({config.get('classical_method', 'telea')})"
            )
        return " · ".join(parts)


class CleanupItem(models.Model):
    """One image of a job: what the detector found, what cleanup changed, its files and the review decision."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    class Review(models.TextChoices):
        PENDING = "pending", "To review"
        ACCEPTED = "accepted", "Accepted"
        REJECTED = "rejected", "Rejected"

    job = models.ForeignKey(CleanupJob, on_delete=models.CASCADE, related_name="items")
    position = models.PositiveIntegerField(help_text="Order in the job, from 0.")
    case = models.ForeignKey(Case, on_delete=models.CASCADE, null=True, blank=True, related_name="cleanup_items")
    batch_image = models.ForeignKey(
        "generation.BatchImage", on_delete=models.CASCADE, null=True, blank=True, related_name="cleanup_items"
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    changed = models.BooleanField(
        null=True, blank=True, help_text="Whether cleanup changed any pixel (no text found: unchanged)."
    )
    text_regions = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Text regions found: on the original (clean) or on the served image (check).",
    )
    served_text_regions = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Text regions found on the served image the cleaned original would become (clean mode).",
    )
    residual_regions = models.PositiveIntegerField(
        null=True, blank=True, help_text="Text regions the detector still finds on the cleaned original."
    )
    result = models.JSONField(
        default=dict,
        blank=True,
        help_text="Detector, segmenter and inpainter with their settings, boxes with OCR text, residual boxes, "
        "timings (`CleanupResult.to_dict()`).",
    )
    seconds = models.FloatField(null=True, blank=True, help_text="Wall time spent on this image.")
    error = models.TextField(blank=True)
    mask = models.FileField(upload_to=_upload_to, max_length=255, blank=True, help_text="Removal mask, native size.")
    cleaned = models.FileField(
        upload_to=_upload_to, max_length=255, blank=True, help_text="Cleaned image, native size, 16-bit PNG."
    )
    preview_before = models.FileField(upload_to=_upload_to, max_length=255, blank=True)
    preview_after = models.FileField(upload_to=_upload_to, max_length=255, blank=True)
    preview_mask = models.FileField(upload_to=_upload_to, max_length=255, blank=True)
    review = models.CharField(max_length=10, choices=Review.choices, default=Review.PENDING)
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    reviewed_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["job", "position"]
        constraints = [
            models.UniqueConstraint(fields=["job", "position"], name="cleanup_item_unique_position"),
            models.UniqueConstraint(fields=["job", "case"], name="cleanup_item_once_per_job"),
            models.UniqueConstraint(fields=["job", "batch_image"], name="cleanup_item_image_once_per_job"),
            models.CheckConstraint(
                condition=Q(case__isnull=False, batch_image__isnull=True)
                | Q(case__isnull=True, batch_image__isnull=False),
                name="cleanup_item_case_or_batch_image",
            ),
        ]
        indexes = [models.Index(fields=["job", "status", "position"], name="cleanup_item_claim")]

    def __str__(self) -> str:
        return f"{self.job} · image {self.position + 1}"

    @property
    def target_label(self) -> str:
        """What the image is, in the coordinator's words: a study case or a generated image."""
        if self.case_id is not None:
            return f"Case {self.case_id}"
        return f"Batch image {self.batch_image.index + 1}"

    @property
    def outcome(self) -> str:
        """pending, failed, checked, cleaned or unchanged (no text found: a normal result)."""
        if self.status != self.Status.DONE:
            return self.status
        if self.job.mode == CleanupJob.Mode.CHECK:
            return "checked"
        return "cleaned" if self.changed else "unchanged"

    @property
    def outcome_label(self) -> str:
        return {
            "pending": "Pending",
            "failed": "Failed",
            "checked": "Checked",
            "cleaned": "Cleaned",
            "unchanged": "Clean, unchanged",
        }[self.outcome]

    @property
    def reviewable(self) -> bool:
        return self.status == self.Status.DONE and self.job.mode == CleanupJob.Mode.CLEAN

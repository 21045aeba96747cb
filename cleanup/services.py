"""Writes for text cleanup on the web side: check a job's settings, start (on cases, or chained after a generation
batch), cancel and resume cleanup jobs, queued for a `gpu` worker through `jobs.runner`. The run is
`cleanup.worker`, the review of its results `cleanup.review`, its stored files `cleanup.item_files`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from cleanup.models import CleanupItem, CleanupJob
from cleanup.ocr import tesseract_available
from cleanup.pipeline import CleanupConfig
from generation.models import BatchImage, GenerationBatch
from generation.roots import PathRefused, resolve_in_roots
from jobs import runner
from readerstudy.models import Case, Study

logger = logging.getLogger(__name__)
User = get_user_model()
# Detectors that run Tesseract: they cannot work where it is missing.
OCR_DETECTORS = {"xray", "ocr"}


class CleanupRefused(ValueError):
    """A request that cannot be carried out; `message` says why in the coordinator's words, `errors` by field."""

    def __init__(self, message: str, *, errors: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.errors = dict(errors or {})


# --- settings -----------------------------------------------------------------------------------------------------


def detector_needs_tesseract(detector: str) -> bool:
    return bool({part.strip() for part in detector.split("+")} & OCR_DETECTORS)


def resolve_model_path(value: str) -> Path:
    """A model path as given (absolute, relative to MODEL_ROOT, or under ~), resolved; refused outside the model
    roots. The same policy as generation's model folders (`generation.roots`)."""
    try:
        return resolve_in_roots(value)
    except PathRefused as refused:
        raise CleanupRefused(str(refused)) from refused


def config_problems(config: CleanupConfig) -> dict[str, str]:
    """What stops `config` from running on this machine, by CleanupConfig field: Tesseract missing for an OCR
    detector, an unknown detector, a SAM checkpoint or inpainting model folder that is not there."""
    from cleanup.detect import make_detector

    problems: dict[str, str] = {}
    try:
        make_detector(config.detector, **dict(config.detector_options))
    except (ValueError, TypeError) as error:
        problems["detector"] = str(error)
    else:
        if detector_needs_tesseract(config.detector) and not tesseract_available():
            problems["detector"] = (
                "Tesseract is not installed here, and the “"
                + config.detector
                + "” detector reads text with it. Install Debian's tesseract-ocr and tesseract-ocr-eng (or set "
                "TESSERACT_CMD), or choose the markers-and-bars detector, which needs no OCR."
            )
    if config.sam_checkpoint:
        try:
            path = resolve_model_path(config.sam_checkpoint)
        except CleanupRefused as refused:
            problems["sam_checkpoint"] = refused.message
        else:
            if not path.is_file():
                problems["sam_checkpoint"] = f"There is no SAM checkpoint file {path}."
    if config.inpainting_model:
        try:
            path = resolve_model_path(config.inpainting_model)
        except CleanupRefused as refused:
            problems["inpainting_model"] = refused.message
        else:
            if not (path / "model_index.json").is_file():
                problems["inpainting_model"] = (
                    f"{path} is not a diffusers inpainting model folder (it has no model_index.json)."
                )
    return problems


def job_config(job: CleanupJob) -> CleanupConfig:
    """The job's settings, with model paths resolved and the worker's ML_DEVICE for "auto"."""
    values: dict[str, Any] = dict(job.config)
    for name in ("sam_checkpoint", "inpainting_model"):
        if values.get(name):
            values[name] = str(resolve_model_path(values[name]))
    if values.get("device", "auto") == "auto":
        values["device"] = settings.ML_DEVICE
    return CleanupConfig(**values)


# --- starting, cancelling, resuming ------------------------------------------------------------------------------


@transaction.atomic
def cleanup_job_start(
    *,
    created_by: User,
    study: Study,
    cases: Sequence[Case],
    mode: str = CleanupJob.Mode.CLEAN,
    config: CleanupConfig | None = None,
    scope: str = CleanupJob.Scope.SELECTED,
) -> CleanupJob:
    """Queue cleanup (or a text check) of `cases` of `study` for a worker on the `gpu` queue; it starts once this
    transaction commits. One item per case, in the order given (repeats dropped). Refused, creating nothing, for
    an empty selection, a case of another study, or settings this machine cannot run (`config_problems`)."""
    if mode not in CleanupJob.Mode.values:
        raise CleanupRefused(f"Unknown mode {mode!r}: use 'clean' or 'check'.", errors={"mode": "Unknown mode."})
    if scope not in CleanupJob.Scope.values:
        raise CleanupRefused(f"Unknown scope {scope!r}.", errors={"scope": "Unknown scope."})
    config = config or CleanupConfig()
    unique = list({case.pk: case for case in cases}.values())
    if not unique:
        raise CleanupRefused("Choose at least one case.", errors={"cases": "Choose at least one case."})
    foreign = [case.pk for case in unique if case.study_id != study.pk]
    if foreign:
        raise CleanupRefused(f"Cases {', '.join(map(str, foreign))} are not in the study “{study.name}”.")
    problems = config_problems(config)
    if problems:
        raise CleanupRefused(" ".join(problems.values()), errors=problems)
    job = CleanupJob.objects.create(
        study=study, created_by=created_by, mode=mode, scope=scope, config=config.to_dict(), total=len(unique)
    )
    CleanupItem.objects.bulk_create(
        [CleanupItem(job=job, position=position, case=case) for position, case in enumerate(unique)]
    )
    runner.enqueue_on_commit(job)
    return job


@transaction.atomic
def cleanup_job_start_for_batch(
    *, created_by: User, batch: GenerationBatch, config: CleanupConfig | None = None
) -> CleanupJob:
    """Queue cleanup of a generation batch's images, chained after the batch: the worker waits until the batch has
    finished (done, cancelled or failed), then cleans every image it made. Refused, creating nothing, for settings
    this machine cannot run."""
    config = config or CleanupConfig()
    problems = config_problems(config)
    if problems:
        raise CleanupRefused(" ".join(problems.values()), errors=problems)
    job = CleanupJob.objects.create(
        batch=batch,
        created_by=created_by,
        mode=CleanupJob.Mode.CLEAN,
        scope=CleanupJob.Scope.BATCH,
        config=config.to_dict(),
    )
    if batch.is_finished:
        job = batch_items_ensure(job)
    runner.enqueue_on_commit(job)
    return job


def batch_items_ensure(job: CleanupJob) -> CleanupJob:
    """One item per image the (finished) batch made, created once, under the job's row lock."""
    with transaction.atomic():
        job = CleanupJob.objects.select_for_update().get(pk=job.pk)
        present = set(job.items.values_list("batch_image_id", flat=True))
        start = job.items.count()
        images = [
            image
            for image in BatchImage.objects.filter(batch_id=job.batch_id, status=BatchImage.Status.DONE).order_by(
                "index"
            )
            if image.pk not in present
        ]
        CleanupItem.objects.bulk_create(
            [CleanupItem(job=job, position=start + offset, batch_image=image) for offset, image in enumerate(images)]
        )
        job.total = start + len(images)
        job.save(update_fields=["total"])
        return job


@transaction.atomic
def cleanup_job_cancel(*, job: CleanupJob) -> CleanupJob:
    """Stop a queued or running job. Its worker finds out before recording the image it is on and throws that image
    away: once this returns, nothing more is recorded. A finished job is left as it is."""
    job = CleanupJob.objects.select_for_update().get(pk=job.pk)
    if not job.is_finished:
        job.status, job.finished_at = CleanupJob.Status.CANCELLED, timezone.now()
        job.save(update_fields=["status", "finished_at"])
    return job


def cleanup_job_resume(*, job: CleanupJob) -> CleanupJob:
    """Send an unfinished job to a worker again (after its worker was killed, say). Always safe: images already
    done are not redone, and two workers on one job share its images without overlap."""
    job.refresh_from_db()
    if job.is_finished:
        raise CleanupRefused(f"The job is already {job.get_status_display().lower()}.")
    runner.enqueue_on_commit(job)
    return job

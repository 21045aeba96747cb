"""Writes for text cleanup in the site: start, run, cancel and resume cleanup jobs; accept or reject their results.

Cleaning starts from a case's stored original at native resolution (decoded with `imaging.read.read_image`), never
from the served image, and never writes to the original. A worker records per image what was found and changed and
stores the mask and the cleaned image; nothing reaches readers until a reviewer accepts it, and then
`readerstudy.services.case_apply_cleanup` re-renders the served image with the study's serving settings. A "check
for text" job changes no image: it counts the text regions on each served image for the blinding audit.
"""

from __future__ import annotations

import io
import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from PIL import Image

from cleanup.models import CleanupItem, CleanupJob, item_file_name
from cleanup.ocr import tesseract_available
from cleanup.pipeline import CleanupConfig, build_stages, clean_image
from generation.models import BatchImage, GenerationBatch
from imaging.normalise import RESAMPLING_FILTER, fitted_size, normalise_for_serving
from imaging.png import encode_png_gray8, to_uint8
from imaging.read import read_image, sha256_hex
from readerstudy.jobs import job_finish_if_done
from readerstudy.models import Case, Study
from readerstudy.services import case_apply_cleanup, case_remove_cleanup, case_text_regions_record

logger = logging.getLogger(__name__)
User = get_user_model()

# A job whose worker stopped this many times before finishing is failed rather than handed out again: an image that
# kills its worker (out of memory) must not take workers down for ever.
MAX_RUNS = 5
# Longest side of the before/after/mask previews on the review page: enough to read a label, small to load.
PREVIEW_SIZE = 1024
# The mask overlay on the review page: a translucent red that stays visible on both black and white anatomy.
OVERLAY_RGBA = (255, 45, 85, 140)
# Detectors that run Tesseract: they cannot work where it is missing.
OCR_DETECTORS = {"xray", "ocr"}
# How often a job chained after a generation batch looks again whether the batch has finished.
BATCH_POLL_SECONDS = 10


class CleanupRefused(ValueError):
    """A request that cannot be carried out; `message` says why in the coordinator's words, `errors` by field."""

    def __init__(self, message: str, *, errors: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.errors = dict(errors or {})


# --- settings -----------------------------------------------------------------------------------------------------


def detector_needs_tesseract(detector: str) -> bool:
    return bool({part.strip() for part in detector.split("+")} & OCR_DETECTORS)


def model_roots() -> list[Path]:
    """Folders a SAM checkpoint or an inpainting model may be read from: MODEL_ROOT and MODEL_EXTRA_ROOTS."""
    roots = [Path(settings.MODEL_ROOT), *getattr(settings, "MODEL_EXTRA_ROOTS", [])]
    return [root.resolve() for root in roots]


def resolve_model_path(value: str) -> Path:
    """A model path as given (absolute, or relative to MODEL_ROOT), resolved; refused outside the model roots."""
    path = Path(value).expanduser()
    if not path.is_absolute():
        path = Path(settings.MODEL_ROOT) / path
    path = path.resolve()
    if not any(path == root or root in path.parents for root in model_roots()):
        allowed = ", ".join(str(root) for root in model_roots())
        raise CleanupRefused(f"{value} is outside the model folders ({allowed}).")
    return path


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
    from cleanup.tasks import run_cleanup_job

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
    transaction.on_commit(lambda: run_cleanup_job.delay(job_pk=job.pk))
    return job


@transaction.atomic
def cleanup_job_start_for_batch(
    *, created_by: User, batch: GenerationBatch, config: CleanupConfig | None = None
) -> CleanupJob:
    """Queue cleanup of a generation batch's images, chained after the batch: the worker waits until the batch has
    finished (done, cancelled or failed), then cleans every image it made. Refused, creating nothing, for settings
    this machine cannot run."""
    from cleanup.tasks import run_cleanup_job

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
        job = _batch_items_ensure(job)
    transaction.on_commit(lambda: run_cleanup_job.delay(job_pk=job.pk))
    return job


def _batch_items_ensure(job: CleanupJob) -> CleanupJob:
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
    from cleanup.tasks import run_cleanup_job

    job.refresh_from_db()
    if job.is_finished:
        raise CleanupRefused(f"The job is already {job.get_status_display().lower()}.")
    transaction.on_commit(lambda: run_cleanup_job.delay(job_pk=job.pk))
    return job


def cleanup_jobs_requeue_stale(*, stale_after: timedelta | None = None) -> list[int]:
    """Send running jobs whose worker went quiet (no image finished for `stale_after`, by default the selectors'
    STALLED_AFTER) to a worker again; returns their ids. Called when a worker starts and periodically (celery
    beat): with Redis, the message of a killed worker would otherwise come back only after the broker's visibility
    timeout. Safe even if the quiet worker is alive: workers share a job's images without overlap."""
    from cleanup.selectors import STALLED_AFTER
    from cleanup.tasks import run_cleanup_job

    cutoff = timezone.now() - (STALLED_AFTER if stale_after is None else stale_after)
    quiet = Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True, started_at__lt=cutoff)
    not_just_requeued = Q(requeued_at__isnull=True) | Q(requeued_at__lt=cutoff)
    requeued = []
    with transaction.atomic():
        for job in CleanupJob.objects.select_for_update(skip_locked=True).filter(
            quiet & not_just_requeued, status=CleanupJob.Status.RUNNING
        ):
            job.requeued_at = timezone.now()
            job.save(update_fields=["requeued_at"])
            transaction.on_commit(lambda pk=job.pk: run_cleanup_job.delay(job_pk=pk))
            requeued.append(job.pk)
            logger.warning("Cleanup job %s: its worker went quiet; sent to a worker again.", job.pk)
    return requeued


# --- running a job (in a worker) ----------------------------------------------------------------------------------


def cleanup_job_run(*, job_pk: int, worker: str = "") -> CleanupJob:
    """Process a job's pending images one at a time until none is left or the job is cancelled. Safe to run again
    at any time, and from several workers at once: each image is recorded exactly once, and an image that fails is
    recorded with its error while the others go on. A job chained after a generation batch that has not finished
    yet looks again in BATCH_POLL_SECONDS."""
    waiting = _waiting_for_batch(job_pk)
    if waiting is not None:
        return waiting
    job = _run_begin(job_pk, worker)
    if job is None:
        return CleanupJob.objects.get(pk=job_pk)
    try:
        config = job_config(job)
    except (CleanupRefused, TypeError, ValueError) as error:
        return _job_fail(job_pk, f"The job's settings cannot run: {_describe(error)}")
    problems = config_problems(config)
    if problems:
        where = f" on worker {worker}" if worker else ""
        return _job_fail(job_pk, f"This job cannot run{where}: " + " ".join(problems.values()))
    stages = build_stages(config)
    while _run_next_item(job, stages, config):
        pass
    return job_finish_if_done(CleanupJob, job_pk, items="items", order_by="position")


def _waiting_for_batch(job_pk: int) -> CleanupJob | None:
    """The job, if it waits for its generation batch (and a later look is scheduled); None when it can run."""
    from cleanup.tasks import run_cleanup_job

    job = CleanupJob.objects.select_related("batch").get(pk=job_pk)
    if job.batch_id is None or job.is_finished:
        return None
    if not job.batch.is_finished:
        transaction.on_commit(
            lambda: run_cleanup_job.apply_async(kwargs={"job_pk": job_pk}, countdown=BATCH_POLL_SECONDS)
        )
        return job
    _batch_items_ensure(job)
    return None


def _run_begin(job_pk: int, worker: str) -> CleanupJob | None:
    with transaction.atomic():
        job = CleanupJob.objects.select_for_update().get(pk=job_pk)
        if job.is_finished:
            return None
        now = timezone.now()
        if job.runs >= MAX_RUNS:
            job.status, job.finished_at = CleanupJob.Status.FAILED, now
            job.error = (
                f"The job was started {job.runs} times and its worker stopped each time before finishing; see the "
                "worker logs (out of memory?)."
            )
            job.save(update_fields=["status", "finished_at", "error"])
            return None
        job.status = CleanupJob.Status.RUNNING
        job.started_at = job.started_at or now
        job.heartbeat_at = now
        job.runs += 1
        job.run_log = [*job.run_log, {"worker": worker, "pid": os.getpid(), "started_at": now.isoformat()}]
        job.save(update_fields=["status", "started_at", "heartbeat_at", "runs", "run_log"])
        return job


class _Stopped(Exception):
    """The job stopped running (cancelled) while an image was being processed: that image is thrown away."""


def _run_next_item(job: CleanupJob, stages, config: CleanupConfig) -> bool:
    """Claim, process and record the next pending image in one transaction; False when none is left or the job
    stopped. The item's row stays locked while it is processed, so a second worker takes the next image instead."""
    written: list[str] = []
    try:
        with transaction.atomic():
            item = (
                CleanupItem.objects.select_for_update(skip_locked=True)
                .filter(job_id=job.pk, status=CleanupItem.Status.PENDING)
                .order_by("position")
                .first()
            )
            if item is None:
                return False
            if CleanupJob.objects.filter(pk=job.pk).values_list("status", flat=True).get() != (
                CleanupJob.Status.RUNNING
            ):
                return False
            started = time.perf_counter()
            try:
                with transaction.atomic():  # a failing image's own database writes are undone with it
                    if job.mode == CleanupJob.Mode.CHECK:
                        _check_item(item, job, stages[0])
                    else:
                        _clean_item(item, job, stages, config, written)
                item.status = CleanupItem.Status.DONE
            except Exception as error:  # one image that cannot be processed fails alone
                logger.exception("Cleanup job %s: image %s failed.", job.pk, item.position)
                _delete_files(written)
                written = []
                _mark_failed(item, _describe(error))
            item.seconds = time.perf_counter() - started
            item.finished_at = timezone.now()
            # The commit point: under the job row's lock, as cleanup_job_cancel takes it.
            status = CleanupJob.objects.select_for_update().filter(pk=job.pk).values_list("status", flat=True).get()
            if status != CleanupJob.Status.RUNNING:
                raise _Stopped
            item.save()
            CleanupJob.objects.filter(pk=job.pk).update(heartbeat_at=item.finished_at)
    except _Stopped:
        _delete_files(written)
        return False
    except BaseException:
        _delete_files(written)
        raise
    return True


def _clean_item(item: CleanupItem, job: CleanupJob, stages, config: CleanupConfig, written: list[str]) -> None:
    """Clean a case's original (or a generated image); store mask, cleaned image and previews; for a case, count
    the text left on the served image the cleaned original would become."""
    decoded = read_image(original_bytes(item))
    result = clean_image(decoded.pixels, config, stages=stages)
    item.result = result.to_dict()
    item.changed = result.changed
    item.text_regions = len(result.boxes)
    item.residual_regions = len(result.residual) if result.verified else None
    item.preview_before.name = _store(job, item, "before", preview_png(decoded.pixels), written)
    if result.changed:
        item.mask.name = _store(job, item, "mask", encode_png_gray8(result.mask), written)
        item.cleaned.name = _store(job, item, "cleaned", encode_png_gray16(result.cleaned), written)
        item.preview_after.name = _store(job, item, "after", preview_png(result.cleaned), written)
        item.preview_mask.name = _store(job, item, "mask-overlay", overlay_png(result.mask), written)
        served_pixels = result.cleaned
    else:
        item.mask.name = item.cleaned.name = item.preview_after.name = item.preview_mask.name = ""
        served_pixels = decoded.pixels
    if item.case_id is None:
        return  # a generated image has no served image until it is added to a study
    case, study = item.case, job.study
    served = normalise_for_serving(served_pixels, **study.serving_options())
    detector = stages[0]
    item.served_text_regions = len(detector.detect(served_content(served, case=case, study=study)))


def _check_item(item: CleanupItem, job: CleanupJob, detector) -> None:
    """Count the text regions on a case's served image (what readers see) and record the count on the case."""
    case = item.case
    served = _read(case.image)
    started = time.perf_counter()
    box = served_content_box(case=case, study=job.study)
    boxes = detector.detect(served_content(served, case=case, study=job.study))
    recorded = case_text_regions_record(case=case, text_regions=len(boxes), image_sha256=sha256_hex(served))
    item.text_regions = len(boxes)
    item.changed = False
    item.result = {
        "detector": detector.name,
        "detector_settings": detector.settings(),
        # Boxes in served-image pixels (the content box's offset added back).
        "boxes": [{**b.to_dict(), "x": b.x + box[0], "y": b.y + box[1]} for b in boxes],
        "served_sha256": sha256_hex(served),
        "content_box": list(box),
        "recorded_on_case": recorded,
        "timings": {"detect": time.perf_counter() - started},
    }


def served_content_box(*, case: Case, study: Study) -> tuple[int, int, int, int]:
    """(x, y, width, height) of the image inside a case's served canvas, without the black padding.

    The same geometry as `imaging.normalise.render_canvas`: crop to the centred square if asked, reduce to the
    working resolution, fit the longest side to the display size, centre. Text detection skips the padding, whose
    black bars would otherwise count as "anonymisation bars" on every non-square image, that is, by source.
    """
    size = study.display_size
    width, height = case.width, case.height
    if study.crop_to_square:
        width = height = min(width, height)
    if study.working_resolution is not None and max(width, height) > study.working_resolution:
        width, height = fitted_size(width, height, study.working_resolution)
    width, height = fitted_size(width, height, size)
    return (size - width) // 2, (size - height) // 2, width, height


def served_content(served_png: bytes, *, case: Case, study: Study) -> np.ndarray:
    x, y, width, height = served_content_box(case=case, study=study)
    pixels = read_image(served_png).pixels
    return np.ascontiguousarray(pixels[y : y + height, x : x + width])


def _job_fail(job_pk: int, message: str) -> CleanupJob:
    with transaction.atomic():
        job = CleanupJob.objects.select_for_update().get(pk=job_pk)
        if not job.is_finished:
            job.status, job.error, job.finished_at = CleanupJob.Status.FAILED, message, timezone.now()
            job.save(update_fields=["status", "error", "finished_at"])
        return job


def _mark_failed(item: CleanupItem, message: str) -> None:
    item.status, item.error = CleanupItem.Status.FAILED, message[:2000]
    item.changed = item.text_regions = item.served_text_regions = item.residual_regions = None
    item.result = {}
    for stored in (item.mask, item.cleaned, item.preview_before, item.preview_after, item.preview_mask):
        stored.name = ""


def _describe(error: BaseException) -> str:
    text = str(getattr(error, "message", "") or error).strip()
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _read(stored) -> bytes:
    with stored.open("rb") as handle:
        return handle.read()


def original_bytes(item: CleanupItem) -> bytes:
    """The file an item cleans: the case's stored original, or the generated image's PNG."""
    return _read(item.case.original if item.case_id is not None else item.batch_image.png)


def _store(job: CleanupJob, item: CleanupItem, kind: str, data: bytes, written: list[str]) -> str:
    name = item_file_name(job.pk, item.pk, kind)
    # A stopped worker may have left a file under this name; replace it rather than store a second copy.
    if default_storage.exists(name):
        default_storage.delete(name)
    saved = default_storage.save(name, ContentFile(data))
    written.append(saved)
    if saved != name:
        raise RuntimeError(f"Storage saved {name} as {saved}: another process is writing this job's files.")
    return saved


def _delete_files(names: Sequence[str]) -> None:
    for name in names:
        try:
            default_storage.delete(name)
        except OSError:
            logger.warning("Could not delete %s after a failed image.", name)


# --- image files --------------------------------------------------------------------------------------------------


def encode_png_gray16(pixels: np.ndarray) -> bytes:
    """2-D float pixels in [0, 1] -> 16-bit grayscale PNG: the cleaned image keeps the precision of 16-bit sources."""
    values = np.rint(np.clip(np.asarray(pixels, dtype=np.float64), 0.0, 1.0) * 65535.0).astype(np.uint16)
    buffer = io.BytesIO()
    Image.fromarray(values).save(buffer, format="PNG")
    return buffer.getvalue()


def preview_size(width: int, height: int) -> tuple[int, int]:
    """Preview dimensions: the longest side reduced to PREVIEW_SIZE, never enlarged."""
    if max(width, height) <= PREVIEW_SIZE:
        return width, height
    return fitted_size(width, height, PREVIEW_SIZE)


def preview_png(pixels: np.ndarray) -> bytes:
    """An 8-bit preview for the review page (same filter as the served images), aspect ratio kept, no padding."""
    height, width = pixels.shape
    target = preview_size(width, height)
    image = Image.fromarray(np.ascontiguousarray(pixels, dtype=np.float32))
    if target != (width, height):
        image = image.resize(target, resample=RESAMPLING_FILTER)
    return encode_png_gray8(to_uint8(np.asarray(image, dtype=np.float32)))


def overlay_png(mask: np.ndarray) -> bytes:
    """The removal mask as a translucent colour overlay at preview size (transparent where nothing was removed).

    Reduced with a box filter and then thresholded, so a thin stroke of the mask never disappears from the preview.
    """
    height, width = mask.shape
    target = preview_size(width, height)
    reduced = Image.fromarray(np.where(mask > 0, 255, 0).astype(np.uint8))
    if target != (width, height):
        reduced = reduced.resize(target, resample=Image.Resampling.BOX)
    covered = np.asarray(reduced) > 0
    rgba = np.zeros((*covered.shape, 4), np.uint8)
    rgba[covered] = OVERLAY_RGBA
    buffer = io.BytesIO()
    Image.fromarray(rgba, mode="RGBA").save(buffer, format="PNG")
    return buffer.getvalue()


def item_cleaned_pixels(item: CleanupItem) -> np.ndarray:
    """The cleaned image of an item at native resolution, as float32 in [0, 1].

    Outside the mask these are the original's decoded pixels exactly (the pipeline guarantees it, and rebuilding
    them from the original keeps it so through the 16-bit file); inside it, the stored 16-bit cleaned pixels.
    """
    if not item.changed:
        raise CleanupRefused("Cleanup changed nothing in this image: there are no cleaned pixels.")
    original = read_image(original_bytes(item)).pixels
    cleaned = read_image(_read(item.cleaned)).pixels
    mask = read_image(_read(item.mask)).pixels > 0
    if not original.shape == cleaned.shape == mask.shape:
        raise CleanupRefused(
            f"The stored cleaned image ({cleaned.shape[1]}x{cleaned.shape[0]}) does not match the original "
            f"({original.shape[1]}x{original.shape[0]})."
        )
    return np.where(mask, cleaned, original).astype(np.float32)


# --- review -------------------------------------------------------------------------------------------------------


def cleanup_record(item: CleanupItem, reviewer: User) -> dict[str, Any]:
    """What a case's provenance keeps of an accepted cleanup: enough to say what was done, by whom and how."""
    result = item.result
    return {
        "job": item.job_id,
        "item": item.pk,
        "changed": bool(item.changed),
        "detector": result.get("detector", ""),
        "segmenter": result.get("segmenter", "") if item.changed else "",
        "inpainter": result.get("inpainter", "") if item.changed else "",
        "config": item.job.config,
        "boxes": len(result.get("boxes", [])),
        "texts": [box["text"] for box in result.get("boxes", []) if box.get("text")],
        "residual": item.residual_regions,
        "masked_pixels": result.get("mask", {}).get("masked_pixels", 0),
        "accepted_by": reviewer.get_username(),
        "accepted_at": timezone.now().isoformat(),
    }


def _locked_item(item: CleanupItem) -> CleanupItem:
    locked = CleanupItem.objects.select_for_update().get(pk=item.pk)
    # Joined rows are fetched apart: locking the case and job rows too would make reviews wait for the worker.
    locked.job = CleanupJob.objects.select_related("study", "batch").get(pk=locked.job_id)
    if locked.case_id is not None:
        locked.case = Case.objects.get(pk=locked.case_id)
    return locked


def _check_reviewable(item: CleanupItem) -> None:
    if item.job.mode != CleanupJob.Mode.CLEAN:
        raise CleanupRefused("A text check changes nothing, so there is nothing to accept or reject.")
    if item.status == CleanupItem.Status.PENDING:
        raise CleanupRefused("This image has not been processed yet.")
    if item.status == CleanupItem.Status.FAILED:
        raise CleanupRefused(f"This image failed ({item.error}); there is nothing to accept.")


@transaction.atomic
def cleanup_item_accept(*, item: CleanupItem, reviewer: User) -> CleanupItem:
    """Accept an image's cleanup: the case's served image becomes the cleaned original rendered with the study's
    serving settings (unchanged images keep theirs), and its provenance records the cleanup. Refused, changing
    nothing, when the image would change under readers (the case has readings)."""
    item = _locked_item(item)
    _check_reviewable(item)
    if item.case_id is None:
        # A generated image: `batch_image_for_study` uses the decision when the image is added to a study.
        return _set_review(item, CleanupItem.Review.ACCEPTED, reviewer)
    try:
        case_apply_cleanup(
            case=item.case,
            cleaned_pixels=item_cleaned_pixels(item) if item.changed else None,
            record=cleanup_record(item, reviewer),
            text_regions=item.served_text_regions,
        )
    except ValidationError as error:
        raise CleanupRefused(" ".join(error.messages)) from error
    return _set_review(item, CleanupItem.Review.ACCEPTED, reviewer)


@transaction.atomic
def cleanup_item_reject(*, item: CleanupItem, reviewer: User) -> CleanupItem:
    """Reject an image's cleanup: it never reaches readers. If it was accepted before, the case goes back to its
    original's rendering (refused, changing nothing, once the case has readings)."""
    item = _locked_item(item)
    _check_reviewable(item)
    if item.case_id is not None and item.case.provenance.get("cleanup", {}).get("item") == item.pk:
        try:
            case_remove_cleanup(case=item.case)
        except ValidationError as error:
            raise CleanupRefused(" ".join(error.messages)) from error
    return _set_review(item, CleanupItem.Review.REJECTED, reviewer)


def _set_review(item: CleanupItem, review: str, reviewer: User) -> CleanupItem:
    item.review, item.reviewed_by, item.reviewed_at = review, reviewer, timezone.now()
    item.save(update_fields=["review", "reviewed_by", "reviewed_at"])
    return item


@dataclass(frozen=True)
class BulkReview:
    """What "accept all unchanged" did: how many images it accepted, and each refusal with its reason."""

    accepted: int
    refused: tuple[tuple[int, str], ...] = ()


def cleanup_job_accept_unchanged(*, job: CleanupJob, reviewer: User) -> BulkReview:
    """Accept every image of a job in which cleanup found nothing to change and that is not reviewed yet. Their
    served images stay as they are; their provenance records that they went through cleanup, which is what the
    treated-alike check of the blinding audit compares between the classes."""
    accepted, refused = 0, []
    pending = job.items.filter(
        status=CleanupItem.Status.DONE, changed=False, review=CleanupItem.Review.PENDING
    ).order_by("position")
    for item in pending:
        try:
            cleanup_item_accept(item=item, reviewer=reviewer)
        except CleanupRefused as refusal:
            refused.append((item.position, refusal.message))
        else:
            accepted += 1
    return BulkReview(accepted=accepted, refused=tuple(refused))


# --- generated images on their way into a study -------------------------------------------------------------------


@dataclass(frozen=True)
class StudyImage:
    """What `generation.services.batch_add_to_study` imports for one generated image: `data` (the PNG) with
    `provenance`, or nothing, for the `refusal` given."""

    data: bytes = b""
    provenance: dict[str, Any] | None = None
    refusal: str = ""


def batch_image_for_study(*, image: BatchImage, data: bytes) -> StudyImage:
    """The file a generated image enters a study as, given its latest text cleanup (`data` is its PNG).

    No cleanup: the image as generated. Accepted: the cleaned image, 8-bit like every generated PNG (so the
    original's format tells nothing; outside the mask the pixels are the generated ones exactly), with the cleanup
    in `provenance["cleanup"]`. Rejected, not reviewed yet, or failed: refused with the reason, so that an image
    whose cleanup was asked for never enters a study uncleaned.
    """
    provenance = dict(image.provenance)
    item = (
        CleanupItem.objects.filter(batch_image=image, job__mode=CleanupJob.Mode.CLEAN)
        .select_related("job", "reviewed_by")
        .order_by("-job__created_at", "-pk")
        .first()
    )
    if item is None:
        return StudyImage(data=data, provenance=provenance)
    job = f"cleanup job #{item.job_id}"
    if item.status == CleanupItem.Status.FAILED:
        return StudyImage(refusal=f"Its text cleanup failed ({job}: {item.error}); clean the batch again.")
    if item.status == CleanupItem.Status.PENDING or item.review == CleanupItem.Review.PENDING:
        return StudyImage(refusal=f"Its text cleanup is not reviewed yet ({job}).")
    if item.review == CleanupItem.Review.REJECTED:
        return StudyImage(refusal=f"Its text cleanup was rejected in review ({job}).")
    record = cleanup_record(item, item.reviewed_by)
    record["accepted_at"] = item.reviewed_at.isoformat()
    if item.changed:
        data = encode_png_gray8(to_uint8(item_cleaned_pixels(item)))
    return StudyImage(data=data, provenance={**provenance, "cleanup": record})

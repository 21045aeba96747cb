"""The worker side of text cleanup: clean (or check) a job's pending images one at a time.

Cleaning starts from a case's stored original at native resolution (decoded with `imaging.read.read_image`), never
from the served image, and never writes to the original. A worker records per image what was found and changed and
stores the mask and the cleaned image; nothing reaches readers until a reviewer accepts it, and then
`readerstudy.services.case_apply_cleanup` re-renders the served image with the study's serving settings. A "check
for text" job changes no image: it counts the text regions on each served image for the blinding audit.

Images are claimed with `SKIP LOCKED`, so several workers share one job without overlap; a run that takes over
from a dead worker does only what is still pending.
"""

from __future__ import annotations

import logging
import time

import numpy as np
from django.db import transaction
from django.utils import timezone

from cleanup.item_files import original_bytes, read_stored, store_item_file
from cleanup.models import CleanupItem, CleanupJob
from cleanup.pipeline import CleanupConfig, build_stages, clean_image
from cleanup.services import CleanupRefused, batch_items_ensure, config_problems, job_config
from imaging.normalise import normalise_for_serving, served_content_geometry
from imaging.png import encode_png_gray8
from imaging.previews import encode_png_gray16, overlay_png, preview_png
from imaging.read import read_image, sha256_hex
from jobs import runner
from jobs.runner import describe
from readerstudy.files import delete_stored
from readerstudy.models import Case, Study
from readerstudy.services import case_text_regions_record

logger = logging.getLogger(__name__)

# How often a job chained after a generation batch looks again whether the batch has finished.
BATCH_POLL_SECONDS = 10


# --- running a job (in a worker) ----------------------------------------------------------------------------------


def cleanup_job_run(*, job_pk: int, worker: str = "") -> CleanupJob:
    """Process a job's pending images one at a time until none is left or the job is cancelled. Safe to run again
    at any time, and from several workers at once: each image is recorded exactly once, and an image that fails is
    recorded with its error while the others go on. A job chained after a generation batch that has not finished
    yet looks again in BATCH_POLL_SECONDS."""
    waiting = _waiting_for_batch(job_pk)
    if waiting is not None:
        return waiting
    job = runner.run_begin(CleanupJob, job_pk, worker=worker, shared=True)
    if job is None:
        return CleanupJob.objects.get(pk=job_pk)
    try:
        config = job_config(job)
    except (CleanupRefused, TypeError, ValueError) as error:
        return runner.job_fail(CleanupJob, job_pk, f"The job's settings cannot run: {describe(error)}")
    problems = config_problems(config)
    if problems:
        where = f" on worker {worker}" if worker else ""
        return runner.job_fail(CleanupJob, job_pk, f"This job cannot run{where}: " + " ".join(problems.values()))
    stages = build_stages(config)
    with runner.Heartbeat(job):
        while _run_next_item(job, stages, config):
            pass
    return runner.job_finish_if_done(CleanupJob, job_pk)


def _waiting_for_batch(job_pk: int) -> CleanupJob | None:
    """The job, if it waits for its generation batch (and a later look is scheduled); None when it can run."""
    job = CleanupJob.objects.select_related("batch").get(pk=job_pk)
    if job.batch_id is None or job.is_finished:
        return None
    if not job.batch.is_finished:
        transaction.on_commit(lambda: runner.send_to_worker(CleanupJob, job_pk, countdown=BATCH_POLL_SECONDS))
        return job
    batch_items_ensure(job)
    return None


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
                delete_stored(written)
                written = []
                _mark_failed(item, describe(error))
            item.seconds = time.perf_counter() - started
            item.finished_at = timezone.now()
            # The commit point: under the job row's lock, as cleanup_job_cancel takes it.
            status = CleanupJob.objects.select_for_update().filter(pk=job.pk).values_list("status", flat=True).get()
            if status != CleanupJob.Status.RUNNING:
                raise _Stopped
            item.save()
    except _Stopped:
        delete_stored(written)
        return False
    except BaseException:
        delete_stored(written)
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
    item.preview_before.name = store_item_file(job, item, "before", preview_png(decoded.pixels), written)
    if result.changed:
        item.mask.name = store_item_file(job, item, "mask", encode_png_gray8(result.mask), written)
        item.cleaned.name = store_item_file(job, item, "cleaned", encode_png_gray16(result.cleaned), written)
        item.preview_after.name = store_item_file(job, item, "after", preview_png(result.cleaned), written)
        item.preview_mask.name = store_item_file(job, item, "mask-overlay", overlay_png(result.mask), written)
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
    served = read_stored(case.image)
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
    """(x, y, width, height) of the image inside a case's served canvas, without the black padding (the geometry
    of `imaging.normalise.render_canvas`). Text detection skips the padding, whose black bars would otherwise count
    as "anonymisation bars" on every non-square image, that is, by source."""
    return served_content_geometry(
        case.width,
        case.height,
        size=study.display_size,
        crop_square=study.crop_to_square,
        working_resolution=study.working_resolution,
    )


def served_content(served_png: bytes, *, case: Case, study: Study) -> np.ndarray:
    x, y, width, height = served_content_box(case=case, study=study)
    pixels = read_image(served_png).pixels
    return np.ascontiguousarray(pixels[y : y + height, x : x + width])


def _mark_failed(item: CleanupItem, message: str) -> None:
    item.status, item.error = CleanupItem.Status.FAILED, message[:2000]
    item.changed = item.text_regions = item.served_text_regions = item.residual_regions = None
    item.result = {}
    for stored in (item.mask, item.cleaned, item.preview_before, item.preview_after, item.preview_mask):
        stored.name = ""

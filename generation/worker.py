"""The worker side of generation batches: load the model once per process and make a batch's pending images.

A batch is run image row by image row: a worker locks the next pending rows (`SKIP LOCKED`), generates them,
writes their files and marks them done in one transaction per chunk. A worker that dies mid-chunk leaves its rows
pending (PostgreSQL rolls the transaction back when the connection drops) and a later run redoes exactly those,
under the same seeds and file names; even a worker wrongly presumed dead cannot make an image twice, as the row
stays locked until its chunk commits. One live worker runs a batch at a time (its heartbeat says it is alive);
several batches run side by side on several workers. Cancelling changes the batch's status under the same row
lock a chunk takes before it commits, so no image is added once a cancel has been answered.
"""

from __future__ import annotations

import logging
import os

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from generation.models import BatchImage, GenerationBatch, image_file_name
from generation.pipeline import (
    GeneratedImage,
    GenerationSettings,
    ImageGenerator,
)
from generation.roots import resolve_in_roots
from imaging.dicom_write import write_secondary_capture
from imaging.png import encode_png_gray8, to_uint8
from imaging.read import sha256_hex
from jobs import runner
from jobs.runner import describe
from readerstudy.files import delete_stored, store_replacing

# --- running a batch (in a worker) ------------------------------------------------------------------------------

logger = logging.getLogger(__name__)


def configure_ml_runtime() -> None:
    """Process-wide settings for ML work: ML_CPU_THREADS torch threads, and no progress bars from model loading
    (they fill worker logs). Cheap to call again."""
    import torch

    threads = settings.ML_CPU_THREADS
    if threads and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    from transformers.utils import logging as transformers_logging

    # Before diffusers imports transformers' image processors, which warn that torchvision (deliberately not
    # installed) is missing.
    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.disable_progress_bar()


def batch_run(*, batch_pk: int, worker: str = "") -> GenerationBatch:
    """Generate a batch's pending images, chunk by chunk, until none is left, the batch is cancelled, or the model
    cannot be loaded (the batch fails with the reason). Safe to call again at any time: a call finding the batch
    finished, or run by a worker with a fresh heartbeat, does nothing; one taking over from a quiet worker makes
    only the images still pending."""
    batch = runner.run_begin(GenerationBatch, batch_pk, worker=worker)
    if batch is None:
        return GenerationBatch.objects.get(pk=batch_pk)
    with runner.Heartbeat(batch):
        try:
            generator = batch_generator(batch)
        except Exception as error:  # a model that cannot load fails the batch with the reason, not the worker
            logger.exception("Generation batch %s: the model could not be loaded.", batch_pk)
            return runner.job_fail(GenerationBatch, batch_pk, f"The model could not be loaded: {describe(error)}")
        _log_model(batch_pk, generator)
        settings_ = batch_settings(batch)
        chunk_size = generator.batch_size_for(settings_)
        while _run_chunk(batch, generator, settings_, chunk_size):
            pass
    return runner.job_finish_if_done(GenerationBatch, batch_pk)


def batch_settings(batch: GenerationBatch) -> GenerationSettings:
    return GenerationSettings(
        steps=batch.steps,
        guidance_scale=batch.guidance_scale,
        width=batch.width,
        height=batch.height,
        negative_prompt=batch.negative_prompt,
        scheduler=batch.scheduler,
        batch_size=batch.batch_size,
    )


def batch_generator(batch: GenerationBatch) -> ImageGenerator:
    """The loaded pipeline for a batch's model and adapter, from the per-process cache after the first batch."""
    from generation.pipeline import load_generator

    base_model_dir = resolve_in_roots(batch.base_model_dir)
    adapter_dir = resolve_in_roots(batch.adapter_dir) if batch.adapter_dir else None
    configure_ml_runtime()
    # The same arguments every time, so the per-process pipeline cache returns the loaded model: a worker loads
    # a model once, not once per batch. The scheduler is switched per call through the settings instead.
    return load_generator(base_model_dir, adapter_dir, device=settings.ML_DEVICE)


def _log_model(batch_pk: int, generator: ImageGenerator) -> None:
    """Add the model's load time and identity to this run's log entry: the same identity in two runs of one
    worker process shows the model was loaded once."""
    with transaction.atomic():
        batch = GenerationBatch.objects.select_for_update().get(pk=batch_pk)
        pid = os.getpid()
        for entry in reversed(batch.run_log):
            if entry.get("pid") == pid and "generator" not in entry:
                entry.update(model_load_seconds=round(generator.load_seconds, 3), generator=id(generator))
                break
        batch.save(update_fields=["run_log"])


class _Stopped(Exception):
    """The batch stopped running (cancelled) while a chunk was being generated: the chunk is thrown away."""


def _run_chunk(batch: GenerationBatch, generator, settings_: GenerationSettings, chunk_size: int) -> bool:
    """Claim, generate, write and finish up to `chunk_size` pending images in one transaction; False when there
    is nothing left to claim or the batch stopped."""
    written: list[str] = []
    try:
        with transaction.atomic():
            rows = list(
                BatchImage.objects.select_for_update(skip_locked=True)
                .filter(batch_id=batch.pk, status=BatchImage.Status.PENDING)
                .order_by("index")[:chunk_size]
            )
            if not rows:
                return False
            if GenerationBatch.objects.filter(pk=batch.pk).values_list("status", flat=True).get() != (
                GenerationBatch.Status.RUNNING
            ):
                return False
            results = _generate(generator, rows, settings_)
            for row, result in zip(rows, results, strict=True):
                if isinstance(result, str):
                    _mark_failed(row, result)
                    continue
                try:
                    written += _write_outputs(batch, row, result)
                except Exception as error:  # one image whose files cannot be written fails alone
                    logger.exception("Generation batch %s: writing image %s failed.", batch.pk, row.index)
                    delete_stored([row.png.name, row.dicom.name])
                    _mark_failed(row, f"Writing the image failed: {describe(error)}")
            # The commit point: under the batch row's lock, as batch_cancel takes it.
            status = (
                GenerationBatch.objects.select_for_update().filter(pk=batch.pk).values_list("status", flat=True).get()
            )
            if status != GenerationBatch.Status.RUNNING:
                raise _Stopped
            BatchImage.objects.bulk_update(
                rows, ["status", "png", "png_sha256", "dicom", "seconds", "provenance", "error", "finished_at"]
            )
    except _Stopped:
        delete_stored(written)
        return False
    except BaseException:
        delete_stored(written)
        raise
    return True


def _generate(generator, rows: list[BatchImage], settings_: GenerationSettings) -> list[GeneratedImage | str]:
    """The chunk's images, or for each image that cannot be made, why: a chunk that fails is retried image by
    image so that one bad image does not take the others with it."""
    try:
        return generator.generate([row.prompt for row in rows], [row.seed for row in rows], settings_)
    except Exception as error:
        if len(rows) == 1:
            logger.exception("Generation of image %s failed.", rows[0].index)
            return [f"Generation failed: {describe(error)}"]
        logger.warning("A chunk of %d images failed (%s); retrying them one by one.", len(rows), error)
    results: list[GeneratedImage | str] = []
    for row in rows:
        try:
            results += generator.generate([row.prompt], [row.seed], settings_)
        except Exception as error:
            logger.exception("Generation of image %s failed.", row.index)
            results.append(f"Generation failed: {describe(error)}")
    return results


def _write_outputs(batch: GenerationBatch, row: BatchImage, image: GeneratedImage) -> list[str]:
    """Store the PNG (8-bit grayscale, no metadata: what real images are served as) and, if asked, the DICOM
    Secondary Capture; fill in the row. Returns the storage names written."""
    written = []
    png = encode_png_gray8(to_uint8(image.pixels))
    row.png.name = store_replacing(image_file_name(batch.pk, row.index, "png"), png)
    written.append(row.png.name)
    row.png_sha256 = sha256_hex(png)
    if batch.write_dicom:
        dicom = synthetic_dicom(batch, row, image)
        row.dicom.name = store_replacing(image_file_name(batch.pk, row.index, "dcm"), dicom)
        written.append(row.dicom.name)
    row.provenance = image.provenance | {
        "batch": {"id": batch.pk, "index": row.index, "name": batch.name},
        "seed_from": "base seed + index" if batch.base_seed is not None else "given",
        "png_sha256": row.png_sha256,
    }
    row.seconds = image.seconds
    row.status, row.error, row.finished_at = BatchImage.Status.DONE, "", timezone.now()
    return written


def synthetic_dicom(batch: GenerationBatch, row: BatchImage, image: GeneratedImage) -> bytes:
    """The image as a DICOM Secondary Capture that says it is synthetic and names model, adapter and seed."""
    provenance = image.provenance
    base_sha = (provenance.get("base_model") or {}).get("sha256", "")
    adapter_sha = (provenance.get("adapter") or {}).get("sha256", "")
    derivation = (
        f"Synthetic image generated by {batch.generator_label} (base model sha256 {base_sha[:16]}"
        + (f", adapter sha256 {adapter_sha[:16]}" if adapter_sha else "")
        + f"), seed {row.seed}, {batch.steps} steps, guidance {batch.guidance_scale:g}, "
        f"{provenance.get('scheduler', {}).get('class', batch.scheduler)}."
    )

    def short(text: str) -> str:  # DICOM LO: 64 characters, no backslash
        return text.replace("\\", "/")[:64]

    return write_secondary_capture(
        image.pixels,
        description="Synthetic chest X-ray",
        derivation_description=derivation[:1024],
        manufacturer_model=short(batch.generator_label),
        series_description=short(batch.name),
        image_comments=f"Prompt: {row.prompt}"[:9000],
        study_instance_uid=batch.dicom_study_uid or None,
        series_instance_uid=batch.dicom_series_uid or None,
        instance_number=row.index + 1,
    )


def _mark_failed(row: BatchImage, message: str) -> None:
    row.status, row.error, row.finished_at = BatchImage.Status.FAILED, message[:2000], timezone.now()
    row.png.name, row.png_sha256, row.dicom.name, row.provenance, row.seconds = "", "", "", {}, None

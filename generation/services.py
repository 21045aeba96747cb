"""Writes for generation batches: check and start a batch, run it in a worker, cancel it, send a stalled one to a
worker again, add its images to a study, and build the demo model.

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
import re
import secrets
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import DatabaseError, connections, transaction
from django.db.models import Q
from django.utils import timezone

from generation.lora import AdapterError, AdapterInfo, check_adapter_dir
from generation.models import BatchImage, BatchImageCase, GenerationBatch, image_file_name
from generation.pipeline import (
    MAX_SEED,
    GeneratedImage,
    GenerationSettings,
    ImageGenerator,
    check_model_dir,
    normalize_scheduler_name,
)
from generation.prompts import MAX_PROMPTS, FieldValues, PromptError, expand_template, parse_counts, repeat_prompts
from imaging.dicom_write import write_secondary_capture
from imaging.png import encode_png_gray8, to_uint8
from imaging.read import sha256_hex
from readerstudy.jobs import job_finish_if_done
from readerstudy.models import Case, Study
from readerstudy.services import IncomingFile, cases_import, sessions_extend

logger = logging.getLogger(__name__)
User = get_user_model()

NOT_SENT = "Not sent to a worker yet: the task queue could not be reached"
# A batch started this many times without finishing (its workers kept dying) is failed rather than retried forever.
MAX_RUNS = 5
DEMO_MODEL_NAME = "demo-tiny-sd"
DEMO_ADAPTER_NAME = "demo-tiny-lora"
DEMO_MARKER = "DEMO_MODEL.txt"
DEMO_MARKER_TEXT = (
    "Demo model: a tiny Stable Diffusion 2.1-base look-alike with random weights, built offline by "
    "`manage.py demo`. It exercises the whole generation pipeline in seconds on a CPU but draws noise-like "
    "textures, not chest X-rays.\n"
)


# --- where model folders may be ---------------------------------------------------------------------------------


class PathRefused(ValueError):
    """A model or adapter path that is not inside an allowed model root."""


def model_roots() -> list[Path]:
    """Folders model and adapter folders may be chosen from: MODEL_ROOT and MODEL_EXTRA_ROOTS, resolved."""
    roots = [Path(settings.MODEL_ROOT), *getattr(settings, "MODEL_EXTRA_ROOTS", [])]
    return list(dict.fromkeys(Path(root).expanduser().resolve() for root in roots))


def resolve_in_roots(path: str | Path) -> Path:
    """An absolute path, or one relative to MODEL_ROOT, resolved (links followed) and refused with PathRefused
    unless it lies inside a model root: a form must never make the server read an arbitrary folder."""
    text = str(path).strip()
    if not text:
        raise PathRefused("Give a folder.")
    candidate = Path(text).expanduser()
    if not candidate.is_absolute():
        candidate = Path(settings.MODEL_ROOT) / candidate
    resolved = candidate.resolve()
    roots = model_roots()
    if not any(resolved == root or root in resolved.parents for root in roots):
        allowed = ", ".join(str(root) for root in roots)
        raise PathRefused(f"{resolved} is not inside a model folder root ({allowed}).")
    return resolved


def is_demo_model(path: Path) -> bool:
    return (Path(path) / DEMO_MARKER).is_file()


# --- prompts from a template with field values ------------------------------------------------------------------

_FIELD_LINE = re.compile(r"^\s*(?P<name>[A-Za-z_]\w*)\s*[=:]\s*(?P<value>.*?)\s*$")
_COUNTS_START = re.compile(r"^\s*\d+\s*[x×*]\s", re.IGNORECASE)


def parse_template_fields(text: str | Mapping[str, str]) -> dict[str, FieldValues]:
    """Field values for `expand_template`, one field per line as `name = value`: a value starting with a count
    ("100 x No findings, 100 x small right pleural effusion") gives prompts with counts, values separated by
    " | " ("PA | AP") give every alternative once, anything else is one literal value."""
    if isinstance(text, Mapping):
        lines = [f"{name} = {value}" for name, value in text.items()]
    else:
        lines = [line for line in text.splitlines() if line.strip()]
    fields: dict[str, FieldValues] = {}
    for number, line in enumerate(lines, start=1):
        found = _FIELD_LINE.match(line)
        if found is None:
            raise PromptError(f"Line {number} ({line.strip()!r}) is not of the form 'name = value'.")
        name, value = found["name"], found["value"]
        if name in fields:
            raise PromptError(f"Field {name} is given twice.")
        if not value:
            raise PromptError(f"Field {name} has no value.")
        if _COUNTS_START.match(value):
            fields[name] = parse_counts(value)
        elif " | " in value:
            fields[name] = [part.strip() for part in value.split(" | ") if part.strip()]
        else:
            fields[name] = value
    return fields


def prompts_from_template(template: str, fields: str | Mapping[str, str], *, interleave: bool = True) -> list[str]:
    """Every prompt of a caption template filled from `parse_template_fields(fields)`, each as often as its counts
    say; interleaved by default, so that the part of a batch done before a stop holds the prompts in proportion."""
    if not template.strip():
        raise PromptError("The template is empty.")
    return repeat_prompts(expand_template(template, parse_template_fields(fields)), interleave=interleave)


# --- checking a request -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchRequest:
    """What a form or API call asks for, before any check. Paths are absolute or relative to MODEL_ROOT; `seeds`
    gives every image its seed, otherwise image i gets `base_seed + i` (a random base seed when None)."""

    base_model: str
    prompts: tuple[str, ...]
    adapter: str = ""
    settings: GenerationSettings = field(default_factory=GenerationSettings)
    seeds: tuple[int, ...] | None = None
    base_seed: int | None = None
    write_dicom: bool = False
    name: str = ""


@dataclass(frozen=True)
class CheckedBatch:
    """A request that passed every check, with its folders resolved and a seed for every image."""

    request: BatchRequest
    base_model_dir: Path
    adapter_dir: Path | None
    generator_label: str
    is_demo_model: bool
    seeds: tuple[int, ...]
    base_seed: int | None
    scheduler: str
    name: str


class BatchInvalid(ValueError):
    """A batch request with problems, as sentences per field ("__all__" for the request as a whole)."""

    def __init__(self, errors: Mapping[str, Sequence[str]]) -> None:
        self.errors = {name: list(messages) for name, messages in errors.items()}
        super().__init__(" ".join(message for messages in self.errors.values() for message in messages))


# The first words of each GenerationSettings problem, and the field it is about.
_SETTINGS_PROBLEM_FIELDS = (
    ("Steps", "steps"),
    ("Guidance", "guidance_scale"),
    ("Width", "width"),
    ("Height", "height"),
    ("Negative prompt", "negative_prompt"),
    ("Unknown scheduler", "scheduler"),
    ("Batch size", "batch_size"),
)


def settings_problem_field(problem: str) -> str:
    return next((name for prefix, name in _SETTINGS_PROBLEM_FIELDS if problem.startswith(prefix)), "__all__")


def generator_label(base_model_dir: Path, adapter: AdapterInfo | None) -> str:
    """ "sd21-base + cxr-lora (1a2b3c4d)": the folder names and the adapter's content hash, so that retraining an
    adapter in the same folder gives a new generator in the statistics."""
    label = base_model_dir.name
    if adapter is not None:
        name = adapter.path.name if adapter.path.is_dir() else adapter.path.stem
        label = f"{label} + {name} ({adapter.sha256[:8]})"
    return label[:120]


def batch_check(request: BatchRequest) -> CheckedBatch:
    """Check everything a worker would otherwise stumble on, from the files alone (no weights are loaded): model
    and adapter folders inside the model roots and loadable, the adapter fitting the model, the settings, the
    prompts and seeds. Raises BatchInvalid listing every problem by field."""
    errors: dict[str, list[str]] = {}

    def problem(name: str, message: str) -> None:
        errors.setdefault(name, []).append(message)

    base_model_dir = adapter_dir = adapter = None
    try:
        base_model_dir = resolve_in_roots(request.base_model)
    except PathRefused as error:
        problem("base_model", str(error))
    else:
        for message in check_model_dir(base_model_dir):
            problem("base_model", message)
        if "base_model" in errors:
            base_model_dir = None
    if request.adapter.strip():
        try:
            adapter_dir = resolve_in_roots(request.adapter)
            adapter = check_adapter_dir(adapter_dir)
        except (PathRefused, AdapterError) as error:
            problem("adapter", str(error))
        else:
            if base_model_dir is not None:
                message = _adapter_fit_problem(adapter, base_model_dir)
                if message:
                    problem("adapter", message)

    for message in request.settings.problems():
        problem(settings_problem_field(message), message)

    prompts = request.prompts
    if not prompts:
        problem("prompts", "No prompts given.")
    elif len(prompts) > MAX_PROMPTS:
        problem("prompts", f"{len(prompts)} prompts; a batch can have at most {MAX_PROMPTS}.")
    empty = [index + 1 for index, prompt in enumerate(prompts) if not str(prompt).strip()]
    if empty:
        problem("prompts", f"Prompt {empty[0]} is empty." if len(empty) == 1 else f"{len(empty)} prompts are empty.")

    base_seed = request.base_seed
    if request.seeds is not None:
        if len(request.seeds) != len(prompts):
            problem("seeds", f"{len(request.seeds)} seeds for {len(prompts)} prompts: give one seed per prompt.")
        bad = [seed for seed in request.seeds if isinstance(seed, bool) or not isinstance(seed, int)]
        bad += [seed for seed in request.seeds if isinstance(seed, int) and not 0 <= seed <= MAX_SEED]
        if bad:
            problem("seeds", f"Seed {bad[0]!r} is not a whole number from 0 to {MAX_SEED}.")
        seeds = tuple(request.seeds)
        base_seed = None
    else:
        if base_seed is None:
            # 32 bits: short enough to read and type, and far more seeds than a batch needs.
            base_seed = secrets.randbits(32)
        highest = MAX_SEED - max(len(prompts) - 1, 0)
        if isinstance(base_seed, bool) or not isinstance(base_seed, int) or not 0 <= base_seed <= highest:
            problem("base_seed", f"The base seed must be a whole number from 0 to {highest} (got {base_seed!r}).")
            seeds = ()
        else:
            seeds = tuple(base_seed + index for index in range(len(prompts)))

    if errors:
        raise BatchInvalid(errors)
    assert base_model_dir is not None
    label = generator_label(base_model_dir, adapter)
    name = request.name.strip() or f"{len(prompts)} images from {label}"
    return CheckedBatch(
        request=request,
        base_model_dir=base_model_dir,
        adapter_dir=adapter_dir,
        generator_label=label,
        is_demo_model=is_demo_model(base_model_dir),
        seeds=seeds,
        base_seed=base_seed,
        scheduler=normalize_scheduler_name(request.settings.scheduler),
        name=name[:200],
    )


def _ml_available() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(name) is not None for name in ("torch", "diffusers", "transformers"))


def _adapter_fit_problem(adapter: AdapterInfo, base_model_dir: Path) -> str:
    """Why the adapter does not fit the model's layers, or "" (also when the web process has no torch to check
    with: the worker then checks before loading, and a misfit fails the batch with the same message)."""
    if not _ml_available():
        return ""
    unet_config = base_model_dir / "unet" / "config.json"
    text_config = base_model_dir / "text_encoder" / "config.json"
    key = (
        str(adapter.weights_file),
        adapter.sha256,
        str(base_model_dir),
        unet_config.stat().st_mtime_ns,
        text_config.stat().st_mtime_ns,
    )
    with _fit_cache_lock:
        if key in _fit_cache:
            return _fit_cache[key]
    from generation.lora import check_adapter_fits

    try:
        check_adapter_fits(adapter, base_model_dir)
        message = ""
    except AdapterError as error:
        message = str(error)
    with _fit_cache_lock:
        _fit_cache[key] = message
    return message


_fit_cache: dict[tuple, str] = {}
_fit_cache_lock = threading.Lock()


# --- starting and cancelling ------------------------------------------------------------------------------------


def batch_start(*, created_by: User, request: BatchRequest) -> GenerationBatch:
    """Check the request (BatchInvalid if anything is wrong; nothing is created then), create the batch with one
    pending row per image, and queue it for a GPU worker once the transaction commits."""
    checked = batch_check(request)
    settings_ = request.settings
    with transaction.atomic():
        batch = GenerationBatch.objects.create(
            name=checked.name,
            created_by=created_by,
            base_model_dir=str(checked.base_model_dir),
            adapter_dir=str(checked.adapter_dir or ""),
            generator_label=checked.generator_label,
            is_demo_model=checked.is_demo_model,
            steps=settings_.steps,
            guidance_scale=settings_.guidance_scale,
            width=settings_.width,
            height=settings_.height,
            negative_prompt=settings_.negative_prompt,
            scheduler=checked.scheduler,
            batch_size=settings_.batch_size,
            base_seed=checked.base_seed,
            write_dicom=request.write_dicom,
            dicom_study_uid=_new_uid() if request.write_dicom else "",
            dicom_series_uid=_new_uid() if request.write_dicom else "",
            total=len(request.prompts),
        )
        BatchImage.objects.bulk_create(
            [
                BatchImage(batch=batch, index=index, prompt=prompt.strip(), seed=seed)
                for index, (prompt, seed) in enumerate(zip(request.prompts, checked.seeds, strict=True))
            ],
            batch_size=2000,
        )
        transaction.on_commit(lambda: _send_to_worker(batch.pk))
    return batch


def _send_to_worker(batch_pk: int) -> bool:
    """Queue the batch's task. When the broker cannot be reached the batch stays queued with the reason, and
    `batches_requeue_stale` sends it once a worker starts, instead of the request failing after the batch exists."""
    from generation.tasks import run_batch

    try:
        run_batch.delay(batch_pk=batch_pk)
    except Exception as error:
        logger.exception("Generation batch %s could not be sent to the task queue.", batch_pk)
        GenerationBatch.objects.filter(pk=batch_pk, status=GenerationBatch.Status.QUEUED).update(
            error=f"{NOT_SENT} ({_describe(error)}). It is sent when a worker starts."
        )
        return False
    return True


def _new_uid() -> str:
    from pydicom.uid import generate_uid

    return str(generate_uid())


@transaction.atomic
def batch_cancel(*, batch: GenerationBatch) -> GenerationBatch:
    """Stop a queued or running batch now. Its worker finds out at the end of the chunk it is on and throws that
    chunk away: once this returns, no image of the batch is added. A finished batch is left as it is."""
    batch = GenerationBatch.objects.select_for_update().get(pk=batch.pk)
    if batch.status in (GenerationBatch.Status.QUEUED, GenerationBatch.Status.RUNNING):
        batch.status = GenerationBatch.Status.CANCELLED
        batch.finished_at = timezone.now()
        batch.save(update_fields=["status", "finished_at"])
    return batch


def batches_requeue_stale(*, stale_after: float | None = None) -> list[int]:
    """Send running batches whose worker went quiet (no heartbeat for `stale_after` seconds, by default
    GENERATION_STALE_AFTER_SECONDS) to a worker again; returns their ids. Called when a worker starts and
    periodically (celery beat). With Redis, the message of a killed worker would otherwise come back only after
    the broker's visibility timeout (an hour). Queued batches whose task could not be sent are sent now."""
    stale_after = settings.GENERATION_STALE_AFTER_SECONDS if stale_after is None else stale_after
    cutoff = timezone.now() - timedelta(seconds=stale_after)
    quiet = Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True, started_at__lt=cutoff)
    not_just_requeued = Q(requeued_at__isnull=True) | Q(requeued_at__lt=cutoff)
    requeued = []
    for pk in GenerationBatch.objects.filter(
        quiet & not_just_requeued, status=GenerationBatch.Status.RUNNING
    ).values_list("pk", flat=True):
        with transaction.atomic():
            batch = (
                GenerationBatch.objects.select_for_update(skip_locked=True)
                .filter(quiet & not_just_requeued, pk=pk, status=GenerationBatch.Status.RUNNING)
                .first()
            )
            if batch is None:
                continue
            batch.requeued_at = timezone.now()
            batch.save(update_fields=["requeued_at"])
            transaction.on_commit(lambda pk=pk: _send_to_worker(pk))
            requeued.append(pk)
            logger.warning("Generation batch %s: its worker went quiet; sent to a worker again.", pk)
    unsent = GenerationBatch.objects.filter(status=GenerationBatch.Status.QUEUED, error__startswith=NOT_SENT)
    for pk in unsent.values_list("pk", flat=True):
        if GenerationBatch.objects.filter(pk=pk, error__startswith=NOT_SENT).update(error="") and _send_to_worker(pk):
            requeued.append(pk)
    return requeued


# --- running a batch (in a worker) ------------------------------------------------------------------------------


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
    batch = _run_begin(batch_pk, worker)
    if batch is None:
        return GenerationBatch.objects.get(pk=batch_pk)
    with _Heartbeat(batch_pk, settings.GENERATION_HEARTBEAT_SECONDS):
        try:
            generator = batch_generator(batch)
        except Exception as error:  # a model that cannot load fails the batch with the reason, not the worker
            logger.exception("Generation batch %s: the model could not be loaded.", batch_pk)
            return _batch_fail(batch_pk, f"The model could not be loaded: {_describe(error)}")
        _log_model(batch_pk, generator)
        settings_ = batch_settings(batch)
        chunk_size = generator.batch_size_for(settings_)
        while _run_chunk(batch, generator, settings_, chunk_size):
            pass
    return job_finish_if_done(GenerationBatch, batch_pk, items="images", order_by="index")


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


def _run_begin(batch_pk: int, worker: str) -> GenerationBatch | None:
    """Mark the batch running and log the run; None when there is nothing to do (finished, or another worker is
    on it and alive)."""
    with transaction.atomic():
        batch = GenerationBatch.objects.select_for_update().get(pk=batch_pk)
        if batch.is_finished:
            return None
        now = timezone.now()
        stale_after = timedelta(seconds=settings.GENERATION_STALE_AFTER_SECONDS)
        if (
            batch.status == GenerationBatch.Status.RUNNING
            and batch.heartbeat_at
            and now - batch.heartbeat_at < stale_after
        ):
            logger.info("Generation batch %s is being run by a live worker; this message is not needed.", batch_pk)
            return None
        if batch.runs >= MAX_RUNS:
            batch.status, batch.finished_at = GenerationBatch.Status.FAILED, now
            batch.error = (
                f"The batch was started {batch.runs} times and its worker stopped each time before finishing; "
                "see the worker logs (out of memory?)."
            )
            batch.save(update_fields=["status", "finished_at", "error"])
            return None
        batch.status, batch.error = GenerationBatch.Status.RUNNING, ""
        batch.started_at = batch.started_at or now
        batch.heartbeat_at = now
        batch.runs += 1
        batch.run_log = [*batch.run_log, {"worker": worker, "pid": os.getpid(), "started_at": now.isoformat()}]
        batch.save(update_fields=["status", "error", "started_at", "heartbeat_at", "runs", "run_log"])
        return batch


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
                    _delete_files([row.png.name, row.dicom.name])
                    _mark_failed(row, f"Writing the image failed: {_describe(error)}")
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
        _delete_files(written)
        return False
    except BaseException:
        _delete_files(written)
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
            return [f"Generation failed: {_describe(error)}"]
        logger.warning("A chunk of %d images failed (%s); retrying them one by one.", len(rows), error)
    results: list[GeneratedImage | str] = []
    for row in rows:
        try:
            results += generator.generate([row.prompt], [row.seed], settings_)
        except Exception as error:
            logger.exception("Generation of image %s failed.", row.index)
            results.append(f"Generation failed: {_describe(error)}")
    return results


def _write_outputs(batch: GenerationBatch, row: BatchImage, image: GeneratedImage) -> list[str]:
    """Store the PNG (8-bit grayscale, no metadata: what real images are served as) and, if asked, the DICOM
    Secondary Capture; fill in the row. Returns the storage names written."""
    written = []
    png = encode_png_gray8(to_uint8(image.pixels))
    row.png.name = _store(image_file_name(batch.pk, row.index, "png"), png)
    written.append(row.png.name)
    row.png_sha256 = sha256_hex(png)
    if batch.write_dicom:
        dicom = synthetic_dicom(batch, row, image)
        row.dicom.name = _store(image_file_name(batch.pk, row.index, "dcm"), dicom)
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


def _store(name: str, data: bytes) -> str:
    # A stopped worker may have left a file under this name; replace it rather than store a second copy.
    if default_storage.exists(name):
        default_storage.delete(name)
    saved = default_storage.save(name, ContentFile(data))
    if saved != name:
        raise RuntimeError(f"Storage saved {name} as {saved}: another process is writing this batch's files.")
    return saved


def _delete_files(names: Sequence[str]) -> None:
    for name in names:
        if name:
            try:
                default_storage.delete(name)
            except OSError:
                logger.warning("Could not delete %s after a failed chunk.", name)


def _mark_failed(row: BatchImage, message: str) -> None:
    row.status, row.error, row.finished_at = BatchImage.Status.FAILED, message[:2000], timezone.now()
    row.png.name, row.png_sha256, row.dicom.name, row.provenance, row.seconds = "", "", "", {}, None


def _describe(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _batch_fail(batch_pk: int, message: str) -> GenerationBatch:
    with transaction.atomic():
        batch = GenerationBatch.objects.select_for_update().get(pk=batch_pk)
        if batch.status == GenerationBatch.Status.RUNNING:
            batch.status, batch.error, batch.finished_at = GenerationBatch.Status.FAILED, message, timezone.now()
            batch.save(update_fields=["status", "error", "finished_at"])
        return batch


class _Heartbeat:
    """Records a batch's heartbeat from a background thread while a worker runs it, so a dead worker is told
    apart from a slow chunk (`batches_requeue_stale`)."""

    def __init__(self, batch_pk: int, interval: float) -> None:
        self.batch_pk = batch_pk
        self.interval = max(0.1, interval)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"batch-{batch_pk}-heartbeat", daemon=True)

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()

    def _beat(self) -> None:
        try:
            while not self._stop.wait(self.interval):
                try:
                    GenerationBatch.objects.filter(pk=self.batch_pk, status=GenerationBatch.Status.RUNNING).update(
                        heartbeat_at=timezone.now()
                    )
                except DatabaseError:  # a busy SQLite file or a dropped connection: try again next beat
                    logger.warning("Generation batch %s: heartbeat not recorded.", self.batch_pk, exc_info=True)
        finally:
            connections.close_all()  # this thread's own connections


# --- adding a batch to a study ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class AddToStudyReport:
    """What adding a batch's images to a study did, by image index."""

    study_id: int
    added: tuple[int, ...] = ()
    already_added: tuple[int, ...] = ()
    refused: tuple[tuple[int, str], ...] = ()

    def summary(self) -> str:
        parts = [f"{len(self.added)} added"]
        if self.already_added:
            parts.append(f"{len(self.already_added)} already in the study")
        if self.refused:
            parts.append(f"{len(self.refused)} refused")
        return ", ".join(parts)


def batch_add_to_study(
    *,
    batch: GenerationBatch,
    study: Study,
    indices: Sequence[int] | None = None,
    is_practice: bool = False,
) -> AddToStudyReport:
    """Make the batch's done images (or those at `indices`) synthetic cases of `study` through `cases_import`:
    source "generation", the batch's generator label, each image's provenance. Images already added to this study
    are skipped, so calling it again adds only what is new; readers already assigned get the new cases appended.
    Images whose text cleanup was asked for enter as cleaned and accepted, or not at all (`cleanup.services`)."""
    from cleanup.services import batch_image_for_study

    images = batch.images.filter(status=BatchImage.Status.DONE).order_by("index")
    if indices is not None:
        images = images.filter(index__in=list(indices))
    added, already, refused = [], [], []
    for image in images:
        with transaction.atomic():
            # One image at a time under the study's row lock: two concurrent adds cannot both import an image.
            Study.objects.select_for_update().get(pk=study.pk)
            if BatchImageCase.objects.filter(image=image, study=study).exists():
                already.append(image.index)
                continue
            try:
                with image.png.open("rb") as handle:
                    data = handle.read()
            except OSError as error:
                refused.append((image.index, f"The image file cannot be read: {error}."))
                continue
            # Text cleanup, when one was run on the batch: the accepted cleaned image, or no image at all.
            cleaned = batch_image_for_study(image=image, data=data)
            if cleaned.refusal:
                refused.append((image.index, cleaned.refusal))
                continue
            report = cases_import(
                study=study,
                files=[IncomingFile(name=f"batch-{batch.pk}-{image.index + 1:06d}.png", data=cleaned.data)],
                truth=Case.Truth.SYNTHETIC,
                source=Case.Source.GENERATION,
                is_practice=is_practice,
                generator=batch.generator_label,
                provenance=cleaned.provenance,
                extend_sessions=False,
            )
            row = report.rows[0]
            if row.status == "imported":
                BatchImageCase.objects.create(image=image, study=study, case_id=row.case_id)
                added.append(image.index)
            else:
                refused.append((image.index, row.message))
    if added:
        sessions_extend(study=study)
    return AddToStudyReport(study_id=study.pk, added=tuple(added), already_added=tuple(already), refused=tuple(refused))


# --- the demo model ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoModel:
    """Where the demo model and adapter are, or why they were not built (`message`)."""

    model_dir: Path | None
    adapter_dir: Path | None
    built: bool
    message: str


def demo_model_build(*, model_root: Path) -> DemoModel:
    """Build the tiny random demo model and a LoRA for it under `model_root` (once; later calls find them), so a
    batch runs end to end on a CPU in seconds. Skipped, with the reason, when torch or diffusers is missing."""
    model_dir, adapter_dir = Path(model_root) / DEMO_MODEL_NAME, Path(model_root) / DEMO_ADAPTER_NAME
    if is_demo_model(model_dir) and is_demo_model(adapter_dir):
        return DemoModel(model_dir, adapter_dir, built=False, message=f"Demo model found in {model_dir}.")
    for folder in (model_dir, adapter_dir):
        if folder.exists() and not is_demo_model(folder):
            return DemoModel(
                None, None, built=False, message=f"Demo model not built: {folder} exists and is not the demo's."
            )
    if not _ml_available():
        return DemoModel(
            None,
            None,
            built=False,
            message="Demo model not built: torch, diffusers and transformers are not installed "
            "(pip install -c constraints.txt '.[ml]').",
        )
    import shutil

    from generation.tiny_models import build_tiny_lora, build_tiny_stable_diffusion

    configure_ml_runtime()
    building = Path(model_root) / f".{DEMO_MODEL_NAME}-building"
    shutil.rmtree(building, ignore_errors=True)
    build_tiny_stable_diffusion(building / DEMO_MODEL_NAME, seed=0)
    build_tiny_lora(building / DEMO_MODEL_NAME, building / DEMO_ADAPTER_NAME, seed=1)
    for name in (DEMO_MODEL_NAME, DEMO_ADAPTER_NAME):
        (building / name / DEMO_MARKER).write_text(DEMO_MARKER_TEXT, encoding="utf-8")
    # Moved into place only when complete, so an interrupted build never looks like a model.
    for source, target in ((building / DEMO_MODEL_NAME, model_dir), (building / DEMO_ADAPTER_NAME, adapter_dir)):
        shutil.rmtree(target, ignore_errors=True)
        source.rename(target)
    shutil.rmtree(building, ignore_errors=True)
    return DemoModel(model_dir, adapter_dir, built=True, message=f"Demo model built in {model_dir}.")

"""The worker side of training runs: turn a dataset's training split into examples and run the LoRA fine-tuning
loop (`training.loop.train_lora`), recording progress, the loss curve, validation images and checkpoints in the
run's row. A run whose worker died is sent again (`jobs.runner`) and resumes from its last complete checkpoint,
with the same data order, RNG states and optimizer state, so it ends with the weights an uninterrupted run gets."""

from __future__ import annotations

import logging
from pathlib import Path

from imaging.png import encode_png_gray8, to_uint8
from imaging.read import read_image
from jobs import runner
from jobs.runner import describe
from readerstudy.files import store_replacing
from training.models import TrainingRun

logger = logging.getLogger(__name__)

# The loss curve keeps every step up to this many points, then every other one (a long run stays a small row).
MAX_LOSS_POINTS = 2000


def training_examples(run: TrainingRun) -> list:
    """The run's dataset's training split as loop examples: padded square pixels, prompt, loss weight."""
    from training.loop import TrainingExample

    examples = []
    for example in run.dataset.examples.filter(split="train").order_by("pk"):
        with example.image.open("rb") as handle:
            pixels = read_image(handle.read()).pixels
        examples.append(
            TrainingExample(key=example.image_sha256, pixels=pixels, prompt=example.prompt, weight=example.weight)
        )
    return examples


def run_training(*, run_pk: int, worker: str = "") -> TrainingRun:
    """Train the run's LoRA until its steps are done, it is cancelled (a checkpoint is written), or it fails with
    the reason. Safe to call again: a finished run, or one a live worker runs, is left alone; one taken over from a
    dead worker resumes from its last checkpoint."""
    from training.loop import TrainingSettings, train_lora

    run = runner.run_begin(TrainingRun, run_pk, worker=worker)
    if run is None:
        return TrainingRun.objects.get(pk=run_pk)
    with runner.Heartbeat(run):
        try:
            examples = training_examples(run)
            result = train_lora(
                base_model_dir=Path(run.base_model_dir),
                examples=examples,
                settings=TrainingSettings.from_dict(run.settings),
                output_dir=Path(run.output_dir),
                device=_device(),
                progress=lambda report: _record_step(run_pk, report),
                should_stop=lambda: _cancelled(run_pk),
                on_checkpoint=lambda step, _path: TrainingRun.objects.filter(pk=run_pk).update(last_checkpoint=step),
                on_validation=lambda step, images: _record_validation(run_pk, step, images),
            )
        except Exception as error:  # a run that cannot go on fails with the reason, not the worker
            logger.exception("Training run %s failed.", run_pk)
            return runner.job_fail(TrainingRun, run_pk, f"Training failed: {describe(error)}")
    if _cancelled(run_pk):
        return TrainingRun.objects.get(pk=run_pk)
    TrainingRun.objects.filter(pk=run_pk).update(
        adapter_dir=str(result.adapter_dir), final_loss=result.final_loss, step=result.steps
    )
    return runner.job_finish(TrainingRun, run_pk)


def _device() -> str:
    from django.conf import settings

    return settings.ML_DEVICE


def _cancelled(run_pk: int) -> bool:
    return TrainingRun.objects.filter(pk=run_pk, status=TrainingRun.Status.CANCELLED).exists()


def _record_step(run_pk: int, report) -> None:
    run = TrainingRun.objects.only("loss_log").get(pk=run_pk)
    log = [entry for entry in run.loss_log if entry["step"] < report.step]  # a resumed run rewrites its steps
    log.append(
        {
            "step": report.step,
            "epoch": report.epoch,
            "loss": report.loss,
            "lr": report.lr,
            "grad_norm": report.grad_norm,
            "images_per_second": report.images_per_second,
        }
    )
    if len(log) > MAX_LOSS_POINTS:
        log = log[::2]
    TrainingRun.objects.filter(pk=run_pk).update(step=report.step, loss_log=log)


def _record_validation(run_pk: int, step: int, images) -> None:
    stored = []
    for index, (prompt, seed, pixels) in enumerate(images):
        name = f"training/run-{run_pk}/validation/step-{step:06d}/{index:02d}.png"
        saved = store_replacing(name, encode_png_gray8(to_uint8(pixels)))
        stored.append({"prompt": prompt, "seed": seed, "file": saved})
    run = TrainingRun.objects.only("validation").get(pk=run_pk)
    entries = [entry for entry in run.validation if entry["step"] != step] + [{"step": step, "images": stored}]
    TrainingRun.objects.filter(pk=run_pk).update(validation=sorted(entries, key=lambda entry: entry["step"]))

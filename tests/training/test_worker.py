"""A training run on a real Celery worker (the `gpu` queue, Redis, this PostgreSQL database) whose worker is killed
with SIGKILL mid-run: the replacement worker resumes it from its last checkpoint and it ends with the same LoRA
weights as the same run trained without interruption (CPU, one thread, tiny model)."""

from __future__ import annotations

import shutil
import signal
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from django.utils import timezone

from tests.conftest import wait_until
from training.datasets import dataset_import
from training.loop import TrainingSettings
from training.models import TrainingRun
from training.services import load_tokenizer, run_start
from training.worker import run_training

pytestmark = [pytest.mark.worker, pytest.mark.ml, pytest.mark.django_db(transaction=True)]

STALE_AFTER = 3.0
SETTINGS = TrainingSettings(resolution=64, batch_size=2, max_steps=40, checkpoint_every=4, learning_rate=1e-3)


def adapter_weights(adapter_dir: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(str(adapter_dir / "pytorch_lora_weights.safetensors"))


def test_a_worker_killed_mid_run_resumes_and_ends_with_the_uninterrupted_weights(
    celery_worker_process, coordinator, settings, tmp_path, tiny_model_dir
):
    import torch

    root = tmp_path / "models"
    root.mkdir()
    shutil.copytree(tiny_model_dir, root / "tiny-sd")
    settings.MODEL_ROOT, settings.MODEL_EXTRA_ROOTS = root, []
    folder = tmp_path / "pairs"
    folder.mkdir()
    rng = np.random.default_rng(5)
    lines = ["image,prompt"]
    from PIL import Image

    for number in range(6):
        Image.fromarray((rng.random((64, 64)) * 255).astype(np.uint8)).save(folder / f"{number}.png")
        lines.append(f"{number}.png,view_position = PA. image {number}.")
    (folder / "manifest.csv").write_text("\n".join(lines) + "\n")
    settings.IMPORT_ROOTS = [tmp_path.resolve()]
    imported = dataset_import(
        created_by=coordinator,
        name="pairs",
        folder=folder,
        tokenizer=load_tokenizer(root / "tiny-sd"),
        split_fractions=(1.0, 0.0, 0.0),
    )
    dataset = imported.dataset
    assert dataset is not None, imported.refusal

    # The reference: the same run, uninterrupted, here (one thread, as the workers run).
    torch.set_num_threads(1)
    reference = run_start(created_by=coordinator, dataset=dataset, base_model=str(root / "tiny-sd"), settings_=SETTINGS)
    reference = run_training(run_pk=reference.pk, worker="reference")
    assert reference.status == "done", reference.error
    expected = adapter_weights(Path(TrainingRun.objects.get(pk=reference.pk).adapter_dir))

    env = {
        "MODEL_ROOT": str(root),
        "ML_CPU_THREADS": "1",
        "JOB_HEARTBEAT_SECONDS": "0.5",
        "JOB_STALE_AFTER_SECONDS": str(STALE_AFTER),
    }
    first = celery_worker_process(queues="gpu", extra_env=env)
    run = run_start(created_by=coordinator, dataset=dataset, base_model=str(root / "tiny-sd"), settings_=SETTINGS)
    wait_until(
        lambda: (TrainingRun.objects.get(pk=run.pk).last_checkpoint or 0) >= 8,
        timeout=240,
        interval=0.05,
        what="two checkpoints",
    )
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    killed = TrainingRun.objects.get(pk=run.pk)
    assert killed.status == "running" and killed.step < SETTINGS.max_steps, "killed mid-run"

    wait_until(
        lambda: TrainingRun.objects.get(pk=run.pk).heartbeat_at < timezone.now() - timedelta(seconds=STALE_AFTER),
        timeout=30,
        what="the killed worker's heartbeat to go stale",
    )
    celery_worker_process(queues="gpu", extra_env=env)
    run = wait_until(
        lambda: TrainingRun.objects.filter(pk=run.pk, status__in=TrainingRun.FINISHED).first(),
        timeout=300,
        what="the resumed run to finish",
    )
    assert run.status == "done", run.error
    assert run.runs == 2 and run.step == SETTINGS.max_steps
    weights = adapter_weights(Path(run.adapter_dir))
    assert weights.keys() == expected.keys()
    worst = max(float(np.max(np.abs(weights[key] - expected[key]))) for key in expected)
    assert worst < 1e-6, f"resumed weights differ from the uninterrupted run's by {worst:g}"

"""Training runs in the site: a dataset imported through the page (the tiny model's tokenizer counts tokens), a run
started over HTTP and run as a worker runs it, its progress, loss curve and validation images on its page, the
adapter it writes offered by the generation page, cancel, `manage.py train_lora` (its --help without the ML
extra), and readers kept out."""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from django.core.management import call_command
from django.urls import reverse
from PIL import Image

from generation.lora import check_adapter_dir
from generation.selectors import model_folders
from tests.conftest import REPO_ROOT
from training.models import TrainingDataset, TrainingRun
from training.services import run_cancel
from training.worker import run_training

pytestmark = [pytest.mark.ml, pytest.mark.django_db]

QUICK = {
    "rank": 4,
    "alpha": 4.0,
    "learning_rate": 1e-3,
    "lr_schedule": "constant",
    "warmup_steps": 0,
    "batch_size": 2,
    "gradient_accumulation": 1,
    "resolution": 32,
    "epochs": 1,
    "max_steps": 3,
    "max_grad_norm": 1.0,
    "mixed_precision": "auto",
    "seed": 0,
    "checkpoint_every": 2,
    "keep_checkpoints": 2,
    "validation_every": 0,
    "validation_prompts": "view_position = PA. normal.",
    "validation_steps": 2,
}


@pytest.fixture
def model_root(settings, tmp_path, tiny_model_dir) -> Path:
    root = tmp_path / "models"
    root.mkdir()
    shutil.copytree(tiny_model_dir, root / "tiny-sd")
    settings.MODEL_ROOT = root
    settings.MODEL_EXTRA_ROOTS = []
    return root


@pytest.fixture
def dataset_folder(settings, tmp_path) -> Path:
    folder = tmp_path / "cxr-pairs"
    folder.mkdir()
    rng = np.random.default_rng(3)
    lines = ["image,report,patient_id,view"]
    for number in range(6):
        pixels = (rng.random((40, 48)) * 255).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="PNG")
        (folder / f"img-{number}.png").write_bytes(buffer.getvalue())
        impression = "small right pleural effusion" if number % 2 else "no acute cardiopulmonary process"
        lines.append(f'img-{number}.png,"FINDINGS: see image. IMPRESSION: {impression}.",p{number // 2},PA')
    (folder / "manifest.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    settings.IMPORT_ROOTS = [tmp_path.resolve()]
    return folder


def import_dataset(client, model_root: Path, folder: Path) -> TrainingDataset:
    response = client.post(
        reverse("training:dataset_new"),
        {
            "name": "Pairs",
            "folder": str(folder),
            "manifest": "",
            "template": "view_position = {view}. {impression}",
            "tokenizer_model": str(model_root / "tiny-sd"),
            "train_fraction": 1.0,
            "validation_fraction": 0.0,
            "test_fraction": 0.0,
            "seed": 0,
        },
    )
    assert response.status_code == 302, response.content.decode()[-3000:]
    return TrainingDataset.objects.get()


def test_a_run_started_on_the_page_trains_an_adapter_the_generation_page_offers(
    client, coordinator, model_root, dataset_folder, django_capture_on_commit_callbacks
):
    client.force_login(coordinator)
    dataset = import_dataset(client, model_root, dataset_folder)
    assert dataset.example_count == 6 and dataset.train_count == 6
    assert dataset.examples.first().prompt.startswith("view_position = PA. ")
    with django_capture_on_commit_callbacks(execute=False) as queued:
        response = client.post(
            reverse("training:run_new"),
            {**QUICK, "dataset": dataset.pk, "base_model": str(model_root / "tiny-sd"), "name": "Pairs r4"},
        )
    assert response.status_code == 302, response.content.decode()[-3000:]
    run = TrainingRun.objects.get()
    assert len(queued) == 1 and run.status == "queued" and run.total == 3
    assert Path(run.output_dir).parent == (model_root / "adapters").resolve() or Path(run.output_dir).parent == (
        model_root / "adapters"
    )

    run = run_training(run_pk=run.pk, worker="test")  # what the gpu worker's task does
    assert run.status == "done", run.error
    run.refresh_from_db()
    assert run.step == 3 and len(run.loss_log) == 3 and np.isfinite(run.final_loss)
    assert run.last_checkpoint == 3  # every 2 steps, and at the end
    adapter = Path(run.adapter_dir)
    assert check_adapter_dir(adapter).rank == 4
    offered = {str(folder.path) for folder in model_folders() if folder.kind == "adapter"}
    assert str(adapter) in offered, "the generation page's adapter picker lists the new adapter"

    page = client.get(reverse("training:run_detail", args=[run.pk])).content.decode()
    assert "3</strong> of 3 steps" in page and "<polyline" in page and "Generate a batch with this adapter" in page
    assert run.validation and run.validation[-1]["step"] == 3
    image = client.get(reverse("training:validation_png", args=[run.pk, 3, 0]))
    assert image.status_code == 200 and b"".join(image.streaming_content).startswith(b"\x89PNG")
    generation = client.get(reverse("generation:batch_list"), {"adapter": str(adapter)}).content.decode()
    assert f'value="{adapter}"' in generation


def test_a_cancelled_run_is_not_trained_and_refused_settings_start_nothing(
    client, coordinator, model_root, dataset_folder
):
    client.force_login(coordinator)
    dataset = import_dataset(client, model_root, dataset_folder)
    refused = client.post(
        reverse("training:run_new"),
        {**QUICK, "resolution": 30, "dataset": dataset.pk, "base_model": str(model_root / "tiny-sd")},
    )
    assert refused.status_code == 400 and "multiple of 8" in refused.content.decode()
    assert not TrainingRun.objects.exists()
    client.post(
        reverse("training:run_new"), {**QUICK, "dataset": dataset.pk, "base_model": str(model_root / "tiny-sd")}
    )
    run = run_cancel(run=TrainingRun.objects.get())
    assert run_training(run_pk=run.pk).status == "cancelled" and not Path(run.output_dir, "adapter").exists()


def test_readers_are_kept_out_of_the_training_pages(client, reader):
    client.force_login(reader)
    assert client.get(reverse("training:home")).status_code == 403


def test_the_command_line_trains_the_same_way(coordinator, model_root, dataset_folder, capsys):
    call_command(
        "train_lora",
        folder=str(dataset_folder),
        base_model=str(model_root / "tiny-sd"),
        name="cli",
        user=coordinator.username,
        resolution=32,
        batch_size=2,
        max_steps=2,
        checkpoint_every=0,
    )
    out = capsys.readouterr().out
    run = TrainingRun.objects.get()
    assert run.status == "done" and "Adapter written to" in out and check_adapter_dir(Path(run.adapter_dir))


def test_the_command_help_works_without_the_ml_extra():
    # torch, diffusers, peft and transformers made unimportable: --help must still print the options.
    # (A finder that refuses them, not sys.modules[name] = None: scipy takes any torch in sys.modules for a module.)
    code = (
        "import sys\n"
        "class NoML:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in {'torch', 'diffusers', 'peft', 'transformers', 'accelerate'}:\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}')\n"
        "sys.meta_path.insert(0, NoML())\n"
        "from django.core.management import execute_from_command_line\n"
        "execute_from_command_line(['manage.py', 'train_lora', '--help'])\n"
        "assert 'torch' not in sys.modules\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "--base-model" in result.stdout and "--min-snr-gamma" in result.stdout

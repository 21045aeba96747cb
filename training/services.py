"""Writes for training runs on the web side: check and start a LoRA fine-tuning run of a base model on a dataset
(queued for a `gpu` worker through `jobs.runner`), and cancel it. The run itself is `training.worker`."""

from __future__ import annotations

import re
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from generation.pipeline import check_model_dir
from generation.roots import PathRefused, resolve_in_roots
from jobs import runner
from training.loop import total_steps
from training.models import TrainingDataset, TrainingRun

User = get_user_model()

ADAPTER_FOLDER = "adapters"  # under MODEL_ROOT: where finished adapters appear in the generation page's picker


class RunRefused(ValueError):
    """A training run that cannot start; `errors` says why, by field, in the coordinator's words."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__(" ".join(errors.values()))
        self.errors = errors


def run_check(*, dataset: TrainingDataset, base_model: str, settings_) -> tuple[Path, dict[str, str]]:
    """The resolved base model folder and every problem with the request, by field (empty: it can start)."""
    errors: dict[str, str] = {}
    base_model_dir = Path()
    try:
        base_model_dir = resolve_in_roots(base_model)
    except PathRefused as refused:
        errors["base_model"] = str(refused)
    else:
        problems = check_model_dir(base_model_dir)
        if problems:
            errors["base_model"] = " ".join(problems)
    if not dataset.examples.filter(split="train").exists():
        errors["dataset"] = f"The dataset “{dataset.name}” has no training examples."
    problems = settings_.problems()
    if problems:
        errors["settings"] = " ".join(problems)
    return base_model_dir, errors


def run_start(*, created_by: User, dataset: TrainingDataset, base_model: str, settings_, name: str = "") -> TrainingRun:
    """Check the request (RunRefused with the reasons; nothing is created then) and queue the run for a worker
    once this transaction commits. Its checkpoints and adapter go to MODEL_ROOT/adapters/<name>-run-<id>/."""
    base_model_dir, errors = run_check(dataset=dataset, base_model=base_model, settings_=settings_)
    if errors:
        raise RunRefused(errors)
    train_examples = dataset.examples.filter(split="train").count()
    name = (name or f"{dataset.name} LoRA r{settings_.rank}").strip()[:200]
    with transaction.atomic():
        run = TrainingRun.objects.create(
            name=name,
            created_by=created_by,
            dataset=dataset,
            dataset_hash=dataset.dataset_hash,
            base_model_dir=str(base_model_dir),
            settings=settings_.to_dict(),
            output_dir="",
            total=total_steps(train_examples, settings_),
        )
        run.output_dir = str(Path(settings.MODEL_ROOT) / ADAPTER_FOLDER / f"{_slug(name)}-run-{run.pk}")
        run.save(update_fields=["output_dir"])
        runner.enqueue_on_commit(run)
    return run


@transaction.atomic
def run_cancel(*, run: TrainingRun) -> TrainingRun:
    """Stop a queued or running run. Its worker notices between optimizer steps, writes a checkpoint and stops;
    a finished run is left as it is."""
    run = TrainingRun.objects.select_for_update().get(pk=run.pk)
    if not run.is_finished:
        run.status, run.finished_at = TrainingRun.Status.CANCELLED, timezone.now()
        run.save(update_fields=["status", "finished_at"])
    return run


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60] or "lora"


def load_tokenizer(model_dir: Path):
    """The text encoder's tokenizer of a diffusers model folder (`tokenizer/`), read locally; ValueError if there
    is none or transformers is not installed."""
    try:
        from transformers import CLIPTokenizer
    except ImportError as error:
        raise ValueError(
            "Counting prompt tokens needs transformers (pip install -c constraints.txt '.[ml]')."
        ) from error
    folder = resolve_in_roots(model_dir) / "tokenizer"
    if not folder.is_dir():
        raise ValueError(f"{folder.parent} has no tokenizer/ folder to count prompt tokens with.")
    return CLIPTokenizer.from_pretrained(folder, local_files_only=True)


def dataset_import_from_form(*, created_by: User, form):
    """`training.datasets.dataset_import` with a dataset form's values and the chosen model's tokenizer."""
    from training.datasets import DatasetImport, dataset_import

    data = form.cleaned_data
    try:
        tokenizer = load_tokenizer(Path(data["tokenizer_model"]))
    except (PathRefused, ValueError, OSError) as error:
        return DatasetImport(dataset=None, rows=(), refusal=str(error))
    return dataset_import(
        created_by=created_by,
        name=data["name"],
        folder=data["folder"],
        template=data["template"],
        tokenizer=tokenizer,
        split_fractions=(data["train_fraction"], data["validation_fraction"], data["test_fraction"]),
        seed=data["seed"],
        manifest=data["manifest"] or None,
    )

"""`python manage.py train_lora`: the training run the site starts, from the command line.

Creates a training run of a dataset (an existing one by id, or one imported here from a folder with a manifest)
and runs it in this process, printing each step, or queues it for a `gpu` worker with `--queue`. Every option of
the run page is an option here. `--help` works without the ML extra installed (torch is imported only to train).
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db.models import Q

OPTION_HELP = {
    "rank": "LoRA rank (default 4)",
    "alpha": "LoRA alpha (default 4)",
    "text_encoder_lora": "also adapt the text encoder",
    "learning_rate": "AdamW learning rate (default 1e-4)",
    "lr_schedule": "constant or cosine (default constant)",
    "warmup_steps": "linear warm-up steps (default 0)",
    "batch_size": "images per batch (default 5)",
    "gradient_accumulation": "batches per optimizer step (default 1)",
    "resolution": "training resolution in pixels, a multiple of 8 (default 512)",
    "epochs": "passes over the training split (default 10)",
    "max_steps": "optimizer steps; overrides --epochs",
    "max_grad_norm": "gradient clipping norm (default 1.0)",
    "mixed_precision": "auto, bf16, fp16 or no (default auto: bf16 where the device supports it)",
    "gradient_checkpointing": "trade compute for memory",
    "min_snr_gamma": "min-SNR loss weighting gamma (e.g. 5); off by default",
    "seed": "seed of noise, timesteps and data order (default 0)",
    "checkpoint_every": "optimizer steps between checkpoints (default 500)",
    "keep_checkpoints": "checkpoints kept (default 3)",
    "validation_every": "optimizer steps between validation images (0: only at the end)",
    "validation_prompts": "a validation prompt (repeat the option for more)",
    "validation_seeds": "a validation seed (repeat the option for more)",
    "validation_steps": "denoising steps of validation images (default 20)",
}


class Command(BaseCommand):
    help = "Fine-tune Stable Diffusion 2.1-base with LoRA on a training dataset (runs here, or --queue for a worker)."

    def add_arguments(self, parser):
        source = parser.add_mutually_exclusive_group(required=True)
        source.add_argument("--dataset", type=int, help="id of an imported training dataset")
        source.add_argument("--folder", type=Path, help="import a dataset from this folder's manifest first")
        parser.add_argument("--template", default=None, help="prompt template for --folder (default: the site's)")
        parser.add_argument("--base-model", required=True, help="SD 2.1-base folder (diffusers layout) in MODEL_ROOT")
        parser.add_argument("--name", default="", help="name of the run (and of its adapter folder)")
        parser.add_argument("--user", default=None, help="username the run is recorded for (default: an admin)")
        parser.add_argument("--queue", action="store_true", help="queue the run for a gpu worker instead")
        for name, label in OPTION_HELP.items():
            flag = "--" + name.replace("_", "-")
            if name in {"text_encoder_lora", "gradient_checkpointing"}:
                parser.add_argument(flag, action="store_true", help=label)
            elif name in {"validation_prompts", "validation_seeds"}:
                parser.add_argument(flag, action="append", type=int if name == "validation_seeds" else str, help=label)
            elif name in {"learning_rate", "alpha", "max_grad_norm", "min_snr_gamma"}:
                parser.add_argument(flag, type=float, help=label)
            elif name in {"lr_schedule", "mixed_precision"}:
                parser.add_argument(flag, help=label)
            else:
                parser.add_argument(flag, type=int, help=label)

    def handle(self, *args, **options):
        from training.loop import TrainingSettings
        from training.models import TrainingDataset, TrainingRun
        from training.services import RunRefused, run_start

        user = self._user(options["user"])
        dataset = self._dataset(options, user)
        known = {field.name for field in fields(TrainingSettings)}
        values = {}
        for name in OPTION_HELP:
            value = options.get(name)
            if value is None or value is False:
                continue
            values[name] = tuple(value) if isinstance(value, list) else value
        unknown = set(values) - known
        if unknown:
            raise CommandError(f"Unknown settings: {', '.join(sorted(unknown))}.")
        try:
            settings_ = TrainingSettings(**values)
            run = run_start(
                created_by=user,
                dataset=TrainingDataset.objects.get(pk=dataset.pk),
                base_model=options["base_model"],
                settings_=settings_,
                name=options["name"],
            )
        except RunRefused as refused:
            raise CommandError(" ".join(refused.errors.values())) from refused
        except (TypeError, ValueError) as error:
            raise CommandError(str(error)) from error
        self.stdout.write(f"Training run {run.pk} “{run.name}”: {run.total} steps, output in {run.output_dir}.")
        if options["queue"]:
            self.stdout.write("Queued for a gpu worker (celery -A config worker -Q gpu).")
            return
        from training.worker import run_training

        run = run_training(run_pk=run.pk, worker="manage.py train_lora")
        run = TrainingRun.objects.get(pk=run.pk)
        if run.status != TrainingRun.Status.DONE:
            raise CommandError(f"The run ended {run.get_status_display().lower()}: {run.error}")
        self.stdout.write(
            self.style.SUCCESS(f"Adapter written to {run.adapter_dir} (final loss {run.final_loss:.4f}).")
        )

    def _user(self, username: str | None):
        users = get_user_model().objects.filter(is_active=True)
        if username:
            user = users.filter(username=username).first()
            if user is None:
                raise CommandError(f"There is no active user {username!r}.")
            return user
        user = users.filter(Q(is_superuser=True) | Q(groups__name="admin")).order_by("pk").first()
        if user is None:
            raise CommandError("No admin account to record the run for: give --user.")
        return user

    def _dataset(self, options, user):
        from training.models import TrainingDataset

        if options["dataset"] is not None:
            dataset = TrainingDataset.objects.filter(pk=options["dataset"]).first()
            if dataset is None:
                raise CommandError(f"There is no training dataset {options['dataset']}.")
            return dataset
        from training.datasets import dataset_import
        from training.prompts import DEFAULT_TEMPLATE
        from training.services import load_tokenizer

        try:
            tokenizer = load_tokenizer(Path(options["base_model"]))
        except (ValueError, OSError) as error:
            raise CommandError(str(error)) from error
        folder = Path(options["folder"])
        result = dataset_import(
            created_by=user,
            name=options["name"] or folder.name,
            folder=folder,
            template=options["template"] or DEFAULT_TEMPLATE,
            tokenizer=tokenizer,
        )
        for line in result.lines():
            self.stdout.write(f"  {line}")
        if result.dataset is None:
            raise CommandError(f"The dataset was not imported: {result.refusal or result.summary()}")
        self.stdout.write(f"Dataset {result.dataset.pk} “{result.dataset.name}”: {result.summary()}")
        return result.dataset

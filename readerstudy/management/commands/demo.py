"""Create the demo: role groups, demo accounts, and a demo study with real and synthetic cases, opened for reading
through the blinding gate.

Images come from `--real-dir` / `--synthetic-dir` folders when given (searched recursively), otherwise from the
built-in chest phantom generator (clearly labelled as phantoms in the reading screen). Running it again changes
nothing that exists; it prints the accounts again.
"""

from __future__ import annotations

from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from imaging.png import encode_png_gray8, to_uint8
from readerstudy.blinding import study_open_check
from readerstudy.imports import IncomingFile, cases_import, folder_files
from readerstudy.models import Case, Study
from readerstudy.roles import ADMIN, COORDINATOR, READER, ensure_role_groups
from readerstudy.services import reader_assign, study_create, study_update

DEMO_STUDY_NAME = "Demo: real or synthetic chest X-ray?"
DEMO_ACCOUNTS = [
    # username, password, role
    ("reader", "reader-demo-2026", READER),
    ("reader2", "reader2-demo-2026", READER),
    ("reader3", "reader3-demo-2026", READER),
    ("coordinator", "coordinator-demo-2026", COORDINATOR),
    ("admin", "admin-demo-2026", ADMIN),
]
DEMO_OPENING_REASON = (
    "Demonstration study on the shared example images: the class mix and the sources are what the examples "
    "offer, not a design choice. Its results are not evidence about any generator."
)
INSTRUCTIONS = (
    "Each image is either a real chest X-ray or one made by a generative model. Call it real (R) or synthetic "
    "(S), say how sure you are (1 = guess, 5 = certain), then score its quality. Use window/level, zoom and "
    "invert as you would on a workstation. Your answer is saved the moment you submit it."
)


class Command(BaseCommand):
    help = "Create demo accounts and a demo study (from image folders, or built-in phantoms)."

    def add_arguments(self, parser):
        parser.add_argument("--real-dir", action="append", type=Path, default=[], help="Folder of real images.")
        parser.add_argument(
            "--synthetic-dir", action="append", type=Path, default=[], help="Folder of synthetic images."
        )
        parser.add_argument(
            "--phantoms",
            type=int,
            default=12,
            help="Phantoms per class when no folders are given (default 12).",
        )
        parser.add_argument(
            "--no-demo-model",
            action="store_true",
            help="Do not build the tiny random demo model for generation batches.",
        )

    def handle(self, *args, real_dir, synthetic_dir, phantoms, no_demo_model=False, **options):
        for folder in [*real_dir, *synthetic_dir]:
            if not folder.is_dir():
                raise CommandError(f"There is no folder {folder}.")
        if bool(real_dir) != bool(synthetic_dir):
            raise CommandError("Give both --real-dir and --synthetic-dir, or neither (for phantoms).")
        users = self.create_accounts()
        study = Study.objects.filter(name=DEMO_STUDY_NAME).first()
        if study is None:
            study = self.create_study(users, real_dir, synthetic_dir, phantoms)
        if not no_demo_model:
            self.build_demo_model()
            if real_dir:
                self.build_training_dataset(users["coordinator"], real_dir)
        self.print_accounts(study)

    def build_demo_model(self) -> None:
        """The tiny random model (and LoRA) the generation page offers by default: a batch runs in seconds."""
        from django.conf import settings

        from generation.demo import demo_model_build

        self.stdout.write(demo_model_build(model_root=Path(settings.MODEL_ROOT)).message)

    def build_training_dataset(self, coordinator, real_dirs: list[Path]) -> None:
        """The shared real images as a training dataset, for training the demo model from the training page."""
        from django.conf import settings

        from generation.demo import DEMO_MODEL_NAME
        from training.demo import demo_dataset_build

        model = Path(settings.MODEL_ROOT) / DEMO_MODEL_NAME
        if model.is_dir():
            self.stdout.write(
                demo_dataset_build(created_by=coordinator, image_folders=real_dirs, tokenizer_model=model)
            )

    @transaction.atomic
    def create_accounts(self) -> dict:
        groups = ensure_role_groups()
        user_model = get_user_model()
        users = {}
        for username, password, role in DEMO_ACCOUNTS:
            user, created = user_model.objects.get_or_create(username=username)
            if created:
                user.set_password(password)
                user.is_staff = role == ADMIN
                user.is_superuser = role == ADMIN
                user.save()
                user.groups.add(groups[role])
            users[username] = user
        return users

    def create_study(self, users: dict, real_dirs: list[Path], synthetic_dirs: list[Path], phantoms: int) -> Study:
        study = study_create(
            created_by=users["coordinator"],
            name=DEMO_STUDY_NAME,
            instructions=INSTRUCTIONS,
            status=Study.Status.DRAFT,  # opened below, through the blinding gate, once its cases are in
            blank_screen_ms=300,
            # Generated images are square and 512 px: serve every image that way so neither gives the class away.
            crop_to_square=True,
            working_resolution=512,
            # Real detectors and the generator have different black levels: stretch every image the same way.
            harmonise_intensity=True,
            # Four cases come back, unannounced, late in each reader's order: the dashboard's consistency table.
            repeat_cases=4,
        )
        if real_dirs:
            real = [f for folder in real_dirs for f in folder_files(folder)]
            synthetic = [f for folder in synthetic_dirs for f in folder_files(folder)]
            source = Case.Source.FOLDER
            generator = "from folder"
        else:
            real = [_phantom_file(seed, "a") for seed in range(phantoms + 1)]
            synthetic = [_phantom_file(1000 + seed, "b") for seed in range(phantoms + 1)]
            source = Case.Source.PHANTOM
            generator = "phantom style b"
        if len(real) < 2 or len(synthetic) < 2:
            raise CommandError("The demo needs at least two real and two synthetic images.")
        # One image of each class becomes practice, with feedback, before the analysed cases.
        reports = [
            cases_import(study=study, files=real[-1:], truth="real", source=source, is_practice=True),
            cases_import(
                study=study,
                files=synthetic[-1:],
                truth="synthetic",
                source=source,
                is_practice=True,
                generator=generator,
            ),
            cases_import(study=study, files=real[:-1], truth="real", source=source),
            cases_import(study=study, files=synthetic[:-1], truth="synthetic", source=source, generator=generator),
        ]
        for report in reports:
            for row in report.errors:
                self.stderr.write(f"  refused {row.name}: {row.message}")
        for username, _, role in DEMO_ACCOUNTS:
            if role == READER:
                reader_assign(study=study, reader=users[username])
        counts = {truth: study.cases.filter(truth=truth).count() for truth in Case.Truth.values}
        self.open_study(study, users["coordinator"])
        self.stdout.write(
            f"Demo study created with {counts['real']} real and {counts['synthetic']} synthetic cases "
            f"({'image folders' if real_dirs else 'built-in phantoms'})."
        )
        return study

    def open_study(self, study: Study, coordinator) -> None:
        """Open the demo study through the blinding gate, saying why it opens whatever the audit finds: the shared
        images are what there is (more real than synthetic, from different sources), and a demo shows the gate."""
        audit = study_open_check(study=study)
        study_update(
            study=study,
            changed_by=coordinator,
            status=Study.Status.OPEN,
            blinding_acknowledged=bool(audit.flags),
            blinding_reason=DEMO_OPENING_REASON if audit.flags else "",
        )
        for flag in audit.flags:
            self.stdout.write(f"  blinding audit: {flag}")

    def print_accounts(self, study: Study) -> None:
        self.stdout.write(self.style.SUCCESS(f"Demo study: “{study.name}”"))
        self.stdout.write("Demo accounts (username / password / role):")
        for username, password, role in DEMO_ACCOUNTS:
            self.stdout.write(f"  {username:<12} {password:<24} {role}")


def _phantom_file(seed: int, style: str) -> IncomingFile:
    from imaging.phantom import chest_phantom

    pixels = chest_phantom(seed, size=512, style=style)
    return IncomingFile(name=f"phantom-{style}-{seed}.png", data=encode_png_gray8(to_uint8(pixels)))

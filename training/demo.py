"""The demo's training dataset: the shared real chest X-rays with one-line prompts, so that the tiny demo model
can be trained for a few steps from the training page (`manage.py demo` builds it when image folders are given)."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

from django.conf import settings

from readerstudy.imports import folder_image_paths
from training.models import TrainingDataset

DEMO_DATASET_NAME = "Demo: shared real chest X-rays"
DEMO_FOLDER = "training-demo"
# The shared images come with no reports: prompts say only the view (from their manifest) and what they are.
DEMO_REPORT = "IMPRESSION: chest radiograph."


def demo_dataset_build(*, created_by, image_folders: list[Path], tokenizer_model: Path) -> str:
    """Copy the images of `image_folders` into VAR_DIR/training-demo with a manifest (view from the shared set's
    MANIFEST.csv when it names them) and import it as the demo dataset, once. Returns what was done, in a line."""
    from training.datasets import dataset_import
    from training.services import load_tokenizer

    existing = TrainingDataset.objects.filter(name=DEMO_DATASET_NAME).first()
    if existing is not None:
        return f"Demo training dataset found ({existing.example_count} examples)."
    folder = Path(settings.VAR_DIR) / DEMO_FOLDER
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "images").mkdir(parents=True)
    views = _views(image_folders)
    rows = []
    for source_folder in image_folders:
        for path in folder_image_paths(source_folder):
            target = folder / "images" / f"{len(rows):03d}{path.suffix.lower()}"
            shutil.copyfile(path, target)
            rows.append(
                {"image": f"images/{target.name}", "report": DEMO_REPORT, "view": views.get(path.resolve(), "PA")}
            )
    with (folder / "manifest.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["image", "report", "view"])
        writer.writeheader()
        writer.writerows(rows)
    try:
        tokenizer = load_tokenizer(tokenizer_model)
    except (ValueError, OSError) as error:
        return f"Demo training dataset not built: {error}"
    roots = settings.IMPORT_ROOTS
    settings.IMPORT_ROOTS = [*roots, folder.resolve()]  # the demo's own folder, for this import only
    try:
        result = dataset_import(created_by=created_by, name=DEMO_DATASET_NAME, folder=folder, tokenizer=tokenizer)
    finally:
        settings.IMPORT_ROOTS = roots
    if result.dataset is None:
        return f"Demo training dataset not built: {result.refusal}"
    return f"Demo training dataset: {result.summary()}"


def _views(image_folders: list[Path]) -> dict[Path, str]:
    """View positions from a MANIFEST.csv beside the image folders (the shared set has one), by resolved path."""
    views: dict[Path, str] = {}
    for manifest in {folder.resolve().parent / "MANIFEST.csv" for folder in image_folders}:
        if not manifest.is_file():
            continue
        with manifest.open(encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                if row.get("file") and row.get("view"):
                    views[(manifest.parent / row["file"]).resolve()] = row["view"].strip().upper()
    return views

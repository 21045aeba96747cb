"""Reads for generation batches: progress, the gallery, failures, where images went, and the model folders a form
may offer."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.core.paginator import Page, Paginator
from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from generation.lora import WEIGHT_SUFFIXES
from generation.models import BatchImage, BatchImageCase, GenerationBatch
from generation.roots import is_demo_model, model_roots

GALLERY_PAGE_SIZE = 48


@dataclass(frozen=True)
class BatchProgress:
    """How far a batch has got: images done, failed and still pending out of `total`."""

    total: int
    done: int
    failed: int

    @property
    def pending(self) -> int:
        return self.total - self.done - self.failed

    @property
    def processed(self) -> int:
        return self.done + self.failed

    @property
    def percent(self) -> int:
        return round(100 * self.processed / self.total) if self.total else 0


def batch_progress(*, batch: GenerationBatch) -> BatchProgress:
    counts = batch.images.aggregate(
        done=Count("id", filter=Q(status=BatchImage.Status.DONE)),
        failed=Count("id", filter=Q(status=BatchImage.Status.FAILED)),
    )
    return BatchProgress(total=batch.total, done=counts["done"], failed=counts["failed"])


def batch_is_stalled(*, batch: GenerationBatch) -> bool:
    """Running, but its worker has not reported for longer than JOB_STALE_AFTER_SECONDS."""
    if batch.status != GenerationBatch.Status.RUNNING or batch.heartbeat_at is None:
        return False
    return timezone.now() - batch.heartbeat_at > timedelta(seconds=settings.JOB_STALE_AFTER_SECONDS)


def batch_list() -> QuerySet[GenerationBatch]:
    """Batches, newest first, with their done and failed counts (one query)."""
    return (
        GenerationBatch.objects.select_related("created_by")
        .annotate(
            done=Count("images", filter=Q(images__status=BatchImage.Status.DONE)),
            failed=Count("images", filter=Q(images__status=BatchImage.Status.FAILED)),
        )
        .order_by("-created_at")
    )


def batch_gallery(*, batch: GenerationBatch, page: int | str | None = 1) -> Page:
    """One page of the batch's finished images, in batch order."""
    images = batch.images.filter(status=BatchImage.Status.DONE).order_by("index")
    return Paginator(images, GALLERY_PAGE_SIZE).get_page(page)


def batch_failures(*, batch: GenerationBatch) -> QuerySet[BatchImage]:
    return batch.images.filter(status=BatchImage.Status.FAILED).order_by("index")


@dataclass(frozen=True)
class StudyShare:
    """How many of a batch's images are cases of one study."""

    study_id: int
    study_name: str
    cases: int


def batch_studies(*, batch: GenerationBatch) -> list[StudyShare]:
    rows = (
        BatchImageCase.objects.filter(image__batch=batch)
        .values("study_id", "study__name")
        .annotate(cases=Count("id"))
        .order_by("study__name")
    )
    return [StudyShare(row["study_id"], row["study__name"], row["cases"]) for row in rows]


@dataclass(frozen=True)
class ModelFolder:
    """A base model or adapter folder found under the model roots."""

    path: Path
    kind: str  # "model" | "adapter"
    is_demo: bool

    @property
    def label(self) -> str:
        return f"{self.path.name} (demo: random weights)" if self.is_demo else self.path.name


def model_folders(*, max_depth: int = 3) -> list[ModelFolder]:
    """Diffusers model folders (with model_index.json) and LoRA adapter folders (with a .safetensors or .bin file
    and no model_index.json) up to `max_depth` levels below each model root, demo ones first. Three levels reach
    the adapters training runs write (`adapters/<run>/adapter/`)."""
    found: dict[Path, ModelFolder] = {}
    for root in model_roots():
        if not root.is_dir():
            continue
        level = [root]
        for _depth in range(max_depth):
            next_level = []
            for folder in level:
                try:
                    children = sorted(child for child in folder.iterdir() if child.is_dir())
                except OSError:
                    continue
                for child in children:
                    if child.name.startswith("."):
                        continue
                    kind = _folder_kind(child)
                    if kind is not None:
                        found.setdefault(child, ModelFolder(child, kind, is_demo_model(child)))
                    else:
                        next_level.append(child)
            level = next_level
    return sorted(found.values(), key=lambda folder: (not folder.is_demo, folder.kind, str(folder.path)))


def _folder_kind(folder: Path) -> str | None:
    if (folder / "model_index.json").is_file():
        return "model"
    try:
        if any(child.suffix in WEIGHT_SUFFIXES and child.is_file() for child in folder.iterdir()):
            return "adapter"
    except OSError:
        return None
    return None

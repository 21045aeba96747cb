"""Writes for generation batches on the web side: start a checked batch (queued for a `gpu` worker through
`jobs.runner`), cancel it, and add its images to a study. The run itself is `generation.worker`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from generation.batch_check import BatchRequest, batch_check
from generation.models import BatchImage, BatchImageCase, GenerationBatch
from jobs import runner
from readerstudy.imports import IncomingFile, cases_import
from readerstudy.models import Case, Study
from readerstudy.services import sessions_extend

User = get_user_model()


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
        runner.enqueue_on_commit(batch)
    return batch


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


@dataclass(frozen=True)
class StudyImage:
    """What `batch_add_to_study` imports for one generated image: `data` (the PNG) with `provenance`, or nothing,
    for the `refusal` given."""

    data: bytes = b""
    provenance: dict[str, Any] | None = None
    refusal: str = ""


# What a generated image must pass on its way into a study, registered at start-up by the apps that treat generated
# images (cleanup registers its review verdict: an image whose cleanup was asked for enters cleaned and accepted,
# or not at all). Generation calls them without importing those apps.
_STUDY_IMAGE_STEPS: list[Callable[..., StudyImage]] = []


def register_study_image_step(step: Callable[..., StudyImage]) -> None:
    """Add `step(image=BatchImage, data=bytes) -> StudyImage` to what `image_for_study` applies (once)."""
    if step not in _STUDY_IMAGE_STEPS:
        _STUDY_IMAGE_STEPS.append(step)


def image_for_study(*, image: BatchImage, data: bytes) -> StudyImage:
    """The file and provenance a generated image enters a study with, after every registered step."""
    result = StudyImage(data=data, provenance=dict(image.provenance))
    for step in _STUDY_IMAGE_STEPS:
        stepped = step(image=image, data=result.data)
        if stepped.refusal:
            return stepped
        result = StudyImage(data=stepped.data, provenance={**result.provenance, **(stepped.provenance or {})})
    return result


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
    Images whose text cleanup was asked for enter as cleaned and accepted, or not at all (`image_for_study`)."""
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
            cleaned = image_for_study(image=image, data=data)
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

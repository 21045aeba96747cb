"""Review of cleanup results: accept or reject an image's cleanup (a case's served image changes only here,
through `readerstudy.services.case_apply_cleanup`), accept every unchanged image at once, and the verdict a
generated image carries into a study (registered with generation at start-up: generation never imports cleanup).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from cleanup.item_files import item_cleaned_pixels
from cleanup.models import CleanupItem, CleanupJob
from cleanup.services import CleanupRefused, User
from generation.models import BatchImage
from generation.services import StudyImage
from imaging.png import encode_png_gray8, to_uint8
from readerstudy.models import Case
from readerstudy.services import case_apply_cleanup, case_remove_cleanup

# --- review -------------------------------------------------------------------------------------------------------


def cleanup_record(item: CleanupItem, reviewer: User) -> dict[str, Any]:
    """What a case's provenance keeps of an accepted cleanup: enough to say what was done, by whom and how."""
    result = item.result
    return {
        "job": item.job_id,
        "item": item.pk,
        "changed": bool(item.changed),
        "detector": result.get("detector", ""),
        "segmenter": result.get("segmenter", "") if item.changed else "",
        "inpainter": result.get("inpainter", "") if item.changed else "",
        "config": item.job.config,
        "boxes": len(result.get("boxes", [])),
        "texts": [box["text"] for box in result.get("boxes", []) if box.get("text")],
        "residual": item.residual_regions,
        "masked_pixels": result.get("mask", {}).get("masked_pixels", 0),
        "accepted_by": reviewer.get_username(),
        "accepted_at": timezone.now().isoformat(),
    }


def _locked_item(item: CleanupItem) -> CleanupItem:
    locked = CleanupItem.objects.select_for_update().get(pk=item.pk)
    # Joined rows are fetched apart: locking the case and job rows too would make reviews wait for the worker.
    locked.job = CleanupJob.objects.select_related("study", "batch").get(pk=locked.job_id)
    if locked.case_id is not None:
        locked.case = Case.objects.get(pk=locked.case_id)
    return locked


def _check_reviewable(item: CleanupItem) -> None:
    if item.job.mode != CleanupJob.Mode.CLEAN:
        raise CleanupRefused("A text check changes nothing, so there is nothing to accept or reject.")
    if item.status == CleanupItem.Status.PENDING:
        raise CleanupRefused("This image has not been processed yet.")
    if item.status == CleanupItem.Status.FAILED:
        raise CleanupRefused(f"This image failed ({item.error}); there is nothing to accept.")


@transaction.atomic
def cleanup_item_accept(*, item: CleanupItem, reviewer: User) -> CleanupItem:
    """Accept an image's cleanup: the case's served image becomes the cleaned original rendered with the study's
    serving settings (unchanged images keep theirs), and its provenance records the cleanup. Refused, changing
    nothing, when the image would change under readers (the case has readings)."""
    item = _locked_item(item)
    _check_reviewable(item)
    if item.case_id is None:
        # A generated image: `batch_image_for_study` uses the decision when the image is added to a study.
        return _set_review(item, CleanupItem.Review.ACCEPTED, reviewer)
    try:
        case_apply_cleanup(
            case=item.case,
            cleaned_pixels=item_cleaned_pixels(item) if item.changed else None,
            record=cleanup_record(item, reviewer),
            text_regions=item.served_text_regions,
        )
    except ValidationError as error:
        raise CleanupRefused(" ".join(error.messages)) from error
    return _set_review(item, CleanupItem.Review.ACCEPTED, reviewer)


@transaction.atomic
def cleanup_item_reject(*, item: CleanupItem, reviewer: User) -> CleanupItem:
    """Reject an image's cleanup: it never reaches readers. If it was accepted before, the case goes back to its
    original's rendering (refused, changing nothing, once the case has readings)."""
    item = _locked_item(item)
    _check_reviewable(item)
    if item.case_id is not None and item.case.provenance.get("cleanup", {}).get("item") == item.pk:
        try:
            case_remove_cleanup(case=item.case)
        except ValidationError as error:
            raise CleanupRefused(" ".join(error.messages)) from error
    return _set_review(item, CleanupItem.Review.REJECTED, reviewer)


def _set_review(item: CleanupItem, review: str, reviewer: User) -> CleanupItem:
    item.review, item.reviewed_by, item.reviewed_at = review, reviewer, timezone.now()
    item.save(update_fields=["review", "reviewed_by", "reviewed_at"])
    return item


@dataclass(frozen=True)
class BulkReview:
    """What "accept all unchanged" did: how many images it accepted, and each refusal with its reason."""

    accepted: int
    refused: tuple[tuple[int, str], ...] = ()


def cleanup_job_accept_unchanged(*, job: CleanupJob, reviewer: User) -> BulkReview:
    """Accept every image of a job in which cleanup found nothing to change and that is not reviewed yet. Their
    served images stay as they are; their provenance records that they went through cleanup, which is what the
    treated-alike check of the blinding audit compares between the classes."""
    accepted, refused = 0, []
    pending = job.items.filter(
        status=CleanupItem.Status.DONE, changed=False, review=CleanupItem.Review.PENDING
    ).order_by("position")
    for item in pending:
        try:
            cleanup_item_accept(item=item, reviewer=reviewer)
        except CleanupRefused as refusal:
            refused.append((item.position, refusal.message))
        else:
            accepted += 1
    return BulkReview(accepted=accepted, refused=tuple(refused))


# --- generated images on their way into a study -------------------------------------------------------------------


def batch_image_for_study(*, image: BatchImage, data: bytes) -> StudyImage:
    """The file a generated image enters a study as, given its latest text cleanup (`data` is its PNG).

    No cleanup: the image as generated. Accepted: the cleaned image, 8-bit like every generated PNG (so the
    original's format tells nothing; outside the mask the pixels are the generated ones exactly), with the cleanup
    in `provenance["cleanup"]`. Rejected, not reviewed yet, or failed: refused with the reason, so that an image
    whose cleanup was asked for never enters a study uncleaned.
    """
    provenance = dict(image.provenance)
    item = (
        CleanupItem.objects.filter(batch_image=image, job__mode=CleanupJob.Mode.CLEAN)
        .select_related("job", "reviewed_by")
        .order_by("-job__created_at", "-pk")
        .first()
    )
    if item is None:
        return StudyImage(data=data, provenance=provenance)
    job = f"cleanup job #{item.job_id}"
    if item.status == CleanupItem.Status.FAILED:
        return StudyImage(refusal=f"Its text cleanup failed ({job}: {item.error}); clean the batch again.")
    if item.status == CleanupItem.Status.PENDING or item.review == CleanupItem.Review.PENDING:
        return StudyImage(refusal=f"Its text cleanup is not reviewed yet ({job}).")
    if item.review == CleanupItem.Review.REJECTED:
        return StudyImage(refusal=f"Its text cleanup was rejected in review ({job}).")
    record = cleanup_record(item, item.reviewed_by)
    record["accepted_at"] = item.reviewed_at.isoformat()
    if item.changed:
        data = encode_png_gray8(to_uint8(item_cleaned_pixels(item)))
    return StudyImage(data=data, provenance={**provenance, "cleanup": record})

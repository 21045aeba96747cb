"""Shared rules for background jobs that process one database row per image (generation batches, cleanup jobs)."""

from __future__ import annotations

from django.db import models, transaction
from django.db.models import QuerySet
from django.utils import timezone

PENDING, DONE, FAILED = "pending", "done", "failed"


def finished_outcome(items: QuerySet, *, order_by: str, total: int) -> tuple[str, str] | None:
    """The (status, error) a job ends with once none of its `items` is pending, or None while some still are.

    A job is done when at least one image was made (or it had none to make); when every image failed, it failed,
    and its error quotes the first failure in job order (`order_by`).
    """
    if items.filter(status=PENDING).exists():
        return None
    if items.filter(status=DONE).exists() or not total:
        return DONE, ""
    first = items.filter(status=FAILED).order_by(order_by).first()
    return FAILED, f"Every image failed; the first with: {first.error}" if first else "Every image failed."


def job_finish_if_done(model: type[models.Model], pk: int, *, items: str, order_by: str) -> models.Model:
    """Lock a running job (a `model` row with status, error, finished_at and total) and end it once none of its
    `items` (the related name of its image rows) is pending. Images still pending here are locked by another
    worker, and that worker finishes the job. Returns the job as it now is."""
    with transaction.atomic():
        job = model.objects.select_for_update().get(pk=pk)
        if job.status != model.Status.RUNNING:
            return job
        outcome = finished_outcome(getattr(job, items).all(), order_by=order_by, total=job.total)
        if outcome is None:
            return job
        job.finished_at = timezone.now()
        job.status, error = outcome
        job.error = error or job.error
        job.save(update_fields=["status", "error", "finished_at"])
        return job

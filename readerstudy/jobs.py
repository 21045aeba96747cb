"""Shared rules for background jobs that process one database row per image (generation batches, cleanup jobs)."""

from __future__ import annotations

from django.db.models import QuerySet

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

"""Reads for cleanup jobs: progress, the images of a study a coordinator chose, the review queue and its boxes."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from cleanup.models import CleanupItem, CleanupJob
from jobs.runner import stale_after
from readerstudy.models import Case, Study

_DONE = Q(items__status=CleanupItem.Status.DONE)


@dataclass(frozen=True)
class JobProgress:
    """How far a job has got, and what it found and what reviewers decided."""

    total: int
    done: int
    failed: int
    cleaned: int
    unchanged: int
    with_text: int
    accepted: int
    rejected: int

    @property
    def processed(self) -> int:
        return self.done + self.failed

    @property
    def pending(self) -> int:
        return self.total - self.processed

    @property
    def percent(self) -> int:
        return round(100 * self.processed / self.total) if self.total else 0

    @property
    def reviewed(self) -> int:
        return self.accepted + self.rejected

    @property
    def to_review(self) -> int:
        return self.done - self.reviewed


def job_progress(*, job: CleanupJob) -> JobProgress:
    done = Q(status=CleanupItem.Status.DONE)
    counts = job.items.aggregate(
        done=Count("id", filter=done),
        failed=Count("id", filter=Q(status=CleanupItem.Status.FAILED)),
        cleaned=Count("id", filter=done & Q(changed=True)),
        unchanged=Count("id", filter=done & Q(changed=False)),
        with_text=Count("id", filter=done & Q(text_regions__gt=0)),
        accepted=Count("id", filter=done & Q(review=CleanupItem.Review.ACCEPTED)),
        rejected=Count("id", filter=done & Q(review=CleanupItem.Review.REJECTED)),
    )
    return JobProgress(total=job.total, **counts)


def job_list(*, study: Study | None = None) -> QuerySet[CleanupJob]:
    """Jobs, newest first, with their done and failed counts (one query)."""
    jobs = CleanupJob.objects.select_related("study", "batch", "created_by")
    if study is not None:
        jobs = jobs.filter(study=study)
    return jobs.annotate(
        done=Count("items", filter=_DONE),
        failed=Count("items", filter=Q(items__status=CleanupItem.Status.FAILED)),
        cleaned=Count("items", filter=_DONE & Q(items__changed=True)),
    ).order_by("-created_at")


def job_is_stalled(*, job: CleanupJob) -> bool:
    """Running, but its worker has not reported for longer than JOB_STALE_AFTER_SECONDS (it is sent to a worker
    again then, `jobs.runner.requeue_stale`)."""
    if job.status != CleanupJob.Status.RUNNING:
        return False
    last = job.heartbeat_at or job.started_at
    return last is not None and timezone.now() - last > stale_after()


def study_cases_for_scope(*, study: Study, scope: str, case_ids: Iterable[int] = ()) -> list[Case]:
    """The cases of `study` a job's scope names: all, one class (practice cases included), or those selected."""
    cases = study.cases.order_by("id")
    if scope == CleanupJob.Scope.REAL:
        cases = cases.filter(truth=Case.Truth.REAL)
    elif scope == CleanupJob.Scope.SYNTHETIC:
        cases = cases.filter(truth=Case.Truth.SYNTHETIC)
    elif scope == CleanupJob.Scope.SELECTED:
        cases = cases.filter(pk__in=list(case_ids))
    elif scope != CleanupJob.Scope.ALL:
        raise ValueError(f"Unknown scope {scope!r}.")
    return list(cases)


def job_items(*, job: CleanupJob) -> QuerySet[CleanupItem]:
    return job.items.select_related("case", "batch_image", "reviewed_by").order_by("position")


def review_queue(*, job: CleanupJob) -> list[CleanupItem]:
    """The images a reviewer goes through: cleaned ones first (they need a look), then those left unchanged."""
    items = job.items.filter(status=CleanupItem.Status.DONE).select_related("case", "batch_image")
    return sorted(items, key=lambda item: (not item.changed, item.position))


@dataclass(frozen=True)
class ReviewPlace:
    """Where an item sits in its job's review queue, and where the keys lead from it."""

    item: CleanupItem
    index: int
    queue: tuple[CleanupItem, ...]

    @property
    def number(self) -> int:
        return self.index + 1

    @property
    def previous(self) -> CleanupItem | None:
        return self.queue[self.index - 1] if self.index > 0 else None

    @property
    def next(self) -> CleanupItem | None:
        return self.queue[self.index + 1] if self.index + 1 < len(self.queue) else None

    @property
    def next_to_review(self) -> CleanupItem | None:
        """The next undecided item after this one, wrapping round to the start; None when all are decided."""
        rotated = self.queue[self.index + 1 :] + self.queue[: self.index]
        return next((item for item in rotated if item.review == CleanupItem.Review.PENDING), None)


def review_place(*, job: CleanupJob, item_pk: int | None = None) -> ReviewPlace | None:
    """The requested item of the review queue, or else the first undecided one, or else the first; None when the
    job has no image to review."""
    queue = tuple(review_queue(job=job))
    if not queue:
        return None
    index = next((i for i, item in enumerate(queue) if item.pk == item_pk), None)
    if index is None:
        index = next((i for i, item in enumerate(queue) if item.review == CleanupItem.Review.PENDING), 0)
    return ReviewPlace(item=queue[index], index=index, queue=queue)


@dataclass(frozen=True)
class BoxView:
    """A detected box as the review page draws it: position and size in percent of the image, with its text."""

    number: int
    left: float
    top: float
    width: float
    height: float
    text: str
    source: str
    score: float
    residual: bool = False


def item_boxes(*, item: CleanupItem) -> list[BoxView]:
    """Boxes found on the original (and, marked residual, still found after cleaning), for drawing and listing."""
    result = item.result or {}
    size = result.get("mask") or {}
    width, height = size.get("width") or 1, size.get("height") or 1
    views = []
    for residual, key in ((False, "boxes"), (True, "residual")):
        for box in result.get(key, []):
            views.append(
                BoxView(
                    number=len(views) + 1,
                    left=100 * box["x"] / width,
                    top=100 * box["y"] / height,
                    width=100 * box["w"] / width,
                    height=100 * box["h"] / height,
                    text=box.get("text") or "",
                    source=box.get("source", ""),
                    score=box.get("score", 0.0),
                    residual=residual,
                )
            )
    return views

"""The one job runner: queue a job after its row commits, begin a run, beat, fail, end, and re-queue stale jobs.

Every kind of background job (`jobs.models.BackgroundJob` subclasses: generation batches, cleanup jobs, folder
imports) goes through these functions, so they behave alike:

    web request                         worker (Celery, acks late)                  beat / worker start
    -----------                         --------------------------                  -------------------
    create the row, enqueue_on_commit   run_begin: QUEUED/stale RUNNING -> RUNNING   requeue_stale:
      broker down? stays QUEUED with      (a live worker already on it: skip;         RUNNING, no heartbeat
      "Not sent to a worker yet: ..."      too many runs: FAILED)                      for JOB_STALE_AFTER_SECONDS
                                        Heartbeat thread while it works               -> sent again;
                                        ... items, idempotent ...                     QUEUED and never sent
                                        job_finish_if_done / job_fail                  -> sent now
                                          -> DONE / FAILED (or CANCELLED by a user)

A task is idempotent: a second delivery finds the job finished, or run by a live worker, and does nothing; a run
that takes over from a dead worker only does what is still pending.
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
from datetime import timedelta

from django.apps import apps
from django.conf import settings
from django.db import DatabaseError, connections, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from jobs.models import NOT_SENT, BackgroundJob

logger = logging.getLogger(__name__)

MAX_RUNS = 5
PENDING, DONE, FAILED = "pending", "done", "failed"  # the statuses of a job's per-image rows


def job_models() -> list[type[BackgroundJob]]:
    """Every concrete kind of background job installed."""
    return [model for model in apps.get_models() if issubclass(model, BackgroundJob)]


def describe(error: BaseException) -> str:
    """An exception as one line for a job's or an item's error."""
    text = str(getattr(error, "message", "") or error).strip()
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


# --- queueing ----------------------------------------------------------------------------------------------------


def enqueue_on_commit(job: BackgroundJob) -> None:
    """Send the job's task once the transaction that created (or resumed) it commits."""
    model, pk = type(job), job.pk
    transaction.on_commit(lambda: send_to_worker(model, pk))


def send_to_worker(model: type[BackgroundJob], pk: int, *, countdown: float | None = None) -> bool:
    """Queue the job's task by name (after `countdown` seconds, if given). When the broker cannot be reached the job
    stays queued with the reason, and `requeue_stale` sends it once a worker starts, instead of the request failing
    after the job exists."""
    kwargs = {model.task_pk_argument: pk}
    try:
        task = job_task(model)
        if countdown is None:
            task.delay(**kwargs)
        else:
            task.apply_async(kwargs=kwargs, countdown=countdown)
    except Exception as error:
        logger.exception("%s %s could not be sent to the task queue.", model.job_noun.capitalize(), pk)
        model.objects.filter(pk=pk, status=model.Status.QUEUED).update(
            error=f"{NOT_SENT} ({describe(error)}). It is sent when a worker starts."
        )
        return False
    return True


def job_task(model: type[BackgroundJob]):
    """The Celery task that runs `model`'s jobs, by name. Web processes do not autodiscover task modules (workers
    do), so the module named by the task is imported here when it is not registered yet."""
    from celery import current_app

    if model.task_name not in current_app.tasks:
        importlib.import_module(model.task_name.rsplit(".", 1)[0])
    return current_app.tasks[model.task_name]


# --- running (in a worker) ---------------------------------------------------------------------------------------


def stale_after() -> timedelta:
    return timedelta(seconds=settings.JOB_STALE_AFTER_SECONDS)


def run_begin(model: type[BackgroundJob], pk: int, *, worker: str, shared: bool = False) -> BackgroundJob | None:
    """Mark the job running and log the run; None when there is nothing to do: the job is finished, another worker
    is on it and alive (unless the job is `shared`: its items are claimed one by one, so workers can share it), or
    it was started MAX_RUNS times already (then it fails, saying so)."""
    with transaction.atomic():
        job = model.objects.select_for_update().get(pk=pk)
        if job.is_finished:
            return None
        now = timezone.now()
        alive = job.heartbeat_at is not None and now - job.heartbeat_at < stale_after()
        if job.status == model.Status.RUNNING and alive and not shared:
            logger.info("%s %s is being run by a live worker; this message is not needed.", model.job_noun, pk)
            return None
        if job.runs >= MAX_RUNS:
            job.status, job.finished_at = model.Status.FAILED, now
            job.error = (
                f"The {model.job_noun} was started {job.runs} times and its worker stopped each time before "
                "finishing; see the worker logs (out of memory?)."
            )
            job.save(update_fields=["status", "finished_at", "error"])
            return None
        job.status, job.error = model.Status.RUNNING, ""
        job.started_at = job.started_at or now
        job.heartbeat_at = now
        job.runs += 1
        job.run_log = [*job.run_log, {"worker": worker, "pid": os.getpid(), "started_at": now.isoformat()}]
        job.save(update_fields=["status", "error", "started_at", "heartbeat_at", "runs", "run_log"])
        return job


class Heartbeat:
    """Records a job's heartbeat from a background thread while a worker runs it, so that a dead worker is told
    apart from a slow image (`requeue_stale`)."""

    def __init__(self, job: BackgroundJob, interval: float | None = None) -> None:
        self.model, self.pk = type(job), job.pk
        self.interval = max(0.1, settings.JOB_HEARTBEAT_SECONDS if interval is None else interval)
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._beat, name=f"{self.model.job_noun}-{self.pk}-heartbeat", daemon=True
        )

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()

    def _beat(self) -> None:
        try:
            while not self._stop.wait(self.interval):
                try:
                    self.model.objects.filter(pk=self.pk, status=self.model.Status.RUNNING).update(
                        heartbeat_at=timezone.now()
                    )
                except DatabaseError:  # a busy SQLite file or a dropped connection: try again next beat
                    logger.warning("%s %s: heartbeat not recorded.", self.model.job_noun, self.pk, exc_info=True)
        finally:
            connections.close_all()  # this thread's own connections


def job_fail(
    model: type[BackgroundJob], pk: int, message: str, *, statuses: tuple[str, ...] | None = None
) -> BackgroundJob:
    """End the job as failed with `message`, if it is in one of `statuses` (default: running)."""
    statuses = statuses or (model.Status.RUNNING,)
    with transaction.atomic():
        job = model.objects.select_for_update().get(pk=pk)
        if job.status in statuses:
            job.status, job.error, job.finished_at = model.Status.FAILED, message, timezone.now()
            job.save(update_fields=["status", "error", "finished_at"])
        return job


def job_finish(model: type[BackgroundJob], pk: int, *, error: str = "") -> BackgroundJob:
    """End a running job as done (a job without per-image rows, such as an import, once its last file is in)."""
    with transaction.atomic():
        job = model.objects.select_for_update().get(pk=pk)
        if job.status == model.Status.RUNNING:
            job.status, job.finished_at = model.Status.DONE, timezone.now()
            job.error = error or job.error
            job.save(update_fields=["status", "error", "finished_at"])
        return job


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


def job_finish_if_done(model: type[BackgroundJob], pk: int) -> BackgroundJob:
    """Lock a running job and end it once none of its items (`model.item_relation`) is pending. Items still
    pending here are locked by another worker, and that worker finishes the job. Returns the job as it now is."""
    with transaction.atomic():
        job = model.objects.select_for_update().get(pk=pk)
        if job.status != model.Status.RUNNING:
            return job
        items = getattr(job, model.item_relation).all()
        outcome = finished_outcome(items, order_by=model.item_order, total=job.total)
        if outcome is None:
            return job
        job.finished_at = timezone.now()
        job.status, error = outcome
        job.error = error or job.error
        job.save(update_fields=["status", "error", "finished_at"])
        return job


# --- re-queueing (beat, worker start) ----------------------------------------------------------------------------


def requeue_stale(model: type[BackgroundJob], *, after: timedelta | None = None) -> list[int]:
    """Send running jobs whose worker went quiet (no heartbeat for `after`, by default JOB_STALE_AFTER_SECONDS) to a
    worker again, and queued jobs whose task could not be sent; returns their ids. With Redis, the message of a
    killed worker would otherwise come back only after the broker's visibility timeout (an hour)."""
    cutoff = timezone.now() - (stale_after() if after is None else after)
    quiet = Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True, started_at__lt=cutoff)
    not_just_requeued = Q(requeued_at__isnull=True) | Q(requeued_at__lt=cutoff)
    stale = quiet & not_just_requeued
    requeued = []
    for pk in model.objects.filter(stale, status=model.Status.RUNNING).values_list("pk", flat=True):
        with transaction.atomic():
            job = model.objects.select_for_update(skip_locked=True).filter(stale, pk=pk, status="running").first()
            if job is None:
                continue
            job.requeued_at = timezone.now()
            job.save(update_fields=["requeued_at"])
            transaction.on_commit(lambda pk=pk: send_to_worker(model, pk))
            requeued.append(pk)
            logger.warning("%s %s: its worker went quiet; sent to a worker again.", model.job_noun.capitalize(), pk)
    unsent = model.objects.filter(status=model.Status.QUEUED, error__startswith=NOT_SENT)
    for pk in unsent.values_list("pk", flat=True):
        if model.objects.filter(pk=pk, error__startswith=NOT_SENT).update(error="") and send_to_worker(model, pk):
            requeued.append(pk)
    return requeued


def requeue_all_stale() -> dict[str, list[int]]:
    """`requeue_stale` for every kind of job: {model label: re-queued ids}, only kinds with any."""
    found = {}
    for model in job_models():
        requeued = requeue_stale(model)
        if requeued:
            found[model._meta.label] = requeued
    return found

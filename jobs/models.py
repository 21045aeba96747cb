"""The abstract background job: the state every long task of the site keeps in the database.

Generation batches, cleanup jobs and folder imports (and training runs, evaluations) are rows of a concrete
subclass. A job is queued, run by a Celery worker that records a heartbeat while it works, and ends done,
cancelled or failed; a job whose worker died is sent to a worker again (`jobs.runner`). This app sits at the bottom
of the Django layers: it imports no other app of the project.
"""

from __future__ import annotations

from typing import ClassVar

from django.db import models

# The start of a queued job's `error` while its task could not be sent (the broker was down).
NOT_SENT = "Not sent to a worker yet: the task queue could not be reached"


class BackgroundJob(models.Model):
    """State, progress and run history of one background job (abstract).

    Subclasses name the Celery task that runs them (`task_name`, called with `task_pk_argument`=pk) and the
    related name of their per-image rows when they have any (`item_relation`, `item_order`) so the runner can end
    them when no item is pending.
    """

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        CANCELLED = "cancelled", "Cancelled"
        FAILED = "failed", "Failed"

    FINISHED = (Status.DONE, Status.CANCELLED, Status.FAILED)

    task_name: ClassVar[str] = ""
    task_pk_argument: ClassVar[str] = "job_pk"
    item_relation: ClassVar[str] = ""
    item_order: ClassVar[str] = "pk"
    # Shown in logs and messages: "generation batch 12", "folder import 3".
    job_noun: ClassVar[str] = "job"

    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    total = models.PositiveIntegerField(default=0, help_text="Number of images (or files) the job works through.")
    error = models.TextField(
        blank=True,
        help_text="Why the job as a whole failed, or why it waits for a worker (per-image errors are on its rows).",
    )
    runs = models.PositiveSmallIntegerField(default=0, help_text="How many times a worker started or resumed the job.")
    run_log = models.JSONField(default=list, blank=True, help_text="One entry per run: worker, process, start time.")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(
        null=True, blank=True, help_text="When the job's worker last reported that it is alive."
    )
    requeued_at = models.DateTimeField(
        null=True, blank=True, help_text="When the job was last sent to a worker again after its worker went quiet."
    )
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED

    @property
    def is_waiting_for_worker(self) -> bool:
        return self.status == self.Status.QUEUED and self.error.startswith(NOT_SENT)

"""The one periodic task of background jobs: re-queue every kind of job whose worker died (celery beat)."""

from celery import shared_task

from jobs import runner


@shared_task(acks_late=True)
def requeue_stale_jobs() -> dict[str, list[int]]:
    """Send running jobs of every kind whose worker went quiet, and queued jobs never sent, to a worker."""
    return runner.requeue_all_stale()

"""Celery tasks of generation batches (routed to the `gpu` queue): thin wrappers over `generation.services`."""

from celery import shared_task

from generation import services


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True)
def run_batch(self, *, batch_pk: int) -> str:
    """Generate a batch's pending images (see `services.batch_run`); running it again resumes where it stopped."""
    return services.batch_run(batch_pk=batch_pk, worker=self.request.hostname or "").status


@shared_task(acks_late=True)
def requeue_stale_batches() -> list[int]:
    """Send running batches whose worker went quiet to a worker again (scheduled by celery beat)."""
    return services.batches_requeue_stale()

"""Celery tasks of generation batches (routed to the `gpu` queue): thin wrappers over `generation.worker`."""

from celery import shared_task

from generation import worker


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True)
def run_batch(self, *, batch_pk: int) -> str:
    """Generate a batch's pending images (see `worker.batch_run`); running it again resumes where it stopped."""
    return worker.batch_run(batch_pk=batch_pk, worker=self.request.hostname or "").status

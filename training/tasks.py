"""Celery tasks of training runs (routed to the `gpu` queue): thin wrappers over `training.worker`."""

from celery import shared_task

from training import worker


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True)
def run_training(self, *, run_pk: int) -> str:
    """Train a run's LoRA (see `worker.run_training`); running it again resumes from the last checkpoint."""
    return worker.run_training(run_pk=run_pk, worker=self.request.hostname or "").status

"""Celery tasks of text cleanup (routed to the `gpu` queue): thin wrappers over `cleanup.worker`."""

from celery import shared_task

from cleanup import worker


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True)
def run_cleanup_job(self, *, job_pk: int) -> str:
    """Clean or check a job's pending images (see `worker.cleanup_job_run`); running it again resumes the job."""
    return worker.cleanup_job_run(job_pk=job_pk, worker=self.request.hostname or "").status

"""Celery tasks of text cleanup (routed to the `gpu` queue): thin wrappers over `cleanup.services`."""

from celery import shared_task

from cleanup import services


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True)
def run_cleanup_job(self, *, job_pk: int) -> str:
    """Clean or check a job's pending images (see `services.cleanup_job_run`); running it again resumes the job."""
    return services.cleanup_job_run(job_pk=job_pk, worker=self.request.hostname or "").status


@shared_task
def requeue_stale_jobs() -> list[int]:
    """Periodic (celery beat): jobs whose worker went quiet go to a worker again."""
    return services.cleanup_jobs_requeue_stale()

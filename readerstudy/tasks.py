"""Celery tasks of the study domain: thin wrappers over services, keyword-only primary keys, idempotent."""

from celery import shared_task

from readerstudy import services


@shared_task(acks_late=True, reject_on_worker_lost=True)
def import_folder(*, job_pk: int) -> str:
    """Import a folder into a study (see `services.import_job_run`); re-running it finishes an interrupted job."""
    return services.import_job_run(job_pk=job_pk).status

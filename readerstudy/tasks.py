"""Celery tasks of the study domain: thin wrappers over the domain's functions, keyword-only primary keys,
idempotent."""

from celery import shared_task

from readerstudy import imports


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True)
def import_folder(self, *, job_pk: int) -> str:
    """Import a folder into a study (see `imports.import_job_run`); re-running it finishes an interrupted job."""
    return imports.import_job_run(job_pk=job_pk, worker=self.request.hostname or "").status

"""Cleanup jobs run by real Celery workers (subprocesses on the `gpu` queue, Redis broker, this PostgreSQL
database): progress in the database, a failing image recorded while the others go on, and a worker killed mid-job
whose job a second worker finishes without doing any image twice or leaving one out."""

from __future__ import annotations

import signal

import pytest
from django.core.files.storage import default_storage

from cleanup.models import CleanupItem, CleanupJob
from cleanup.ocr import tesseract_available
from cleanup.pipeline import CleanupConfig
from cleanup.services import cleanup_job_resume, cleanup_job_start
from tests.cleanup.helpers import stored_bytes
from tests.conftest import wait_until
from tests.factories import PhantomStudyFactory

pytestmark = [
    pytest.mark.worker,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not tesseract_available(), reason="Debian's tesseract is not installed"),
]


def finished(job_pk: int) -> CleanupJob | None:
    return CleanupJob.objects.filter(pk=job_pk, status__in=CleanupJob.FINISHED).first()


def test_a_worker_cleans_and_checks_a_study_and_records_a_failing_image(celery_worker_process, coordinator):
    study = PhantomStudyFactory(
        created_by=coordinator, cases=[("synthetic", "PORTABLE"), ("real", None), ("real", "AP")]
    )
    broken = study.cases.order_by("id").last()
    default_storage.delete(broken.original.name)  # its original is lost: that image must fail alone
    celery_worker_process(queues="gpu")  # cleanup tasks are routed to the gpu queue
    clean = cleanup_job_start(created_by=coordinator, study=study, cases=list(study.cases.order_by("id")))
    check = cleanup_job_start(created_by=coordinator, study=study, cases=list(study.cases.all()), mode="check")

    clean = wait_until(lambda: finished(clean.pk), timeout=90, what="the worker to finish the cleaning job")
    assert (
        clean.status == CleanupJob.Status.DONE and clean.runs == 1 and clean.run_log[0]["worker"].startswith("test0@")
    )
    outcomes = [item.outcome for item in clean.items.order_by("position")]
    assert outcomes == ["cleaned", "unchanged", "failed"]
    assert "FileNotFoundError" in clean.items.get(case=broken).error

    check = wait_until(lambda: finished(check.pk), timeout=60, what="the worker to finish the text check")
    assert check.status == CleanupJob.Status.DONE
    counts = {case.label: case.served_features.get("text_regions") for case in study.cases.all()}
    assert counts == {"synthetic-0.png": 1.0, "real-1.png": 0.0, "real-2.png": 1.0}  # the served images are intact


def test_a_worker_killed_mid_job_leaves_no_duplicate_and_no_gap(celery_worker_process, coordinator):
    # 512 px images with verification: about a second each here, so the worker can be killed part-way.
    study = PhantomStudyFactory(created_by=coordinator, cases=[("real", "PORTABLE"), ("synthetic", None)] * 3, size=512)
    job = cleanup_job_start(
        created_by=coordinator, study=study, cases=list(study.cases.order_by("id")), config=CleanupConfig()
    )
    first = celery_worker_process(queues="gpu")
    wait_until(
        lambda: job.items.filter(status=CleanupItem.Status.DONE).count() >= 2,
        timeout=90,
        interval=0.05,
        what="two images to be done",
    )
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)

    job.refresh_from_db()
    done_before = dict(job.items.filter(status="done").values_list("pk", "finished_at"))
    assert job.status == CleanupJob.Status.RUNNING and 2 <= len(done_before) < 6
    assert job.items.filter(status="pending").count() == 6 - len(done_before)

    # The killed worker's message stays unacknowledged (Redis gives it back only after an hour): resume sends the
    # job to a worker again, and a new worker finishes it.
    cleanup_job_resume(job=job)
    celery_worker_process(queues="gpu")
    job = wait_until(lambda: finished(job.pk), timeout=90, what="the second worker to finish the job")
    assert job.status == CleanupJob.Status.DONE and job.runs == 2
    items = list(job.items.order_by("position"))
    assert len(items) == 6 and len({item.case_id for item in items}) == 6
    assert all(item.status == CleanupItem.Status.DONE for item in items)
    for item in items:
        if item.pk in done_before:
            assert item.finished_at == done_before[item.pk]  # not done again
        if item.changed:  # each file once, under its own name
            names = default_storage.listdir(f"cleanup/job-{job.pk}/item-{item.pk}")[1]
            assert sorted(names) == ["after.png", "before.png", "cleaned.png", "mask-overlay.png", "mask.png"]
            assert stored_bytes(item.mask).startswith(b"\x89PNG")
    assert [item.changed for item in items] == [True, False] * 3

"""One job machinery for every kind of background job: a broker that is down at submit leaves the job waiting
with the reason (never a 500), and it is sent once a worker starts; a run begins once per live worker; a stale job
of any kind is sent again; the three kinds share these functions."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone
from kombu.exceptions import OperationalError

from cleanup.models import CleanupJob
from generation.models import GenerationBatch
from jobs import runner
from jobs.models import NOT_SENT, BackgroundJob
from readerstudy.models import ImportJob
from tests.cleanup.helpers import form_defaults
from tests.conftest import png_bytes


@pytest.fixture
def broker_down(monkeypatch):
    """Every task's `delay` fails as it does when Redis refuses the connection; returns what was sent later."""
    sent: list[tuple[str, dict]] = []
    state = {"down": True}

    def delay_for(name):
        def delay(**kwargs):
            if state["down"]:
                raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
            sent.append((name, kwargs))

        return delay

    for model in runner.job_models():
        monkeypatch.setattr(runner.job_task(model), "delay", delay_for(model.task_name))

    def back_up():
        state["down"] = False
        return sent

    return back_up


@pytest.fixture
def image_folder(tmp_path, settings):
    folder = tmp_path / "incoming"
    folder.mkdir()
    for i in range(3):
        (folder / f"img-{i}.png").write_bytes(png_bytes(9100 + i))
    settings.IMPORT_ROOTS = [tmp_path.resolve()]
    return folder


def test_every_kind_of_job_is_one_background_job():
    assert set(runner.job_models()) >= {GenerationBatch, CleanupJob, ImportJob}
    for model in (GenerationBatch, CleanupJob, ImportJob):
        assert issubclass(model, BackgroundJob) and model.task_name
        assert model.task_name.split(".")[0] == model._meta.app_label


def test_a_folder_import_submitted_while_the_broker_is_down_waits_and_is_sent_when_a_worker_starts(
    client, coordinator, study, image_folder, broker_down, django_capture_on_commit_callbacks
):
    client.force_login(coordinator)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("case_import_folder", args=[study.pk]), {"folder": str(image_folder), "truth": "real"}
        )
    assert response.status_code == 302  # not a 500 after the job row was committed
    job = ImportJob.objects.get()
    assert job.status == "queued" and job.error.startswith(NOT_SENT) and "Connection refused" in job.error
    assert job.is_waiting_for_worker
    page = client.get(response["Location"]).content.decode()
    assert "Waiting for a worker" in page

    sent = broker_down()
    assert runner.requeue_all_stale() == {"readerstudy.ImportJob": [job.pk]}  # what a starting worker calls
    assert sent == [("readerstudy.tasks.import_folder", {"job_pk": job.pk})]
    job.refresh_from_db()
    assert job.error == "" and not job.is_waiting_for_worker
    assert runner.requeue_all_stale() == {}  # sent once


def test_a_cleanup_job_submitted_while_the_broker_is_down_waits_and_is_sent_when_a_worker_starts(
    client, coordinator, make_study, broker_down, django_capture_on_commit_callbacks
):
    study = make_study(real=2, synthetic=1, status="draft")
    client.force_login(coordinator)
    form = {**form_defaults(), "mode": "check", "detector": "glyphs+bars"}
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("cleanup:job_new", args=[study.pk]), form)
    assert response.status_code == 302, response.content.decode()[:2000]
    job = CleanupJob.objects.get()
    assert job.status == "queued" and job.error.startswith(NOT_SENT)
    sent = broker_down()
    assert runner.requeue_all_stale() == {"cleanup.CleanupJob": [job.pk]}
    assert sent == [("cleanup.tasks.run_cleanup_job", {"job_pk": job.pk})]


def test_a_stale_running_import_is_sent_again_once_and_a_fresh_one_is_left_alone(
    coordinator, study, image_folder, django_capture_on_commit_callbacks, settings
):
    from readerstudy.imports import import_job_start

    settings.JOB_STALE_AFTER_SECONDS = 60
    with django_capture_on_commit_callbacks(execute=False):
        quiet = import_job_start(study=study, created_by=coordinator, folder=image_folder, truth="real")
        alive = import_job_start(study=study, created_by=coordinator, folder=image_folder, truth="real")
    long_ago = timezone.now() - timedelta(minutes=5)
    ImportJob.objects.filter(pk=quiet.pk).update(status="running", started_at=long_ago, heartbeat_at=long_ago)
    ImportJob.objects.filter(pk=alive.pk).update(status="running", started_at=long_ago, heartbeat_at=timezone.now())
    with django_capture_on_commit_callbacks(execute=False) as sent:
        assert runner.requeue_stale(ImportJob) == [quiet.pk]
    assert len(sent) == 1
    with django_capture_on_commit_callbacks(execute=False) as sent_again:
        assert runner.requeue_stale(ImportJob) == []
    assert not sent_again


def test_a_second_delivery_while_a_live_worker_runs_the_import_does_nothing(
    coordinator, study, image_folder, django_capture_on_commit_callbacks
):
    from readerstudy.imports import import_job_run, import_job_start

    with django_capture_on_commit_callbacks(execute=False):
        job = import_job_start(study=study, created_by=coordinator, folder=image_folder, truth="real")
    ImportJob.objects.filter(pk=job.pk).update(status="running", runs=1, heartbeat_at=timezone.now())
    again = import_job_run(job_pk=job.pk)
    assert again.status == "running" and again.runs == 1 and again.report == []
    # A shared job (cleanup items are claimed one by one) may be joined by a second worker instead.
    assert runner.run_begin(ImportJob, job.pk, worker="w2", shared=True).runs == 2


def test_a_job_whose_workers_keep_dying_fails_instead_of_looping(
    coordinator, study, image_folder, django_capture_on_commit_callbacks
):
    from readerstudy.imports import import_job_run, import_job_start

    with django_capture_on_commit_callbacks(execute=False):
        job = import_job_start(study=study, created_by=coordinator, folder=image_folder, truth="real")
    ImportJob.objects.filter(pk=job.pk).update(status="running", runs=runner.MAX_RUNS)
    job = import_job_run(job_pk=job.pk)
    assert job.status == "failed" and f"started {runner.MAX_RUNS} times" in job.error

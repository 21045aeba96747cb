"""Folder imports run by a real Celery worker over Redis, against PostgreSQL, with progress in the database."""

import shutil

import pytest
from django.urls import reverse

from readerstudy.imports import import_job_run, import_job_start
from readerstudy.models import Case, ImportJob
from readerstudy.services import reader_assign
from tests.conftest import png_bytes, wait_until


@pytest.fixture
def image_folder(tmp_path):
    folder = tmp_path / "incoming"
    (folder / "sub").mkdir(parents=True)
    for i in range(5):
        (folder / f"img-{i}.png").write_bytes(png_bytes(7000 + i))
    (folder / "sub" / "nested.png").write_bytes(png_bytes(7100))
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (folder / ".hidden.png").write_bytes(png_bytes(7200))
    return folder


@pytest.mark.worker
def test_a_real_worker_imports_a_folder_and_records_progress(
    celery_worker_process, make_study, reader, image_folder, coordinator, settings
):
    study = make_study(real=1, synthetic=1)
    session = reader_assign(study=study, reader=reader)
    celery_worker_process()
    job = import_job_start(study=study, created_by=coordinator, folder=image_folder, truth="synthetic", generator="g1")
    job = wait_until(
        lambda: ImportJob.objects.filter(pk=job.pk, status=ImportJob.Status.DONE).first(),
        timeout=90,
        what="the worker to finish the import",
    )
    statuses = {row["name"]: row["status"] for row in job.report}
    assert statuses == {
        "broken.png": "error",
        "img-0.png": "imported",
        "img-1.png": "imported",
        "img-2.png": "imported",
        "img-3.png": "imported",
        "img-4.png": "imported",
        "sub/nested.png": "imported",
    }
    assert study.cases.filter(truth="synthetic", generator="g1").count() == 6
    # The reader's stored order got the new cases appended.
    assert session.items.count() == study.cases.count()


def test_an_interrupted_import_resumes_without_duplicates_or_gaps(
    make_study, coordinator, image_folder, django_capture_on_commit_callbacks
):
    study = make_study(real=0, synthetic=0)
    with django_capture_on_commit_callbacks(execute=False):
        job = import_job_start(study=study, created_by=coordinator, folder=image_folder, truth="real")
    # Simulate a worker that died after importing two files but before reporting the second one.
    first_two = [image_folder / "img-0.png", image_folder / "img-1.png"]
    from readerstudy.imports import IncomingFile, cases_import

    report = cases_import(
        study=study,
        files=[IncomingFile(str(p.relative_to(image_folder)), p.read_bytes()) for p in first_two],
        truth="real",
        source="folder",
    )
    job.report = [
        {
            "name": report.rows[0].name,
            "status": "imported",
            "message": "",
            "case_id": report.rows[0].case_id,
            "notes": [],
            "flagged": False,
        }
    ]
    job.status = ImportJob.Status.RUNNING
    job.save()
    job = import_job_run(job_pk=job.pk)
    assert job.status == ImportJob.Status.DONE
    names = [row["name"] for row in job.report]
    assert len(names) == len(set(names)) == job.total == 7
    assert [row["status"] for row in job.report].count("imported") == 6
    assert Case.objects.filter(study=study).count() == 6


def test_folder_import_page_queues_a_job_and_shows_progress(
    client, coordinator, study, image_folder, settings, django_capture_on_commit_callbacks
):
    settings.IMPORT_ROOTS = [image_folder.parent.resolve()]
    client.force_login(coordinator)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.post(
            reverse("case_import_folder", args=[study.pk]), {"folder": str(image_folder), "truth": "real"}
        )
    assert response.status_code == 302 and len(callbacks) == 1
    job = ImportJob.objects.get()
    assert job.total == 7 and job.status == "queued"
    page = client.get(response["Location"])
    assert "Waiting for a worker" in page.content.decode()
    import_job_run(job_pk=job.pk)
    page = client.get(response["Location"], HTTP_HX_REQUEST="true").content.decode()
    assert "7 of 7 files" in page and "hx-trigger" not in page


def test_folders_outside_the_import_roots_are_refused(client, coordinator, study, image_folder, settings, tmp_path):
    settings.IMPORT_ROOTS = [(tmp_path / "elsewhere").resolve()]
    client.force_login(coordinator)
    response = client.post(
        reverse("case_import_folder", args=[study.pk]), {"folder": str(image_folder), "truth": "real"}
    )
    assert response.status_code == 400
    assert "allowed import root" in response.content.decode()
    assert not ImportJob.objects.exists()
    settings.IMPORT_ROOTS = [image_folder.parent.resolve()]
    shutil.rmtree(image_folder)
    response = client.post(
        reverse("case_import_folder", args=[study.pk]), {"folder": str(image_folder), "truth": "real"}
    )
    assert response.status_code == 400 and "There is no folder" in response.content.decode()

"""A folder import whose worker is killed with SIGKILL mid-import: the replacement worker takes it over within the
stale timeout (seconds, not Redis' one-hour visibility timeout) and the import finishes exactly once, with one
report row per file, each file imported once, and the readers' orders extended once.

Workers run with JOB_HEARTBEAT_SECONDS=0.5 and JOB_STALE_AFTER_SECONDS=3, so a dead worker is noticed in seconds.
"""

from __future__ import annotations

import io
import signal
import time
from datetime import timedelta

import numpy as np
import pytest
from django.utils import timezone
from PIL import Image

from readerstudy.imports import import_job_start
from readerstudy.models import Case, ImportJob
from readerstudy.services import reader_assign
from tests.conftest import wait_until

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

STALE_AFTER = 3.0
FILES = 60


@pytest.fixture
def big_folder(tmp_path):
    """FILES noise images of 1200 x 1200 (about 60 ms each to import here), and one file that is not an image."""
    folder = tmp_path / "incoming"
    folder.mkdir()
    rng = np.random.default_rng(12)
    for i in range(FILES):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (1200, 1200), dtype=np.uint8)).save(buffer, format="PNG")
        (folder / f"img-{i:03d}.png").write_bytes(buffer.getvalue())
    (folder / "notes.png").write_bytes(b"not an image at all")
    return folder


def test_a_worker_killed_mid_import_is_replaced_and_the_import_finishes_exactly_once(
    celery_worker_process, make_study, reader, coordinator, big_folder
):
    env = {"JOB_HEARTBEAT_SECONDS": "0.5", "JOB_STALE_AFTER_SECONDS": str(STALE_AFTER)}
    study = make_study(real=2, synthetic=2)
    session = reader_assign(study=study, reader=reader)
    first = celery_worker_process(queues="celery", extra_env=env)
    job = import_job_start(study=study, created_by=coordinator, folder=big_folder, truth="synthetic")
    wait_until(lambda: len(ImportJob.objects.get(pk=job.pk).report) >= 5, timeout=120, interval=0.05, what="5 files in")
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    killed_at = time.monotonic()
    job.refresh_from_db()
    assert job.status == "running" and 5 <= len(job.report) < FILES + 1, "killed mid-import"

    wait_until(
        lambda: ImportJob.objects.get(pk=job.pk).heartbeat_at < timezone.now() - timedelta(seconds=STALE_AFTER),
        timeout=30,
        what="the killed worker's heartbeat to go stale",
    )
    celery_worker_process(queues="celery", extra_env=env)  # re-queues stale jobs of every kind when it starts
    job = wait_until(
        lambda: ImportJob.objects.filter(pk=job.pk, status="done").first(), timeout=180, what="the import to finish"
    )
    assert time.monotonic() - killed_at < 120, "taken over in seconds, not after the broker's visibility timeout"

    names = [row["name"] for row in job.report]
    assert sorted(names) == sorted([f"img-{i:03d}.png" for i in range(FILES)] + ["notes.png"])
    assert len(names) == len(set(names)) == job.total == FILES + 1
    statuses = {row["name"]: row["status"] for row in job.report}
    assert statuses.pop("notes.png") == "error"
    assert set(statuses.values()) == {"imported"}
    imported = Case.objects.filter(study=study, truth="synthetic", source="folder")
    assert imported.count() == FILES  # no file imported twice
    assert {row["case_id"] for row in job.report if row["status"] == "imported"} == set(
        imported.values_list("pk", flat=True)
    )
    assert job.runs == 2 and job.run_log[0]["pid"] != job.run_log[1]["pid"]
    # The reader's stored order got every new case exactly once.
    assert session.items.filter(case__in=imported).count() == FILES

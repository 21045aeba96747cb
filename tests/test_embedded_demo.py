"""The embedded default the README's demo command uses: SQLite, a file-based Celery broker, no services.

Runs the real commands in subprocesses with no DATABASE_URL or CELERY_BROKER_URL, so nothing here touches the
PostgreSQL/Redis the rest of the suite uses.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time

import pytest

from tests.conftest import REPO_ROOT, png_bytes


@pytest.fixture
def embedded_env(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "CELERY_BROKER_URL", "MEDIA_ROOT"}}
    env.update({"VAR_DIR": str(tmp_path / "var"), "DJANGO_SETTINGS_MODULE": "config.settings"})
    return env


def manage(env, *args, timeout=180) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_demo_on_sqlite_with_phantoms_and_a_file_broker_worker(embedded_env, tmp_path):
    assert manage(embedded_env, "migrate", "-v0").returncode == 0
    demo = manage(embedded_env, "demo", "--phantoms", "3")
    assert demo.returncode == 0, demo.stderr
    assert "built-in phantoms" in demo.stdout
    for account in ("reader", "coordinator", "admin"):
        assert f"  {account} " in demo.stdout
    assert (tmp_path / "var" / "db.sqlite3").exists()

    # Running it again changes nothing and prints the accounts again.
    again = manage(embedded_env, "demo", "--phantoms", "3")
    assert again.returncode == 0 and "Demo study created" not in again.stdout

    # A worker on the file-based broker runs a background folder import queued by the web side.
    folder = tmp_path / "more"
    folder.mkdir()
    for i in range(3):
        (folder / f"extra-{i}.png").write_bytes(png_bytes(8800 + i))
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", "worker", "--pool", "solo", "--queues", "celery,gpu"],
        cwd=REPO_ROOT,
        env=embedded_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        queued = manage(
            embedded_env,
            "shell",
            "--no-imports",
            "-c",
            "from pathlib import Path; from django.contrib.auth.models import User; "
            "from readerstudy.models import Study; from readerstudy.imports import import_job_start; "
            f"job = import_job_start(study=Study.objects.get(), created_by=User.objects.get(username='coordinator'), "
            f"folder=Path({str(folder)!r}), truth='synthetic'); print(job.pk)",
        )
        assert queued.returncode == 0, queued.stderr
        database = sqlite3.connect(tmp_path / "var" / "db.sqlite3")
        deadline = time.monotonic() + 90
        status = ""
        while time.monotonic() < deadline and status != "done":
            time.sleep(0.5)
            status = database.execute("SELECT status FROM readerstudy_importjob").fetchone()[0]
        assert status == "done"
        cases = database.execute("SELECT COUNT(*) FROM readerstudy_case").fetchone()[0]
        items = database.execute(
            "SELECT COUNT(*) FROM readerstudy_sessionitem i JOIN readerstudy_readersession s ON i.session_id = s.id "
            "JOIN auth_user u ON s.reader_id = u.id WHERE u.username = 'reader'"
        ).fetchone()[0]
        # 2 practice + 3 + 3 phantoms, 3 of the 6 main cases repeated unannounced (the demo asks for 4, at most half
        # the main cases can be), then 3 cases imported by the worker and appended once each.
        assert (cases, items) == (11, 14)
        database.close()
    finally:
        worker.terminate()
        worker.wait(timeout=20)


def test_demo_from_image_folders(embedded_env, tmp_path):
    from tests.conftest import CXR_DIR

    assert manage(embedded_env, "migrate", "-v0").returncode == 0
    demo = manage(
        embedded_env,
        "demo",
        f"--real-dir={CXR_DIR / 'real' / 'nih_cxr14'}",
        f"--synthetic-dir={CXR_DIR / 'synthetic'}",
    )
    assert demo.returncode == 0, demo.stderr
    assert "image folders" in demo.stdout
    missing = manage(embedded_env, "demo", "--real-dir=/nonexistent", "--synthetic-dir=/tmp")
    assert missing.returncode != 0 and "There is no folder /nonexistent" in missing.stderr

"""Shared fixtures: role users, small image files of every format, studies with imported cases.

The suite runs against the database in DATABASE_URL (PostgreSQL in CI, through `scripts/test.sh`); media files go
to a temporary folder per test session.
"""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("SHARED_DATA_DIR", REPO_ROOT.parent / "shared" / "data"))
CXR_DIR = SHARED_DATA / "cxr"


@pytest.fixture(scope="session", autouse=True)
def _existing_static_root(tmp_path_factory):
    """WhiteNoise indexes STATIC_ROOT when its middleware starts and warns when collectstatic has not filled it;
    tests serve static files through the finders (Django's test server, pytest-django's live_server). Session-wide,
    because the live server's handler starts before any per-test setting."""
    from django.conf import settings

    settings.STATIC_ROOT = tmp_path_factory.mktemp("static-root")


@pytest.fixture(autouse=True)
def _fast_and_isolated(settings, tmp_path_factory):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.MEDIA_ROOT = tmp_path_factory.getbasetemp() / "media"
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


def png_bytes(seed: int = 0, size: tuple[int, int] = (96, 80), mode: str = "L") -> bytes:
    """A small random-texture PNG; different seeds give different files (and hashes)."""
    rng = np.random.default_rng(seed)
    height, width = size[1], size[0]
    if mode == "RGB":
        array = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    else:
        array = rng.integers(0, 256, (height, width), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(array, mode=mode).save(buffer, format="PNG")
    return buffer.getvalue()


def jpeg_bytes(seed: int = 0, size: tuple[int, int] = (64, 64)) -> bytes:
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size[1], size[0]), dtype=np.uint8), mode="L").save(buffer, "JPEG")
    return buffer.getvalue()


@pytest.fixture
def make_user(db, django_user_model):
    from readerstudy.roles import ADMIN, ensure_role_groups

    def make(username: str, role: str | None):
        groups = ensure_role_groups()
        user = django_user_model.objects.create_user(username=username, password="pw-" + username)
        if role is not None:
            user.groups.add(groups[role])
        if role == ADMIN:
            user.is_staff = True
            user.save()
        return user

    return make


@pytest.fixture
def reader(make_user):
    return make_user("reader", "reader")


@pytest.fixture
def other_reader(make_user):
    return make_user("reader_b", "reader")


@pytest.fixture
def coordinator(make_user):
    return make_user("coord", "coordinator")


@pytest.fixture
def admin_user(make_user):
    return make_user("boss", "admin")


@pytest.fixture
def make_study(coordinator):
    from readerstudy.imports import IncomingFile, cases_import
    from readerstudy.services import study_create

    def make(*, real: int = 4, synthetic: int = 4, practice: int = 0, seed_base: int = 0, **settings_values):
        status = settings_values.pop("status", "open")
        settings_values.setdefault("display_size", 512)  # the smallest policy keeps tests fast
        study = study_create(created_by=coordinator, name=settings_values.pop("name", "Study"), **settings_values)
        files = {
            "real": [IncomingFile(f"real-{i}.png", png_bytes(seed_base + i)) for i in range(real)],
            "synthetic": [
                IncomingFile(f"synthetic-{i}.png", png_bytes(seed_base + 1000 + i)) for i in range(synthetic)
            ],
        }
        if practice:
            cases_import(
                study=study,
                files=[IncomingFile(f"p-{i}.png", png_bytes(seed_base + 5000 + i)) for i in range(practice)],
                truth="real",
                is_practice=True,
            )
        for truth, batch in files.items():
            report = cases_import(
                study=study, files=batch, truth=truth, generator="gen-a" if truth == "synthetic" else ""
            )
            assert not report.errors, report.to_dict()
        if status == "open":
            open_for_reading(study, coordinator)
        return study

    return make


TEST_OPENING_REASON = "Test fixture: opened whatever the blinding audit says."


def open_for_reading(study, coordinator):
    """Open a draft study through the blinding gate, acknowledging whatever it flags (tests of the gate itself are
    in tests/readerstudy/test_blinding_gate.py)."""
    from readerstudy.services import study_update

    return study_update(
        study=study,
        changed_by=coordinator,
        status="open",
        blinding_acknowledged=True,
        blinding_reason=TEST_OPENING_REASON,
    )


@pytest.fixture
def study(make_study):
    return make_study()


@pytest.fixture
def session(study, reader):
    from readerstudy.services import reader_assign

    return reader_assign(study=study, reader=reader)


@pytest.fixture
def celery_worker_process(transactional_db, settings):
    """Start real Celery worker processes against this test database and the Redis broker.

    Yields a `start()` function returning a `subprocess.Popen` (so a test can kill a worker mid-task and start
    another); every worker still running is stopped at the end. Needs CELERY_BROKER_URL to point at Redis.
    """
    import signal
    import subprocess
    import sys
    import time

    from django.db import connection

    broker = settings.CELERY_BROKER_URL
    if not broker.startswith(("redis://", "amqp://")):
        pytest.fail("Worker tests need CELERY_BROKER_URL=redis://... (scripts/test.sh sets it).")
    _purge_queues(broker)
    database = connection.settings_dict
    database_url = (
        f"postgres://{database['USER'] or 'postgres'}@{database['HOST'] or '127.0.0.1'}:"
        f"{database['PORT'] or 5432}/{database['NAME']}"
    )
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "CELERY_BROKER_URL": broker,
        "MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "DJANGO_SETTINGS_MODULE": "config.settings",
    }
    workers: list[subprocess.Popen] = []

    def start(queues: str = "celery,gpu", extra_env: dict | None = None) -> subprocess.Popen:
        log = open(settings.MEDIA_ROOT.parent / f"worker-{len(workers)}.log", "wb")  # noqa: SIM115
        worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "config",
                "worker",
                "--pool",
                "solo",
                "--queues",
                queues,
                "--loglevel",
                "INFO",
                "--without-heartbeat",
                "--without-gossip",
                "--without-mingle",
                "--hostname",
                f"test{len(workers)}@%h",
            ],
            cwd=REPO_ROOT,
            env={**env, **(extra_env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 20
    for worker in workers:
        try:
            worker.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            worker.kill()
    _purge_queues(broker)


def _purge_queues(broker: str) -> None:
    from config.celery import app

    with app.connection_for_write(broker) as conn:
        for queue in ("celery", "gpu"):
            # A queue that does not exist yet has nothing to purge.
            with contextlib.suppress(Exception):
                conn.default_channel.queue_purge(queue)


def wait_until(predicate, *, timeout: float = 60, interval: float = 0.2, what: str = "condition"):
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"Timed out after {timeout} s waiting for {what}.")

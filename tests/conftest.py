"""Shared fixtures: role users, small image files of every format, studies with imported cases.

The suite runs against the database in DATABASE_URL (PostgreSQL in CI, through `scripts/test.sh`); media files go
to a temporary folder per test session.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("SHARED_DATA_DIR", REPO_ROOT.parent / "shared" / "data"))
CXR_DIR = SHARED_DATA / "cxr"


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
    from readerstudy.services import IncomingFile, cases_import, study_create

    def make(*, real: int = 4, synthetic: int = 4, practice: int = 0, seed_base: int = 0, **settings_values):
        settings_values.setdefault("status", "open")
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
        return study

    return make


@pytest.fixture
def study(make_study):
    return make_study()


@pytest.fixture
def session(study, reader):
    from readerstudy.services import reader_assign

    return reader_assign(study=study, reader=reader)

"""Migration 0009 re-encodes served images stored before fixed-length encoding: same pixels, one byte length."""

from __future__ import annotations

import importlib
import io

import numpy as np
from django.apps import apps
from django.core.files.base import ContentFile
from PIL import Image

from imaging.png import served_png_length

reencode = importlib.import_module("readerstudy.migrations.0009_fixed_length_served_images").reencode


def pixels_of(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("L"))


def test_old_compressed_served_files_are_reencoded_to_one_length(make_study, django_capture_on_commit_callbacks):
    study = make_study(real=3, synthetic=3)
    old = {}
    for case in study.cases.all():
        with case.image.open("rb") as handle:
            pixels = pixels_of(handle.read())
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="PNG", compress_level=9)  # as served files were before
        case.image.save("image.png", ContentFile(buffer.getvalue()), save=True)
        old[case.pk] = (case.image.name, pixels)
    assert len({case.image.size for case in study.cases.all()}) > 1

    with django_capture_on_commit_callbacks(execute=True):
        reencode(apps, None)

    storage = study.cases.first().image.storage
    for case in study.cases.all():
        with case.image.open("rb") as handle:
            data = handle.read()
        name, pixels = old[case.pk]
        assert len(data) == served_png_length(study.display_size, study.display_size)
        assert np.array_equal(pixels_of(data), pixels)
        assert case.served_features["size_bytes"] == len(data)
        assert not storage.exists(name)  # the old file is gone once the migration committed

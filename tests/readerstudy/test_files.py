"""Stored files follow their rows: deleting a case, a generated image or a cleanup item (directly or by cascade from
its study, batch or job) deletes its files once the deletion commits, and a rolled-back deletion keeps them."""

from __future__ import annotations

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction

from cleanup.models import CleanupItem, CleanupJob
from generation.models import BatchImage, GenerationBatch
from tests.conftest import png_bytes

pytestmark = pytest.mark.django_db


def stored(*fields) -> list[str]:
    names = [field.name for field in fields if field]
    assert names and all(default_storage.exists(name) for name in names)
    return names


def test_deleting_a_case_deletes_its_original_and_served_files(study, django_capture_on_commit_callbacks):
    case = study.cases.first()
    names = stored(case.original, case.image)
    with django_capture_on_commit_callbacks(execute=True):
        case.delete()
    assert not any(default_storage.exists(name) for name in names)
    other = study.cases.first()
    assert default_storage.exists(other.image.name)  # only the deleted row's files


def test_deleting_a_study_deletes_every_case_file(study, django_capture_on_commit_callbacks):
    names = [name for case in study.cases.all() for name in stored(case.original, case.image)]
    with django_capture_on_commit_callbacks(execute=True):
        study.delete()
    assert not any(default_storage.exists(name) for name in names)


def test_a_rolled_back_deletion_keeps_the_files(study, django_capture_on_commit_callbacks):
    case = study.cases.first()
    case_pk = case.pk
    names = stored(case.original, case.image)
    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        case.delete()
        raise RuntimeError("the admin's request failed after the delete")
    assert callbacks == []
    assert all(default_storage.exists(name) for name in names)
    assert study.cases.filter(pk=case_pk).exists()


def test_deleting_a_batch_deletes_its_images_and_their_cleanup_files(coordinator, django_capture_on_commit_callbacks):
    batch = GenerationBatch.objects.create(
        name="b",
        created_by=coordinator,
        base_model_dir="/models/sd",
        generator_label="sd",
        steps=2,
        guidance_scale=4.0,
        width=64,
        height=64,
        total=1,
    )
    image = BatchImage.objects.create(
        batch=batch,
        index=0,
        prompt="p",
        seed=1,
        png=default_storage.save(f"test-files/{batch.pk}/0.png", ContentFile(png_bytes(1))),
        dicom=default_storage.save(f"test-files/{batch.pk}/0.dcm", ContentFile(b"DICM")),
    )
    job = CleanupJob.objects.create(batch=batch, created_by=coordinator)
    item = CleanupItem.objects.create(
        job=job,
        position=0,
        batch_image=image,
        mask=default_storage.save(f"test-files/{batch.pk}/mask.png", ContentFile(png_bytes(2))),
        cleaned=default_storage.save(f"test-files/{batch.pk}/cleaned.png", ContentFile(png_bytes(3))),
    )
    names = stored(image.png, image.dicom, item.mask, item.cleaned)
    with django_capture_on_commit_callbacks(execute=True):
        batch.delete()
    assert not any(default_storage.exists(name) for name in names)


def test_outputs_are_stored_under_their_fixed_name_and_a_second_copy_is_never_kept(monkeypatch):
    from readerstudy.files import delete_stored, store_replacing

    name = "outputs/test-store-replacing.png"
    default_storage.save(name, ContentFile(b"left by a stopped worker"))
    assert store_replacing(name, b"new") == name
    with default_storage.open(name, "rb") as handle:
        assert handle.read() == b"new"

    # Another process wrote the same name in between: the storage picks another name; that copy is removed.
    real_save = default_storage.save
    saved_as = []

    def racing_save(target, content, *args, **kwargs):
        real_save(target, ContentFile(b"the other process"))
        saved_as.append(real_save(target, content, *args, **kwargs))
        return saved_as[-1]

    monkeypatch.setattr(default_storage, "save", racing_save)
    default_storage.delete(name)
    with pytest.raises(RuntimeError, match="another process is writing these files"):
        store_replacing(name, b"mine")
    assert saved_as[0] != name and not default_storage.exists(saved_as[0])
    monkeypatch.undo()
    delete_stored([name, ""])
    assert not default_storage.exists(name)

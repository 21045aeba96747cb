"""Database guarantees of generation batches: one row per batch and index, one case per image and study, and fixed
file names per image (so a retry replaces a stopped worker's file instead of adding one)."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, transaction

from generation.models import BatchImage, BatchImageCase, GenerationBatch, image_file_name

pytestmark = pytest.mark.django_db


@pytest.fixture
def batch(coordinator) -> GenerationBatch:
    return GenerationBatch.objects.create(
        name="b",
        created_by=coordinator,
        base_model_dir="/models/sd",
        generator_label="sd",
        steps=75,
        guidance_scale=4.0,
        width=512,
        height=512,
        total=2,
    )


def test_an_index_exists_once_per_batch(batch):
    BatchImage.objects.create(batch=batch, index=0, prompt="a", seed=1)
    with pytest.raises(IntegrityError), transaction.atomic():
        BatchImage.objects.create(batch=batch, index=0, prompt="a", seed=1)
    BatchImage.objects.create(batch=batch, index=1, prompt="a", seed=2)
    assert batch.images.count() == 2 and batch.status == "queued" and not batch.is_finished


def test_an_image_becomes_at_most_one_case_per_study(batch, study):
    image = BatchImage.objects.create(batch=batch, index=0, prompt="a", seed=1)
    first, second = study.cases.all()[:2]
    BatchImageCase.objects.create(image=image, study=study, case=first)
    with pytest.raises(IntegrityError), transaction.atomic():
        BatchImageCase.objects.create(image=image, study=study, case=second)


def test_file_names_are_fixed_per_batch_and_index():
    assert image_file_name(12, 3, "png") == "generation/batch-12/000003.png"
    assert image_file_name(12, 3, "dcm") == "generation/batch-12/000003.dcm"

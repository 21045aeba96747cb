"""Cleanup chained after a generation batch, and what `batch_add_to_study` then imports: the cleaned image of an
accepted cleanup, nothing for a rejected (or unreviewed, or failed) one, the image as generated without cleanup.

The batches here are built as the generation worker leaves them (rows and PNG files), from chest phantoms with and
without a rendered label, so that no diffusion model has to run.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from PIL import Image

from cleanup.models import CleanupItem, CleanupJob
from cleanup.ocr import tesseract_available
from cleanup.review import cleanup_item_accept, cleanup_item_reject
from cleanup.services import CleanupRefused, cleanup_job_start_for_batch
from cleanup.tasks import run_cleanup_job
from cleanup.worker import cleanup_job_run
from generation.models import BatchImage, GenerationBatch
from generation.services import batch_add_to_study
from imaging.read import read_image
from readerstudy.blinding import study_blinding_audit
from tests.cleanup.helpers import FAST, stored_bytes
from tests.factories import PhantomBatchFactory, PhantomStudyFactory, phantom_png

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.usefixtures("no_queue"),
    pytest.mark.skipif(not tesseract_available(), reason="Debian's tesseract is not installed"),
]


def test_a_job_chained_after_a_running_batch_waits_for_it_then_cleans_every_image(
    coordinator, monkeypatch, django_capture_on_commit_callbacks
):
    batch = PhantomBatchFactory(created_by=coordinator, texts=["PORTABLE", None], status="running", pending=1)
    job = cleanup_job_start_for_batch(created_by=coordinator, batch=batch, config=FAST)
    assert (job.scope, job.mode, job.total, job.items.count()) == ("batch", "clean", 0, 0)

    later: list[dict] = []
    monkeypatch.setattr(run_cleanup_job, "apply_async", lambda **options: later.append(options))
    with django_capture_on_commit_callbacks(execute=True):
        job = cleanup_job_run(job_pk=job.pk)
    assert job.status == CleanupJob.Status.QUEUED and job.runs == 0  # waiting is not a run
    assert later == [{"kwargs": {"job_pk": job.pk}, "countdown": 10}]  # it looks again in 10 s

    BatchImage.objects.filter(batch=batch, index=2).update(status="failed", error="for the test")
    GenerationBatch.objects.filter(pk=batch.pk).update(status="done")
    job = cleanup_job_run(job_pk=job.pk)
    assert job.status == CleanupJob.Status.DONE and job.total == 2  # the images the batch made, not the failed one
    items = list(job.items.order_by("position").select_related("batch_image"))
    assert [(item.batch_image.index, item.outcome) for item in items] == [(0, "cleaned"), (1, "unchanged")]
    assert items[0].served_text_regions is None  # no served image before the image joins a study
    assert [box["text"] for box in items[0].result["boxes"]] == ["PORTABLE"]
    assert items[0].target_label == "Batch image 1"


def test_adding_a_cleaned_batch_takes_accepted_images_cleaned_and_leaves_the_others_out(coordinator):
    batch = PhantomBatchFactory(created_by=coordinator, texts=["PORTABLE", "AP", None, "SUPINE"])
    generated = {image.index: stored_bytes(image.png) for image in batch.images.all()}
    job = cleanup_job_run(job_pk=cleanup_job_start_for_batch(created_by=coordinator, batch=batch, config=FAST).pk)
    items = {item.batch_image.index: item for item in job.items.select_related("batch_image")}
    cleanup_item_accept(item=items[0], reviewer=coordinator)
    cleanup_item_reject(item=items[1], reviewer=coordinator)
    cleanup_item_accept(item=items[2], reviewer=coordinator)  # no text found: enters as generated
    study = PhantomStudyFactory(created_by=coordinator, cases=[])

    report = batch_add_to_study(batch=batch, study=study)
    assert report.added == (0, 2)
    assert report.refused == (
        (1, f"Its text cleanup was rejected in review (cleanup job #{job.pk})."),
        (3, f"Its text cleanup is not reviewed yet (cleanup job #{job.pk})."),
    )
    cases = {case.label: case for case in study.cases.all()}
    cleaned = cases[f"batch-{batch.pk}-000001.png"]
    # The cleaned image is the case's original: 8-bit like every generated PNG, the generated pixels outside the
    # mask exactly, the label gone inside it.
    original = np.asarray(Image.open(io.BytesIO(stored_bytes(cleaned.original))))
    before = np.asarray(Image.open(io.BytesIO(generated[0])))
    mask = np.asarray(Image.open(io.BytesIO(stored_bytes(items[0].mask)))) > 0
    assert original.dtype == np.uint8 and cleaned.served_features["original_bits"] == 8.0
    assert np.array_equal(original[~mask], before[~mask]) and not np.array_equal(original[mask], before[mask])
    assert cleaned.provenance["seed"] == 0 and cleaned.provenance["cleanup"]["item"] == items[0].pk
    assert cleaned.provenance["cleanup"]["changed"] is True and cleaned.provenance["cleanup"]["texts"] == ["PORTABLE"]
    assert cleaned.provenance["cleanup"]["accepted_by"] == "coord"
    unchanged = cases[f"batch-{batch.pk}-000003.png"]
    assert stored_bytes(unchanged.original) == generated[2]
    assert unchanged.provenance["cleanup"]["changed"] is False

    # Reviewed later, image 4 joins on the next add; the rejected image never does.
    cleanup_item_accept(item=items[3], reviewer=coordinator)
    again = batch_add_to_study(batch=batch, study=study)
    assert again.added == (3,) and again.already_added == (0, 2) and [i for i, _ in again.refused] == [1]
    treatment = study_blinding_audit(study=study).treatment
    assert (treatment.synthetic.cleanup_recorded, treatment.synthetic.cleaned) == (3, 2)


def test_an_image_whose_cleanup_failed_is_refused_with_the_reason(coordinator):
    batch = PhantomBatchFactory(created_by=coordinator, texts=["AP"])
    default_storage.delete(batch.images.get().png.name)  # the worker cannot read it: the cleanup fails
    job = cleanup_job_run(job_pk=cleanup_job_start_for_batch(created_by=coordinator, batch=batch).pk)
    assert job.status == CleanupJob.Status.FAILED
    default_storage.save(batch.images.get().png.name, ContentFile(phantom_png(0, text="AP")))
    report = batch_add_to_study(batch=batch, study=PhantomStudyFactory(created_by=coordinator, cases=[]))
    assert report.added == ()
    assert report.refused[0][1].startswith(f"Its text cleanup failed (cleanup job #{job.pk}: FileNotFoundError")


def test_a_later_cleanup_decides_and_reviewing_a_generated_image_touches_no_case(coordinator):
    batch = PhantomBatchFactory(created_by=coordinator, texts=["PORTABLE"])
    first = cleanup_job_run(job_pk=cleanup_job_start_for_batch(created_by=coordinator, batch=batch).pk)
    cleanup_item_reject(item=first.items.get(), reviewer=coordinator)
    second = cleanup_job_run(job_pk=cleanup_job_start_for_batch(created_by=coordinator, batch=batch).pk)
    item = cleanup_item_accept(item=second.items.get(), reviewer=coordinator)
    assert item.review == CleanupItem.Review.ACCEPTED and item.case_id is None
    report = batch_add_to_study(batch=batch, study=PhantomStudyFactory(created_by=coordinator, cases=[]))
    assert report.added == (0,)
    CleanupItem.objects.filter(pk=item.pk).update(status="failed", error="x")
    with pytest.raises(CleanupRefused, match="nothing to accept"):
        cleanup_item_accept(item=item, reviewer=coordinator)


def test_the_accepted_cleaned_image_is_rebuilt_from_the_generated_png(coordinator):
    """What enters the study is built from the generated PNG and the stored mask and 16-bit cleaned file: equal to
    the pipeline's cleaned pixels rounded to 8 bits (the 16-bit file adds at most half a 16-bit step inside the
    mask, far below an 8-bit step, so the 8-bit values agree wherever rounding is not on a knife edge)."""
    from cleanup.pipeline import clean_image

    batch = PhantomBatchFactory(created_by=coordinator, texts=["PORTABLE"])
    job = cleanup_job_run(job_pk=cleanup_job_start_for_batch(created_by=coordinator, batch=batch, config=FAST).pk)
    item = job.items.get()
    cleanup_item_accept(item=item, reviewer=coordinator)
    study = PhantomStudyFactory(created_by=coordinator, cases=[])
    batch_add_to_study(batch=batch, study=study)
    imported = np.asarray(Image.open(io.BytesIO(stored_bytes(study.cases.get().original)))).astype(int)
    expected = clean_image(read_image(stored_bytes(batch.images.get().png)).pixels, FAST).cleaned
    assert np.abs(imported - np.rint(expected * 255)).max() <= 1
    assert np.mean(imported == np.rint(expected * 255)) > 0.999

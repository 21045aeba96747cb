"""Cleanup jobs on a study's cases, run in-process: what each image records, the text check, failures, crashes,
cancellation, and settings a machine cannot run. (The same service under a real Celery worker: test_tasks.py.)

The study images are chest phantoms (`imaging.phantom`), some with a label rendered on them
(`cleanup.rendered_text`), so that whether an image has text is known and cleaning is deterministic.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from django.core.files.storage import default_storage
from PIL import Image

from cleanup import worker
from cleanup.item_files import item_cleaned_pixels
from cleanup.models import CleanupItem, CleanupJob, item_file_name
from cleanup.ocr import tesseract_available
from cleanup.pipeline import CleanupConfig
from cleanup.services import CleanupRefused, cleanup_job_cancel, cleanup_job_start
from cleanup.worker import cleanup_job_run
from imaging.normalise import normalise_for_serving
from imaging.read import read_image
from jobs.runner import MAX_RUNS, requeue_stale
from readerstudy.models import Case, Study
from tests.cleanup.helpers import FAST, run_job, stored_bytes
from tests.factories import PhantomStudyFactory

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(not tesseract_available(), reason="Debian's tesseract is not installed"),
]


def test_cleaning_records_every_image_and_changes_no_case_until_review(coordinator, no_queue):
    study = PhantomStudyFactory(
        created_by=coordinator, cases=[("synthetic", "PORTABLE"), ("real", None), ("real", "SUPINE")]
    )
    before = {case.pk: (case.image_sha256, stored_bytes(case.original)) for case in study.cases.all()}
    job = run_job(study, coordinator, config=CleanupConfig())
    assert job.status == CleanupJob.Status.DONE and job.runs == 1 and job.total == 3
    items = {item.case.label: item for item in job.items.select_related("case")}
    assert len(items) == 3 and all(item.status == CleanupItem.Status.DONE for item in items.values())

    labelled = items["synthetic-0.png"]
    assert labelled.changed is True and labelled.outcome == "cleaned" and labelled.text_regions >= 1
    assert labelled.residual_regions == 0  # verification ran and found nothing left
    assert labelled.served_text_regions == 0
    record = labelled.result
    assert (record["detector"], record["segmenter"], record["inpainter"]) == ("xray", "glyph-threshold", "classical")
    assert record["detector_settings"] and record["inpainter_settings"]["method"] == "telea"
    assert set(record["timings"]) == {"detect", "segment", "inpaint", "verify"}
    assert [box["text"] for box in record["boxes"]] == ["PORTABLE"]
    mask = np.asarray(Image.open(io.BytesIO(stored_bytes(labelled.mask))))
    assert mask.shape == (256, 256) and set(np.unique(mask)) == {0, 255}
    assert np.count_nonzero(mask) == record["mask"]["masked_pixels"] > 0
    cleaned = Image.open(io.BytesIO(stored_bytes(labelled.cleaned)))
    assert cleaned.mode.startswith("I;16") and cleaned.size == (256, 256)  # native size, 16 bits
    for preview in (labelled.preview_before, labelled.preview_after, labelled.preview_mask):
        assert Image.open(io.BytesIO(stored_bytes(preview))).size == (256, 256)

    # No text is a normal outcome: recorded as "clean, unchanged", with no mask or cleaned file to store.
    clean = items["real-1.png"]
    assert clean.changed is False and clean.outcome == "unchanged" and clean.text_regions == 0
    assert clean.result["boxes"] == [] and clean.result["mask"]["masked_pixels"] == 0
    assert not clean.mask and not clean.cleaned and not clean.preview_after and clean.preview_before
    assert items["real-2.png"].changed is True

    # Nothing reaches a case before a reviewer accepts it; the originals are never written to.
    for case in study.cases.all():
        assert (case.image_sha256, stored_bytes(case.original)) == before[case.pk]
        assert "cleanup" not in case.provenance and "text_regions" not in case.served_features
    assert all(item.review == CleanupItem.Review.PENDING for item in items.values())


def test_check_mode_counts_text_on_the_served_images_and_records_it_on_each_case(coordinator, no_queue):
    study = PhantomStudyFactory(
        created_by=coordinator, cases=[("real", "PORTABLE"), ("synthetic", None), ("real", None)]
    )
    served_before = {case.pk: case.image_sha256 for case in study.cases.all()}
    job = run_job(study, coordinator, mode="check")
    assert job.status == CleanupJob.Status.DONE
    counts = {item.case.label: item.text_regions for item in job.items.select_related("case")}
    assert counts["real-0.png"] >= 1 and counts["synthetic-1.png"] == 0 and counts["real-2.png"] == 0
    for case in study.cases.all():
        assert case.served_features["text_regions"] == counts[case.label]
        assert case.image_sha256 == served_before[case.pk]  # a check changes no image
    item = job.items.get(case__label="real-0.png")
    assert item.outcome == "checked" and item.result["recorded_on_case"] is True
    # Boxes are in served-image pixels: the label at x = 32 of the 256 px original is near x = 64 of the 512 px
    # canvas (the detector's box hugs the letters, a few pixels either way).
    assert [box["text"] for box in item.result["boxes"]] == ["PORTABLE"]
    assert 56 <= item.result["boxes"][0]["x"] <= 72


@pytest.mark.parametrize(
    ("width", "height", "size", "crop", "working"),
    [
        (96, 80, 512, False, None),
        (80, 300, 512, False, None),
        (1000, 700, 512, False, 256),
        (300, 200, 768, True, None),
    ],
)
def test_the_served_content_box_is_where_the_rendering_puts_the_image(width, height, size, crop, working):
    """Text detection on a served image skips its padding; the box must match `render_canvas` exactly."""
    study = Study(display_size=size, crop_to_square=crop, working_resolution=working)
    case = Case(width=width, height=height)
    served = Image.open(
        io.BytesIO(
            normalise_for_serving(
                np.ones((height, width), np.float32), size=size, crop_square=crop, working_resolution=working
            )
        )
    )
    assert served.getbbox() == _bbox(worker.served_content_box(case=case, study=study))


def _bbox(box: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    x, y, w, h = box
    return x, y, x + w, y + h


def test_one_failing_image_is_recorded_and_the_others_go_on(coordinator, no_queue):
    study = PhantomStudyFactory(created_by=coordinator, cases=[("real", None), ("synthetic", "AP"), ("real", None)])
    broken = study.cases.order_by("id")[1]
    default_storage.delete(broken.original.name)
    default_storage.save(broken.original.name, io.BytesIO(b"\x89PNG\r\n\x1a\n not an image any more"))
    job = run_job(study, coordinator)
    assert job.status == CleanupJob.Status.DONE
    failed = job.items.get(case=broken)
    assert failed.status == CleanupItem.Status.FAILED and failed.outcome == "failed"
    assert "ImageImportError" in failed.error and "PNG" in failed.error
    assert failed.result == {} and not failed.preview_before and failed.changed is None
    assert job.items.filter(status=CleanupItem.Status.DONE).count() == 2


def test_a_job_whose_every_image_fails_fails_with_the_first_error(coordinator, no_queue):
    study = PhantomStudyFactory(created_by=coordinator, cases=[("real", None)])
    case = study.cases.get()
    default_storage.delete(case.original.name)
    job = run_job(study, coordinator)
    assert job.status == CleanupJob.Status.FAILED
    assert job.error.startswith("Every image failed; the first with:")


class WorkerKilled(BaseException):
    """Stands in for a worker process dying mid-image (not an Exception: nothing may catch it as a failure)."""


def test_an_interrupted_job_resumes_without_duplicates_or_gaps(coordinator, no_queue, monkeypatch):
    study = PhantomStudyFactory(
        created_by=coordinator, cases=[("real", "PORTABLE"), ("synthetic", "AP"), ("real", None), ("synthetic", "L R")]
    )
    job = cleanup_job_start(created_by=coordinator, study=study, cases=list(study.cases.order_by("id")), config=FAST)
    real_clean_item = worker._clean_item
    calls = []

    def dies_on_the_second_image(item, job, stages, config, written):
        calls.append(item.position)
        real_clean_item(item, job, stages, config, written)
        if len(calls) == 2:
            raise WorkerKilled  # after the image's files were written, before it was recorded

    monkeypatch.setattr(worker, "_clean_item", dies_on_the_second_image)
    with pytest.raises(WorkerKilled):
        cleanup_job_run(job_pk=job.pk)
    job.refresh_from_db()
    assert job.status == CleanupJob.Status.RUNNING and job.runs == 1
    assert list(job.items.filter(status="done").values_list("position", flat=True)) == [0]
    first_finished = job.items.get(position=0).finished_at
    # The service deleted what it wrote when WorkerKilled passed through; a worker killed for real leaves its files
    # behind, so put one back as such a worker would.
    second = job.items.get(position=1)
    stale = item_file_name(job.pk, second.pk, "mask")
    default_storage.save(stale, io.BytesIO(b"left by a dead worker"))

    monkeypatch.setattr(worker, "_clean_item", real_clean_item)
    job = cleanup_job_run(job_pk=job.pk)
    assert job.status == CleanupJob.Status.DONE and job.runs == 2
    items = list(job.items.order_by("position"))
    assert [item.position for item in items] == [0, 1, 2, 3] and len({item.case_id for item in items}) == 4
    assert all(item.status == CleanupItem.Status.DONE for item in items)
    assert items[0].finished_at == first_finished  # not redone
    # The stale file was replaced under its own name, not stored beside it.
    second = items[1]
    assert second.mask.name == stale and stored_bytes(second.mask).startswith(b"\x89PNG")
    files = default_storage.listdir(f"cleanup/job-{job.pk}/item-{second.pk}")[1]
    assert sorted(files) == ["after.png", "before.png", "cleaned.png", "mask-overlay.png", "mask.png"]


def test_cancelling_stops_the_job_before_its_next_image(coordinator, no_queue, monkeypatch):
    study = PhantomStudyFactory(created_by=coordinator, cases=[("real", None), ("synthetic", None), ("real", None)])
    job = cleanup_job_start(created_by=coordinator, study=study, cases=list(study.cases.all()), config=FAST)
    real_next = worker._run_next_item

    def cancel_after_the_first(job_, stages, config):
        more = real_next(job_, stages, config)
        cleanup_job_cancel(job=job_)
        return more

    monkeypatch.setattr(worker, "_run_next_item", cancel_after_the_first)
    job = cleanup_job_run(job_pk=job.pk)
    assert job.status == CleanupJob.Status.CANCELLED and job.finished_at is not None
    assert list(job.items.values_list("status", flat=True).order_by("position")) == ["done", "pending", "pending"]
    # A cancelled job is finished: running it again does nothing.
    assert cleanup_job_run(job_pk=job.pk).status == CleanupJob.Status.CANCELLED
    assert job.items.filter(status="pending").count() == 2


def test_a_job_started_too_often_fails_instead_of_taking_more_workers_down(coordinator, no_queue):
    study = PhantomStudyFactory(created_by=coordinator, cases=[("real", None)])
    job = cleanup_job_start(created_by=coordinator, study=study, cases=list(study.cases.all()))
    CleanupJob.objects.filter(pk=job.pk).update(runs=MAX_RUNS, status="running")
    job = cleanup_job_run(job_pk=job.pk)
    assert job.status == CleanupJob.Status.FAILED and "started 5 times" in job.error
    assert job.items.get().status == CleanupItem.Status.PENDING


def test_starting_refuses_what_cannot_run_and_creates_nothing(coordinator, no_queue, monkeypatch, settings, tmp_path):
    study = PhantomStudyFactory(created_by=coordinator, cases=[("real", None)])
    other = PhantomStudyFactory(created_by=coordinator, cases=[("synthetic", None)], name="Other")
    cases = list(study.cases.all())

    def refused(**overrides) -> CleanupRefused:
        arguments = {"created_by": coordinator, "study": study, "cases": cases, **overrides}
        with pytest.raises(CleanupRefused) as caught:
            cleanup_job_start(**arguments)
        return caught.value

    assert refused(cases=[]).errors == {"cases": "Choose at least one case."}
    assert "not in the study" in refused(cases=list(other.cases.all())).message
    assert "Unknown mode" in refused(mode="scrub").message
    settings.MODEL_ROOT = tmp_path / "models"
    outside = refused(config=CleanupConfig(sam_checkpoint="/etc/passwd"))
    assert "is not inside a model folder root" in outside.errors["sam_checkpoint"]
    (tmp_path / "models").mkdir()
    missing = refused(config=CleanupConfig(inpainting_model="sd2-inpainting"))
    assert "not a diffusers inpainting model folder" in missing.errors["inpainting_model"]
    assert "Unknown text detector" in refused(config=CleanupConfig(detector="dbnet")).errors["detector"]

    monkeypatch.setenv("TESSERACT_CMD", str(tmp_path / "no-tesseract-here"))
    message = refused(config=CleanupConfig(detector="xray")).errors["detector"]
    assert "Tesseract is not installed" in message and "markers-and-bars detector" in message
    assert not CleanupJob.objects.exists()
    # The detector without OCR still runs where Tesseract is missing.
    assert cleanup_job_start(
        created_by=coordinator, study=study, cases=cases, config=CleanupConfig(detector="glyphs+bars")
    )


def test_a_worker_without_tesseract_fails_the_job_with_a_clear_error(coordinator, no_queue, monkeypatch, tmp_path):
    study = PhantomStudyFactory(created_by=coordinator, cases=[("real", None)])
    job = cleanup_job_start(created_by=coordinator, study=study, cases=list(study.cases.all()))
    monkeypatch.setenv("TESSERACT_CMD", str(tmp_path / "no-tesseract-here"))
    job = cleanup_job_run(job_pk=job.pk, worker="gpu1@node")
    assert job.status == CleanupJob.Status.FAILED
    assert job.error.startswith("This job cannot run on worker gpu1@node: Tesseract is not installed")
    assert job.items.get().status == CleanupItem.Status.PENDING


def test_the_sam_and_stable_diffusion_path_runs_with_tiny_offline_models(
    coordinator, no_queue, settings, tiny_sam_checkpoint, tiny_sd_inpainting
):
    settings.MODEL_EXTRA_ROOTS = [tiny_sam_checkpoint.parent, tiny_sd_inpainting.parent]
    study = PhantomStudyFactory(created_by=coordinator, cases=[("synthetic", "PORTABLE")])
    config = CleanupConfig(
        sam_checkpoint=str(tiny_sam_checkpoint),
        inpainting_model=str(tiny_sd_inpainting),
        inpainting_steps=2,
        inpainting_size=64,
        device="cpu",
        verify=False,
    )
    job = run_job(study, coordinator, config=config)
    item = job.items.get()
    assert job.status == CleanupJob.Status.DONE and item.status == CleanupItem.Status.DONE, item.error
    assert (item.result["segmenter"], item.result["inpainter"]) == ("sam", "stable-diffusion-inpainting")
    assert item.result["inpainter_settings"]["steps"] == 2 and item.changed
    assert job.config["sam_checkpoint"] == str(tiny_sam_checkpoint)
    # Outside the mask the stored cleaned image is the original, exactly.
    case = item.case
    original = read_image(stored_bytes(case.original)).pixels
    mask = np.asarray(Image.open(io.BytesIO(stored_bytes(item.mask)))) > 0
    assert np.array_equal(item_cleaned_pixels(item)[~mask], original[~mask])


def test_jobs_whose_worker_went_quiet_are_sent_to_a_worker_again_once(coordinator, django_capture_on_commit_callbacks):
    from datetime import timedelta

    from django.utils import timezone

    study = PhantomStudyFactory(created_by=coordinator, cases=[("real", None)])
    with django_capture_on_commit_callbacks(execute=False):
        quiet = cleanup_job_start(created_by=coordinator, study=study, cases=list(study.cases.all()), config=FAST)
        busy = cleanup_job_start(created_by=coordinator, study=study, cases=list(study.cases.all()), config=FAST)
    long_ago = timezone.now() - timedelta(hours=1)
    CleanupJob.objects.filter(pk=quiet.pk).update(
        status=CleanupJob.Status.RUNNING, started_at=long_ago, heartbeat_at=long_ago
    )
    CleanupJob.objects.filter(pk=busy.pk).update(
        status=CleanupJob.Status.RUNNING, started_at=long_ago, heartbeat_at=timezone.now()
    )
    with django_capture_on_commit_callbacks(execute=False) as sent:
        assert requeue_stale(CleanupJob) == [quiet.pk]
    assert len(sent) == 1
    # Sent once: a second check right after does not send it again while the new worker picks it up.
    with django_capture_on_commit_callbacks(execute=False) as sent_again:
        assert requeue_stale(CleanupJob) == []
    assert not sent_again

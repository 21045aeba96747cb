"""Reviewing cleaned images: accepting replaces a case's served image (never its original), rejecting keeps it out,
nothing changes under readers, and the pixels outside the mask stay exactly what they were once served."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
from django.core.files.storage import default_storage
from PIL import Image
from scipy.ndimage import binary_dilation

from cleanup.models import CleanupItem
from cleanup.ocr import tesseract_available
from cleanup.pipeline import CleanupConfig
from cleanup.review import cleanup_item_accept, cleanup_item_reject, cleanup_job_accept_unchanged
from cleanup.services import CleanupRefused
from imaging.normalise import describe_served, normalise_for_serving
from imaging.read import read_image, sha256_hex
from readerstudy.services import reader_assign
from tests.cleanup.helpers import FAST, run_job, stored_bytes
from tests.factories import PhantomStudyFactory
from tests.readerstudy.helpers import answer_next

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.usefixtures("no_queue"),
    pytest.mark.skipif(not tesseract_available(), reason="Debian's tesseract is not installed"),
]


def served_array(case) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(stored_bytes(case.image))))


def mask_array(item) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(stored_bytes(item.mask)))) > 0


def test_accepting_serves_the_cleaned_image_and_keeps_the_original(coordinator, django_capture_on_commit_callbacks):
    study = PhantomStudyFactory(created_by=coordinator, cases=[("synthetic", "PORTABLE"), ("real", None)])
    job = run_job(study, coordinator)
    item = job.items.get(changed=True)
    case = item.case
    original_bytes, old_served = stored_bytes(case.original), case.image.name

    with django_capture_on_commit_callbacks(execute=True):
        item = cleanup_item_accept(item=item, reviewer=coordinator)
    case.refresh_from_db()
    assert item.review == CleanupItem.Review.ACCEPTED and item.reviewed_by == coordinator
    assert stored_bytes(case.original) == original_bytes and case.original_sha256 == sha256_hex(original_bytes)
    served = stored_bytes(case.image)
    assert case.image.name != old_served and not default_storage.exists(old_served)
    assert (
        case.image_sha256 == sha256_hex(served) != sha256_hex(normalise_for_serving(read_image(original_bytes).pixels))
    )
    # Rendered like every case of the study (512 px canvas, 8-bit grey), features measured on the new file.
    assert Image.open(io.BytesIO(served)).size == (512, 512)
    for name, value in describe_served(served).features().items():
        assert case.served_features[name] == value
    assert case.served_features["original_width"] == 256.0
    assert case.served_features["text_regions"] == item.served_text_regions == 0
    record = case.provenance["cleanup"]
    assert (record["job"], record["item"], record["changed"]) == (job.pk, item.pk, True)
    assert (record["detector"], record["segmenter"], record["inpainter"]) == ("xray", "glyph-threshold", "classical")
    assert record["texts"] == ["PORTABLE"] and record["accepted_by"] == "coord"
    assert record["config"]["dilation_kernel"] == 5 and record["masked_pixels"] > 0


def test_served_at_its_native_size_every_pixel_outside_the_mask_is_unchanged(coordinator):
    """Display size 512 = native 512 px: no resampling, so served = rounded original outside the mask, exactly."""
    study = PhantomStudyFactory(created_by=coordinator, cases=[("real", "PORTABLE")], size=512)
    case = study.cases.get()
    uncleaned = served_array(case)
    job = run_job(study, coordinator)
    item = job.items.get()
    assert item.changed
    cleanup_item_accept(item=item, reviewer=coordinator)
    case.refresh_from_db()
    cleaned, mask = served_array(case), mask_array(item)
    assert cleaned.shape == uncleaned.shape == mask.shape == (512, 512)
    assert np.array_equal(cleaned[~mask], uncleaned[~mask])
    assert not np.array_equal(cleaned[mask], uncleaned[mask])  # and the label itself did change


def test_after_downscaling_every_pixel_beyond_the_filters_reach_of_the_mask_is_unchanged(coordinator):
    """768 px served at 512 px: Pillow's Lanczos-3 gives each served pixel the input pixels within 3 x 1.5 = 4.5
    input pixels of its centre (its window is [floor(c - 4.5 + 0.5), floor(c + 4.5 + 0.5)) around c = (j + 0.5)
    x 1.5, rows and columns alike). So a served pixel whose window holds no masked input pixel is identical to the
    un-cleaned served image. The check below widens each mask pixel by ceil(3 s + 1.5) = 6 input pixels
    (Chebyshev) and looks at the input pixel under each served pixel's centre, which covers that window."""
    scale = 768 / 512
    study = PhantomStudyFactory(created_by=coordinator, cases=[("synthetic", "PORTABLE")], size=768)
    case = study.cases.get()
    uncleaned = served_array(case)
    job = run_job(study, coordinator)
    item = job.items.get()
    cleanup_item_accept(item=item, reviewer=coordinator)
    case.refresh_from_db()
    cleaned, mask = served_array(case), mask_array(item)
    reach = math.ceil(3 * scale + 1.5)
    near = binary_dilation(mask, structure=np.ones((2 * reach + 1, 2 * reach + 1), bool))
    centres = np.floor((np.arange(512) + 0.5) * scale).astype(int)
    affected = near[np.ix_(centres, centres)]
    assert 0 < affected.mean() < 0.05  # the label is small: almost the whole image is compared
    assert np.array_equal(cleaned[~affected], uncleaned[~affected])
    assert not np.array_equal(cleaned[affected], uncleaned[affected])


def test_an_image_cannot_change_under_readers(coordinator, reader):
    study = PhantomStudyFactory(created_by=coordinator, cases=[("real", "PORTABLE")], status="open")
    session = reader_assign(study=study, reader=reader)
    job = run_job(study, coordinator)
    item = job.items.get()
    answer_next(session)
    case = item.case
    served = case.image_sha256
    with pytest.raises(CleanupRefused) as refused:
        cleanup_item_accept(item=item, reviewer=coordinator)
    assert refused.value.message == (
        f"Case {case.pk} already has 1 reading: its image cannot change under readers. Clean images before readers "
        "start."
    )
    case.refresh_from_db()
    item.refresh_from_db()
    assert case.image_sha256 == served and "cleanup" not in case.provenance
    assert item.review == CleanupItem.Review.PENDING


def test_rejecting_keeps_a_cleanup_out_and_undoes_an_earlier_accept(coordinator):
    study = PhantomStudyFactory(created_by=coordinator, cases=[("synthetic", "AP"), ("real", "SUPINE")])
    initial = {case.pk: case.image_sha256 for case in study.cases.all()}
    job = run_job(study, coordinator)
    first, second = job.items.order_by("position")
    cleanup_item_reject(item=first, reviewer=coordinator)
    first.case.refresh_from_db()
    assert first.case.image_sha256 == initial[first.case_id] and "cleanup" not in first.case.provenance

    cleanup_item_accept(item=second, reviewer=coordinator)
    second.case.refresh_from_db()
    assert second.case.image_sha256 != initial[second.case_id]
    second = cleanup_item_reject(item=second, reviewer=coordinator)
    second.case.refresh_from_db()
    assert second.review == CleanupItem.Review.REJECTED
    # Back to the original's rendering, byte for byte (rendering is deterministic).
    assert second.case.image_sha256 == initial[second.case_id] and "cleanup" not in second.case.provenance
    assert "text_regions" not in second.case.served_features  # measured on the cleaned image, unknown now


def test_a_later_cleanup_replaces_an_earlier_one_which_can_no_longer_undo_it(coordinator):
    study = PhantomStudyFactory(created_by=coordinator, cases=[("real", "PORTABLE")])
    earlier = run_job(study, coordinator).items.get()
    later = run_job(study, coordinator, config=CleanupConfig(verify=False, dilation_iterations=3)).items.get()
    cleanup_item_accept(item=earlier, reviewer=coordinator)
    cleanup_item_accept(item=later, reviewer=coordinator)
    case = later.case
    case.refresh_from_db()
    served = case.image_sha256
    assert case.provenance["cleanup"]["item"] == later.pk
    cleanup_item_reject(item=earlier, reviewer=coordinator)
    case.refresh_from_db()
    assert case.image_sha256 == served and case.provenance["cleanup"]["item"] == later.pk


def test_accept_all_unchanged_records_the_cleanup_without_touching_any_image(coordinator, reader):
    study = PhantomStudyFactory(
        created_by=coordinator, cases=[("real", None), ("synthetic", "AP"), ("synthetic", None)], status="open"
    )
    served = {case.pk: case.image_sha256 for case in study.cases.all()}
    job = run_job(study, coordinator)
    # Readings do not stop it: the served images do not change.
    answer_next(reader_assign(study=study, reader=reader))
    report = cleanup_job_accept_unchanged(job=job, reviewer=coordinator)
    assert report.accepted == 2 and report.refused == ()
    for item in job.items.select_related("case"):
        case = item.case
        assert case.image_sha256 == served[case.pk]
        if item.changed:
            assert item.review == CleanupItem.Review.PENDING and "cleanup" not in case.provenance
        else:
            assert item.review == CleanupItem.Review.ACCEPTED
            assert case.provenance["cleanup"]["changed"] is False and case.provenance["cleanup"]["texts"] == []
            assert case.served_features["text_regions"] == 0
    assert cleanup_job_accept_unchanged(job=job, reviewer=coordinator).accepted == 0  # nothing left to accept


def test_only_processed_images_of_a_cleaning_job_can_be_reviewed(coordinator):
    study = PhantomStudyFactory(created_by=coordinator, cases=[("real", None)])
    check = run_job(study, coordinator, mode="check").items.get()
    with pytest.raises(CleanupRefused, match="A text check changes nothing"):
        cleanup_item_accept(item=check, reviewer=coordinator)
    clean = run_job(study, coordinator, config=FAST).items.get()
    CleanupItem.objects.filter(pk=clean.pk).update(status="failed", error="boom")
    with pytest.raises(CleanupRefused, match=r"This image failed \(boom\)"):
        cleanup_item_accept(item=clean, reviewer=coordinator)
    CleanupItem.objects.filter(pk=clean.pk).update(status="pending")
    with pytest.raises(CleanupRefused, match="not been processed yet"):
        cleanup_item_reject(item=clean, reviewer=coordinator)


def test_an_image_a_reader_has_on_screen_cannot_change_either(coordinator, reader):
    """The first two cases of an open study are on screen or prefetched as soon as a reader opens it."""
    study = PhantomStudyFactory(created_by=coordinator, cases=[("real", "PORTABLE")], status="open")
    reader_assign(study=study, reader=reader)
    job = run_job(study, coordinator)
    item = job.items.get()
    with pytest.raises(CleanupRefused) as refused:
        cleanup_item_accept(item=item, reviewer=coordinator)
    assert "is on screen or already loaded for 1 reader" in refused.value.message
    study.status = "draft"
    study.save()
    cleanup_item_accept(item=item, reviewer=coordinator)  # nobody can be reading a draft

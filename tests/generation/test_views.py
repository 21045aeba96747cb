"""Generation pages: who may open them, the live progress partial, the gallery and provenance, files, cancel and
add to study, as a coordinator sees them. Batches run in this process with the tiny model."""

from __future__ import annotations

import io
from pathlib import Path

import pydicom
import pytest
from django.urls import reverse

from generation.batch_check import BatchRequest
from generation.models import GenerationBatch
from generation.pipeline import GenerationSettings
from generation.services import batch_start
from generation.worker import batch_run
from readerstudy.models import Case

pytestmark = [pytest.mark.ml, pytest.mark.django_db]

DENIED = {"anonymous": 302, "reader": 403}
ALLOWED = {"coordinator", "admin"}


@pytest.fixture(autouse=True)
def model_roots(settings, tiny_model_dir: Path) -> None:
    settings.MODEL_ROOT = tiny_model_dir.parent
    settings.ML_CPU_THREADS = 1


@pytest.fixture
def queued_batch(coordinator, tiny_model_dir, django_capture_on_commit_callbacks) -> GenerationBatch:
    request = BatchRequest(
        base_model=tiny_model_dir.name,
        prompts=("No findings", "small right pleural effusion", "No findings"),
        settings=GenerationSettings(width=64, height=64, steps=4),
        base_seed=7,
        write_dicom=True,
        name="Three test images",
    )
    with django_capture_on_commit_callbacks(execute=False):
        return batch_start(created_by=coordinator, request=request)


@pytest.fixture
def finished_batch(queued_batch) -> GenerationBatch:
    return batch_run(batch_pk=queued_batch.pk)


def pages(batch: GenerationBatch) -> list[tuple[str, str, str]]:
    args = [batch.pk]
    return [
        ("get", reverse("generation:batch_list"), "page"),
        ("get", reverse("generation:batch_detail", args=args), "page"),
        ("get", reverse("generation:image_detail", args=[*args, 0]), "page"),
        ("get", reverse("generation:image_png", args=[*args, 0]), "file"),
        ("get", reverse("generation:image_dicom", args=[*args, 0]), "file"),
        ("post", reverse("generation:batch_cancel", args=args), "redirect"),
        ("post", reverse("generation:batch_add_to_study", args=args), "redirect"),
    ]


@pytest.mark.parametrize("role", ["anonymous", "reader", "coordinator", "admin"])
def test_only_coordinators_and_admins_reach_generation_pages(
    client, role, finished_batch, reader, admin_user, coordinator
):
    users = {"reader": reader, "coordinator": coordinator, "admin": admin_user}
    if role != "anonymous":
        client.force_login(users[role])
    for method, url, kind in pages(finished_batch):
        response = getattr(client, method)(url)
        if role in ALLOWED:
            expected = {"page": 200, "file": 200, "redirect": 302}[kind]
            assert response.status_code == expected, (role, url)
        else:
            assert response.status_code == DENIED[role], (role, url)
            if role == "anonymous":
                assert response["Location"].startswith(reverse("login"))
    assert GenerationBatch.objects.get(pk=finished_batch.pk).status == "done", "no denied request changed anything"


def test_navigation_offers_generation_to_coordinators_only(client, coordinator, reader, study):
    client.force_login(coordinator)
    assert 'href="/generation/"' in client.get(reverse("study_list")).content.decode()
    client.force_login(reader)
    assert "/generation/" not in client.get(reverse("home")).content.decode()


def test_the_progress_partial_polls_while_the_batch_runs_and_stops_when_done(client, coordinator, queued_batch):
    client.force_login(coordinator)
    url = reverse("generation:batch_detail", args=[queued_batch.pk])
    status = client.get(url, {"part": "status"}, HTTP_HX_REQUEST="true").content.decode()
    assert 'hx-trigger="every 1s"' in status and "Queued" in status and "<strong>0</strong> of 3 images" in status
    assert "<html" not in status, "htmx gets the partial only"
    gallery = client.get(url, {"part": "gallery"}, HTTP_HX_REQUEST="true").content.decode()
    assert "hx-trigger" in gallery and "Images appear here as the worker finishes them" in gallery

    batch_run(batch_pk=queued_batch.pk)
    status = client.get(url, {"part": "status"}, HTTP_HX_REQUEST="true").content.decode()
    assert "hx-trigger" not in status and "Done" in status and "<strong>3</strong> of 3 images" in status
    gallery = client.get(url, {"part": "gallery"}, HTTP_HX_REQUEST="true").content.decode()
    assert "hx-trigger" not in gallery and gallery.count('<img src="/generation/batches/') == 3
    page = client.get(url).content.decode()
    assert "Three test images" in page and "Add images to the study" in page and "Cancel batch" not in page


def test_an_image_shows_its_full_provenance(client, coordinator, finished_batch):
    client.force_login(coordinator)
    image = finished_batch.images.get(index=1)
    url = reverse("generation:image_detail", args=[finished_batch.pk, 1])
    partial = client.get(url, HTTP_HX_REQUEST="true").content.decode()
    assert "<html" not in partial
    for fact in (
        "small right pleural effusion",
        "<dd>8</dd>",  # the seed: base 7 + index 1
        image.provenance["base_model"]["sha256"],
        image.png_sha256,
        "PNDMScheduler",
        "64 × 64 px",
        "Full provenance (JSON)",
        "DICOM (synthetic SC)",
    ):
        assert fact in partial, fact
    assert "Generation</a> ›" in client.get(url).content.decode(), "a page of its own without htmx"


def test_image_files_are_served_to_coordinators(client, coordinator, finished_batch):
    client.force_login(coordinator)
    image = finished_batch.images.get(index=2)
    png = client.get(reverse("generation:image_png", args=[finished_batch.pk, 2]))
    assert png["Content-Type"] == "image/png" and png["Cache-Control"] == "private, max-age=86400"
    with image.png.open("rb") as handle:
        assert b"".join(png.streaming_content) == handle.read()
    dicom = client.get(reverse("generation:image_dicom", args=[finished_batch.pk, 2]))
    assert dicom["Content-Disposition"] == f'attachment; filename="batch-{finished_batch.pk}-000003.dcm"'
    dataset = pydicom.dcmread(io.BytesIO(b"".join(dicom.streaming_content)))
    assert dataset.ConversionType == "SYN" and "Synthetic image" in dataset.DerivationDescription
    missing = client.get(reverse("generation:image_png", args=[finished_batch.pk, 99]))
    assert missing.status_code == 404


def test_cancel_from_the_page(client, coordinator, queued_batch):
    client.force_login(coordinator)
    response = client.post(reverse("generation:batch_cancel", args=[queued_batch.pk]), follow=True)
    page = response.content.decode()
    assert "Batch cancelled: no further images will be added." in page and "no images were added after that" in page
    again = client.post(reverse("generation:batch_cancel", args=[queued_batch.pk]), follow=True).content.decode()
    assert "The batch is already cancelled." in again


def test_add_to_study_from_the_page_is_idempotent(client, coordinator, finished_batch, make_study):
    study = make_study(real=2, synthetic=0, name="Effusion study")
    client.force_login(coordinator)
    url = reverse("generation:batch_add_to_study", args=[finished_batch.pk])
    page = client.post(url, {"study": study.pk}, follow=True).content.decode()
    assert "Effusion study: 3 added." in page and "3 cases" in page
    page = client.post(url, {"study": study.pk}, follow=True).content.decode()
    assert "Effusion study: 0 added, 3 already in the study." in page
    assert Case.objects.filter(study=study, source="generation").count() == 3
    page = client.post(url, {}, follow=True).content.decode()
    assert "Choose a study to add the images to." in page


def test_demo_batches_say_so(client, coordinator, finished_batch):
    GenerationBatch.objects.filter(pk=finished_batch.pk).update(is_demo_model=True)
    client.force_login(coordinator)
    page = client.get(reverse("generation:batch_detail", args=[finished_batch.pk])).content.decode()
    assert "randomly initialised demo model" in page
    listing = client.get(reverse("generation:batch_list")).content.decode()
    assert "demo model</span>" in listing


def test_the_django_admin_lists_batches_and_images_and_cancels(client, admin_user, queued_batch):
    admin_user.is_superuser = True
    admin_user.save()
    client.force_login(admin_user)
    listing = client.get(reverse("admin:generation_generationbatch_changelist")).content.decode()
    assert "Three test images" in listing
    change = client.get(reverse("admin:generation_generationbatch_change", args=[queued_batch.pk]))
    assert change.status_code == 200 and queued_batch.base_model_dir in change.content.decode()
    images = client.get(reverse("admin:generation_batchimage_changelist")).content.decode()
    assert "small right pleural effusion" in images
    client.post(
        reverse("admin:generation_generationbatch_changelist"),
        {"action": "cancel_batches", "_selected_action": [queued_batch.pk]},
    )
    assert GenerationBatch.objects.get(pk=queued_batch.pk).status == "cancelled"

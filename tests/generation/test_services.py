"""Generation batches run in this process with the tiny offline model: seeds, files, provenance, DICOM, resuming,
per-image failures, cancelling, re-queueing, adding to a study and the demo model.

The worker-process versions of these (a real Celery worker over Redis, killed with SIGKILL) are in test_worker.py.
"""

from __future__ import annotations

import io
import shutil
import threading
from datetime import timedelta
from pathlib import Path

import numpy as np
import pydicom
import pytest
from django.core.files.storage import default_storage
from django.utils import timezone
from PIL import Image

from generation import worker
from generation.batch_check import BatchInvalid, BatchRequest, parse_template_fields, prompts_from_template
from generation.demo import demo_model_build
from generation.lora import check_adapter_dir
from generation.models import BatchImage, BatchImageCase, GenerationBatch
from generation.pipeline import GenerationError, GenerationSettings, check_model_dir
from generation.prompts import PromptError
from generation.roots import is_demo_model
from generation.services import batch_add_to_study, batch_cancel, batch_start
from generation.worker import batch_run
from imaging.png import read_png_chunks
from imaging.read import sha256_hex
from jobs.runner import MAX_RUNS, requeue_stale
from readerstudy.models import Case
from readerstudy.services import reader_assign

pytestmark = pytest.mark.ml

# 64 px and a few steps keep a chunk of two images well under a second on a 2-core CPU.
SMALL = GenerationSettings(width=64, height=64, steps=4, batch_size=2)


@pytest.fixture(autouse=True)
def model_roots(settings, tiny_model_dir: Path, tiny_peft_adapter_dir: Path) -> None:
    settings.MODEL_ROOT = tiny_model_dir.parent
    settings.MODEL_EXTRA_ROOTS = [tiny_peft_adapter_dir.parent]
    settings.ML_CPU_THREADS = 1


def request_for(tiny_model_dir: Path, adapter: Path | None = None, **overrides) -> BatchRequest:
    values = {
        "base_model": str(tiny_model_dir),
        "adapter": str(adapter or ""),
        "prompts": ("No findings", "small right pleural effusion", "No findings", "Cardiomegaly", "No findings"),
        "settings": SMALL,
        "base_seed": 1000,
    }
    values.update(overrides)
    return BatchRequest(**values)


def start(coordinator, request: BatchRequest, capture) -> GenerationBatch:
    """Start a batch without sending its task to a broker (the test runs it in this process)."""
    with capture(execute=False) as callbacks:
        batch = batch_start(created_by=coordinator, request=request)
    assert len(callbacks) == 1, "the batch is queued once its transaction commits"
    return batch


def png_pixels(image: BatchImage) -> np.ndarray:
    with image.png.open("rb") as handle:
        return np.asarray(Image.open(io.BytesIO(handle.read())))


def test_a_batch_makes_every_image_with_its_seed_files_and_provenance(
    db, coordinator, tiny_model_dir, tiny_peft_adapter_dir, django_capture_on_commit_callbacks
):
    request = request_for(tiny_model_dir, tiny_peft_adapter_dir, write_dicom=True)
    batch = start(coordinator, request, django_capture_on_commit_callbacks)
    assert batch.status == "queued" and batch.total == 5
    assert batch.generator_label.startswith("tiny-sd + peft (") and not batch.is_demo_model

    batch = batch_run(batch_pk=batch.pk, worker="test@host")
    assert batch.status == "done" and batch.finished_at is not None
    images = list(batch.images.order_by("index"))
    assert [image.status for image in images] == ["done"] * 5
    # Seeds: base seed + index, stored per image.
    assert [image.seed for image in images] == [1000, 1001, 1002, 1003, 1004]
    assert [image.prompt for image in images] == list(request.prompts)

    for image in images:
        with image.png.open("rb") as handle:
            data = handle.read()
        # The format real images are served in: 8-bit grayscale PNG without metadata chunks.
        assert [chunk.type for chunk in read_png_chunks(data)] == ["IHDR", "IDAT", "IEND"]
        assert data[24:26] == bytes([8, 0])  # bit depth 8, colour type 0 (grayscale)
        assert Image.open(io.BytesIO(data)).size == (64, 64)
        assert sha256_hex(data) == image.png_sha256 == image.provenance["png_sha256"]
        assert image.png.name == f"generation/batch-{batch.pk}/{image.index:06d}.png"

    provenance = images[3].provenance
    assert provenance["prompt"] == "Cardiomegaly" and provenance["seed"] == 1003
    assert provenance["batch"] == {"id": batch.pk, "index": 3, "name": batch.name}
    assert len(provenance["base_model"]["sha256"]) == 64
    assert provenance["base_model"]["path"] == str(tiny_model_dir.resolve())
    assert provenance["adapter"]["sha256"] == check_adapter_dir(tiny_peft_adapter_dir).sha256
    assert provenance["scheduler"]["class"] == "PNDMScheduler"
    assert (provenance["steps"], provenance["guidance_scale"], provenance["width"], provenance["height"]) == (
        4,
        4.0,
        64,
        64,
    )
    assert provenance["negative_prompt"] == "" and provenance["dtype"] == "float32"
    assert provenance["device"].startswith("cpu") and provenance["versions"]["torch"]
    assert provenance["seconds"] > 0 and images[3].seconds > 0

    # DICOM Secondary Capture: loads with pydicom, says plainly that it is synthetic, holds the PNG's pixels.
    dicoms = []
    for image in images:
        with image.dicom.open("rb") as handle:
            dicoms.append(pydicom.dcmread(io.BytesIO(handle.read())))
    ds = dicoms[3]
    assert ds.ConversionType == "SYN" and str(ds.PatientName) == "SYNTHETIC^IMAGE"
    assert ds.ImageComments.startswith("SYNTHETIC IMAGE") and "Cardiomegaly" in ds.ImageComments
    assert "Synthetic image generated by tiny-sd + peft" in ds.DerivationDescription
    assert "seed 1003" in ds.DerivationDescription
    np.testing.assert_array_equal(ds.pixel_array, png_pixels(images[3]))
    assert len({d.StudyInstanceUID for d in dicoms}) == 1 and len({d.SeriesInstanceUID for d in dicoms}) == 1
    assert [d.InstanceNumber for d in dicoms] == [1, 2, 3, 4, 5]

    # One run, model loaded once and recorded.
    assert batch.runs == 1 and batch.run_log[0]["worker"] == "test@host"
    assert batch.run_log[0]["model_load_seconds"] >= 0


def test_the_same_seeds_and_settings_redraw_the_same_images(
    db, coordinator, tiny_model_dir, django_capture_on_commit_callbacks
):
    request = request_for(tiny_model_dir)
    first = batch_run(batch_pk=start(coordinator, request, django_capture_on_commit_callbacks).pk)
    again = batch_run(batch_pk=start(coordinator, request, django_capture_on_commit_callbacks).pk)
    hashes = [list(batch.images.order_by("index").values_list("png_sha256", flat=True)) for batch in (first, again)]
    assert hashes[0] == hashes[1] and len(set(hashes[0])) == 5
    # Running a finished batch again does nothing.
    assert batch_run(batch_pk=first.pk).runs == 1


def test_explicit_seeds_are_used_as_given(db, coordinator, tiny_model_dir, django_capture_on_commit_callbacks):
    request = request_for(tiny_model_dir, prompts=("a", "b", "c"), seeds=(7, 7, 123456789))
    batch = start(coordinator, request, django_capture_on_commit_callbacks)
    assert batch.base_seed is None
    assert list(batch.images.order_by("index").values_list("seed", flat=True)) == [7, 7, 123456789]
    batch = batch_run(batch_pk=batch.pk)
    assert batch.images.get(index=2).provenance["seed_from"] == "given"


def test_bad_requests_create_nothing_and_name_each_problem(db, coordinator, tiny_model_dir, tmp_path):
    outside = tmp_path / "elsewhere"
    shutil.copytree(tiny_model_dir, outside)
    cases = [
        (request_for(outside), "base_model", "not inside a model folder root"),
        (request_for(tiny_model_dir.parent / "missing"), "base_model", "does not exist"),
        (request_for(tiny_model_dir, settings=GenerationSettings(width=500)), "width", "multiple of 8"),
        (request_for(tiny_model_dir, prompts=()), "prompts", "No prompts"),
        (request_for(tiny_model_dir, prompts=("a", " ")), "prompts", "Prompt 2 is empty"),
        (request_for(tiny_model_dir, seeds=(1, 2)), "seeds", "2 seeds for 5 prompts"),
        (request_for(tiny_model_dir, seeds=(1, 2, 3, 4, -5)), "seeds", "Seed -5"),
        (request_for(tiny_model_dir, base_seed=2**63 - 2), "base_seed", "base seed"),
    ]
    for request, field, words in cases:
        with pytest.raises(BatchInvalid) as raised:
            batch_start(created_by=coordinator, request=request)
        assert words in " ".join(raised.value.errors[field]), (field, raised.value.errors)
    assert not GenerationBatch.objects.exists() and not BatchImage.objects.exists()


def test_a_run_stopped_mid_chunk_leaves_exactly_its_rows_pending_and_the_next_run_fills_the_gaps(
    db, coordinator, tiny_model_dir, django_capture_on_commit_callbacks, monkeypatch, settings
):
    batch = start(coordinator, request_for(tiny_model_dir), django_capture_on_commit_callbacks)
    real_generate = worker._generate
    calls = []

    def dies_in_the_second_chunk(generator, rows, settings_):
        calls.append([row.index for row in rows])
        results = real_generate(generator, rows, settings_)
        if len(calls) == 2:
            raise SystemExit("worker stopped")  # after generating, before anything is committed
        return results

    monkeypatch.setattr(worker, "_generate", dies_in_the_second_chunk)
    with pytest.raises(SystemExit):
        batch_run(batch_pk=batch.pk)
    batch.refresh_from_db()
    statuses = dict(batch.images.values_list("index", "status"))
    assert batch.status == "running" and calls == [[0, 1], [2, 3]]
    assert statuses == {0: "done", 1: "done", 2: "pending", 3: "pending", 4: "pending"}
    assert not default_storage.exists(f"generation/batch-{batch.pk}/000002.png"), "the stopped chunk left no file"

    # A run finding a fresh heartbeat leaves the batch to the live worker; a stale one takes over.
    monkeypatch.setattr(worker, "_generate", real_generate)
    assert batch_run(batch_pk=batch.pk).status == "running"
    assert GenerationBatch.objects.get(pk=batch.pk).runs == 1
    GenerationBatch.objects.filter(pk=batch.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    batch = batch_run(batch_pk=batch.pk)
    assert batch.status == "done" and batch.runs == 2
    images = list(batch.images.order_by("index"))
    assert [(image.index, image.seed, image.status) for image in images] == [
        (index, 1000 + index, "done") for index in range(5)
    ]
    folder = Path(settings.MEDIA_ROOT) / f"generation/batch-{batch.pk}"
    assert sorted(path.name for path in folder.iterdir()) == [f"{index:06d}.png" for index in range(5)]


def test_one_failing_image_is_recorded_and_the_rest_go_on(
    db, coordinator, tiny_model_dir, django_capture_on_commit_callbacks, monkeypatch
):
    request = request_for(tiny_model_dir, write_dicom=True, prompts=("a", "b", "c", "d", "e", "f"))
    batch = start(coordinator, request, django_capture_on_commit_callbacks)
    generator = worker.batch_generator(batch)
    real_generate = generator.generate

    def out_of_memory_for_seed_1002(prompts, seeds, settings_):
        if 1002 in seeds:
            raise GenerationError("Out of memory on cpu generating one 64x64 image in float32.")
        return real_generate(prompts, seeds, settings_)

    real_dicom = worker.synthetic_dicom

    def dicom_fails_for_image_4(batch_, row, image):
        if row.index == 4:
            raise ValueError("DerivationDescription is limited to 1024 characters in DICOM (ST); got 1500.")
        return real_dicom(batch_, row, image)

    monkeypatch.setattr(generator, "generate", out_of_memory_for_seed_1002)
    monkeypatch.setattr(worker, "synthetic_dicom", dicom_fails_for_image_4)
    batch = batch_run(batch_pk=batch.pk)
    assert batch.status == "done" and batch.error == ""
    images = {image.index: image for image in batch.images.all()}
    assert {index for index, image in images.items() if image.status == "failed"} == {2, 4}
    assert (
        images[2].error
        == "Generation failed: GenerationError: Out of memory on cpu generating one 64x64 image in float32."
    )
    assert images[4].error.startswith("Writing the image failed: ValueError: DerivationDescription is limited")
    # The image next to the failed one in its chunk (index 3, seed 1003) was generated on its own and kept.
    assert images[3].status == "done" and images[3].seed == 1003
    assert not default_storage.exists(f"generation/batch-{batch.pk}/000004.png"), "a failed image keeps no file"
    assert images[4].png.name == "" and images[4].provenance == {}


def test_a_batch_whose_model_cannot_load_fails_with_the_reason(
    db, coordinator, tiny_model_dir, django_capture_on_commit_callbacks
):
    broken = tiny_model_dir.parent / "broken-copy"
    shutil.copytree(tiny_model_dir, broken)
    batch = start(coordinator, request_for(broken), django_capture_on_commit_callbacks)
    for weights in (broken / "unet").glob("*.safetensors"):
        weights.unlink()
    batch = batch_run(batch_pk=batch.pk)
    assert batch.status == "failed"
    assert batch.error.startswith("The model could not be loaded: ModelError:") and "holds no weights" in batch.error
    assert batch.images.filter(status="pending").count() == 5
    shutil.rmtree(broken)


def test_cancelling_a_queued_batch_stops_it_before_any_image(
    db, coordinator, tiny_model_dir, django_capture_on_commit_callbacks
):
    batch = start(coordinator, request_for(tiny_model_dir), django_capture_on_commit_callbacks)
    assert batch_cancel(batch=batch).status == "cancelled"
    assert batch_run(batch_pk=batch.pk).status == "cancelled"
    assert not batch.images.filter(status="done").exists()
    # Cancelling a finished batch changes nothing.
    assert batch_cancel(batch=batch).status == "cancelled"


@pytest.mark.django_db(transaction=True)
def test_a_cancel_answered_during_a_chunk_throws_that_chunk_away(coordinator, tiny_model_dir, monkeypatch, settings):
    from generation import tasks

    queued = []
    monkeypatch.setattr(tasks.run_batch, "delay", lambda **kwargs: queued.append(kwargs))
    batch = batch_start(created_by=coordinator, request=request_for(tiny_model_dir))
    assert queued == [{"batch_pk": batch.pk}], "queued once the batch's transaction committed"
    real_generate = worker._generate
    chunks = []

    def cancel_during_the_second_chunk(generator, rows, settings_):
        chunks.append([row.index for row in rows])
        results = real_generate(generator, rows, settings_)
        if len(chunks) == 2:
            # The coordinator cancels from another connection while this chunk is being generated.
            answered = []
            thread = threading.Thread(target=lambda: answered.append(_cancel_in_own_connection(batch.pk)))
            thread.start()
            thread.join()
            assert answered == ["cancelled"]
        return results

    monkeypatch.setattr(worker, "_generate", cancel_during_the_second_chunk)
    batch = batch_run(batch_pk=batch.pk)
    assert batch.status == "cancelled" and chunks == [[0, 1], [2, 3]]
    assert sorted(batch.images.filter(status="done").values_list("index", flat=True)) == [0, 1]
    folder = Path(settings.MEDIA_ROOT) / f"generation/batch-{batch.pk}"
    assert sorted(path.name for path in folder.iterdir()) == ["000000.png", "000001.png"]


def _cancel_in_own_connection(batch_pk: int) -> str:
    from django.db import connection

    try:
        return batch_cancel(batch=GenerationBatch.objects.get(pk=batch_pk)).status
    finally:
        connection.close()


def test_quiet_running_batches_are_sent_to_a_worker_again_once(
    db, coordinator, tiny_model_dir, django_capture_on_commit_callbacks, settings
):
    settings.JOB_STALE_AFTER_SECONDS = 60
    quiet = start(coordinator, request_for(tiny_model_dir), django_capture_on_commit_callbacks)
    alive = start(coordinator, request_for(tiny_model_dir), django_capture_on_commit_callbacks)
    long_ago = timezone.now() - timedelta(minutes=5)
    GenerationBatch.objects.filter(pk=quiet.pk).update(status="running", heartbeat_at=long_ago, started_at=long_ago)
    GenerationBatch.objects.filter(pk=alive.pk).update(status="running", heartbeat_at=timezone.now())
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert requeue_stale(GenerationBatch) == [quiet.pk]
    assert len(callbacks) == 1
    # Until the new run reports, a second check does not queue it again.
    assert requeue_stale(GenerationBatch) == []
    assert GenerationBatch.objects.get(pk=quiet.pk).requeued_at is not None


@pytest.mark.django_db(transaction=True)
def test_a_batch_whose_task_could_not_be_queued_is_sent_when_a_worker_starts(coordinator, tiny_model_dir, monkeypatch):
    from kombu.exceptions import OperationalError

    from generation import tasks

    def broker_down(**kwargs):
        raise OperationalError("Error 111 connecting to redis:6379. Connection refused.")

    monkeypatch.setattr(tasks.run_batch, "delay", broker_down)
    batch = batch_start(created_by=coordinator, request=request_for(tiny_model_dir))
    batch.refresh_from_db()
    assert batch.status == "queued" and batch.error.startswith("Not sent to a worker yet")
    assert "Connection refused" in batch.error
    sent = []
    monkeypatch.setattr(tasks.run_batch, "delay", lambda **kwargs: sent.append(kwargs))
    assert requeue_stale(GenerationBatch) == [batch.pk] and sent == [{"batch_pk": batch.pk}]
    batch.refresh_from_db()
    assert batch.error == "" and requeue_stale(GenerationBatch) == []


def test_a_batch_whose_workers_keep_dying_fails_instead_of_looping(
    db, coordinator, tiny_model_dir, django_capture_on_commit_callbacks
):
    batch = start(coordinator, request_for(tiny_model_dir), django_capture_on_commit_callbacks)
    long_ago = timezone.now() - timedelta(hours=1)
    GenerationBatch.objects.filter(pk=batch.pk).update(status="running", heartbeat_at=long_ago, runs=MAX_RUNS)
    batch = batch_run(batch_pk=batch.pk)
    assert batch.status == "failed" and "started 5 times" in batch.error


def test_adding_to_a_study_creates_each_case_once_and_extends_readers(
    db, coordinator, reader, make_study, tiny_model_dir, django_capture_on_commit_callbacks, monkeypatch
):
    study = make_study(real=3, synthetic=0)
    session = reader_assign(study=study, reader=reader)
    assert session.items.count() == 3
    batch = start(coordinator, request_for(tiny_model_dir), django_capture_on_commit_callbacks)
    batch = batch_run(batch_pk=batch.pk)
    BatchImage.objects.filter(batch=batch, index=4).update(status="failed", error="for the test")

    report = batch_add_to_study(batch=batch, study=study, indices=[0, 1])
    assert (report.added, report.already_added, report.refused) == ((0, 1), (), ())
    report = batch_add_to_study(batch=batch, study=study)
    assert (report.added, report.already_added) == ((2, 3), (0, 1)), "done images only, each once"
    assert report.summary() == "2 added, 2 already in the study"
    again = batch_add_to_study(batch=batch, study=study)
    assert again.added == () and again.already_added == (0, 1, 2, 3)

    cases = list(Case.objects.filter(study=study, source="generation").order_by("id"))
    assert len(cases) == 4 and {case.truth for case in cases} == {"synthetic"}
    assert {case.generator for case in cases} == {batch.generator_label}
    links = {link.image.index: link.case for link in BatchImageCase.objects.select_related("image", "case")}
    assert links[2].provenance == batch.images.get(index=2).provenance
    assert links[2].label == f"batch-{batch.pk}-000003.png"
    assert session.items.count() == 7, "the reader's order got the new cases appended"

    # A second batch with the same seeds draws the same images: those already in the study are refused as
    # duplicates; image 5, failed in the first batch, is new.
    twin = batch_run(batch_pk=start(coordinator, request_for(tiny_model_dir), django_capture_on_commit_callbacks).pk)
    report = batch_add_to_study(batch=twin, study=study)
    assert report.added == (4,) and [index for index, _ in report.refused] == [0, 1, 2, 3]
    assert "already a case" in report.refused[0][1]
    assert Case.objects.filter(study=study).count() == 8


def test_template_fields_give_counts_alternatives_and_literals():
    text = "finding = 2 x No findings, 1 x small right pleural effusion\nview = PA | AP\nmodality: CR"
    fields = parse_template_fields(text)
    assert set(fields) == {"finding", "view", "modality"} and fields["modality"] == "CR"
    assert fields["view"] == ["PA", "AP"]
    prompts = prompts_from_template("{view}. {modality}. {finding}", text)
    # 2 views x (2 + 1) findings; interleaving puts copy i of n at (i + 1/2) / n, ties in template order.
    assert prompts == [
        "PA. CR. No findings",
        "AP. CR. No findings",
        "PA. CR. small right pleural effusion",
        "AP. CR. small right pleural effusion",
        "PA. CR. No findings",
        "AP. CR. No findings",
    ]
    assert prompts_from_template("{finding}", {"finding": "2 x a, 1 x b"}, interleave=False) == ["a", "a", "b"]
    with pytest.raises(PromptError, match=r"unknown field\(s\) \{finding\}"):
        prompts_from_template("{finding}", "findings = 2 x a")
    with pytest.raises(PromptError, match="not of the form 'name = value'"):
        parse_template_fields("just some words")


def test_the_demo_model_is_built_once_and_loads(tmp_path, monkeypatch):
    first = demo_model_build(model_root=tmp_path)
    assert first.built and first.model_dir == tmp_path / "demo-tiny-sd"
    assert check_model_dir(first.model_dir) == []
    assert is_demo_model(first.model_dir) and check_adapter_dir(first.adapter_dir).rank == 4
    second = demo_model_build(model_root=tmp_path)
    assert not second.built and second.message.startswith("Demo model found")
    # A folder of the same name that is not the demo's is never replaced.
    other = tmp_path / "other"
    (other / "demo-tiny-sd").mkdir(parents=True)
    refused = demo_model_build(model_root=other)
    assert refused.model_dir is None and "is not the demo's" in refused.message
    monkeypatch.setattr("generation.demo.ml_available", lambda: False)
    skipped = demo_model_build(model_root=tmp_path / "no-ml")
    assert skipped.model_dir is None and "torch, diffusers and transformers are not installed" in skipped.message

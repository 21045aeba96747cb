"""Generation batches run by real Celery worker processes over Redis against PostgreSQL: a batch end to end with
the model loaded once per worker, a worker killed with SIGKILL mid-batch and replaced, and a cancel.

Workers run with ML_CPU_THREADS=1 (the demo's setting on small CPUs) and a short heartbeat, so that a killed
worker is noticed in seconds: JOB_STALE_AFTER_SECONDS=3 with a beat every half second.
"""

from __future__ import annotations

import io
import signal
import time
from datetime import timedelta
from pathlib import Path

import pydicom
import pytest
from django.urls import reverse
from django.utils import timezone

from generation.batch_check import BatchRequest
from generation.models import BatchImage, GenerationBatch
from generation.pipeline import GenerationSettings
from generation.services import batch_cancel, batch_start
from tests.conftest import wait_until

pytestmark = [pytest.mark.worker, pytest.mark.ml, pytest.mark.django_db(transaction=True)]

STALE_AFTER = 3.0


@pytest.fixture
def worker_env(settings, tiny_model_dir: Path, tiny_peft_adapter_dir: Path) -> dict[str, str]:
    settings.MODEL_ROOT = tiny_model_dir.parent
    settings.MODEL_EXTRA_ROOTS = [tiny_peft_adapter_dir.parent]
    return {
        "MODEL_ROOT": str(tiny_model_dir.parent),
        "MODEL_EXTRA_ROOTS": str(tiny_peft_adapter_dir.parent),
        "ML_CPU_THREADS": "1",
        "JOB_HEARTBEAT_SECONDS": "0.5",
        "JOB_STALE_AFTER_SECONDS": str(STALE_AFTER),
    }


def request_for(model: Path, count: int, *, steps: int, adapter: Path | None = None, **extra) -> BatchRequest:
    return BatchRequest(
        base_model=str(model),
        adapter=str(adapter or ""),
        prompts=tuple(
            f"view_position = PA. {'No findings' if i % 2 else 'small right pleural effusion'}" for i in range(count)
        ),
        settings=GenerationSettings(width=64, height=64, steps=steps, batch_size=2),
        base_seed=500,
        **extra,
    )


def done_indices(batch: GenerationBatch) -> set[int]:
    return set(batch.images.filter(status=BatchImage.Status.DONE).values_list("index", flat=True))


def wait_for_status(batch: GenerationBatch, status: str, *, timeout: float = 120) -> GenerationBatch:
    return wait_until(
        lambda: GenerationBatch.objects.filter(pk=batch.pk, status=status).first(),
        timeout=timeout,
        interval=0.2,
        what=f"batch {batch.pk} to be {status}",
    )


def test_a_worker_runs_batches_and_loads_the_model_once(
    celery_worker_process, worker_env, coordinator, tiny_model_dir, tiny_peft_adapter_dir
):
    celery_worker_process(extra_env=worker_env)
    first = batch_start(
        created_by=coordinator,
        request=request_for(tiny_model_dir, 4, steps=4, adapter=tiny_peft_adapter_dir, write_dicom=True),
    )
    first = wait_for_status(first, "done")
    second = wait_for_status(
        batch_start(
            created_by=coordinator, request=request_for(tiny_model_dir, 3, steps=4, adapter=tiny_peft_adapter_dir)
        ),
        "done",
    )
    assert done_indices(first) == {0, 1, 2, 3} and done_indices(second) == {0, 1, 2}
    # One worker process, one loaded pipeline: both runs used the same generator object.
    (run_1,), (run_2,) = first.run_log, second.run_log
    assert run_1["pid"] == run_2["pid"] and run_1["generator"] == run_2["generator"]
    assert run_1["worker"].startswith("test0@")
    image = first.images.get(index=3)
    assert image.seed == 503 and image.provenance["device"].endswith("(1 threads)"), "ML_CPU_THREADS applied"
    with image.dicom.open("rb") as handle:
        dataset = pydicom.dcmread(io.BytesIO(handle.read()))
    assert dataset.ImageComments.startswith("SYNTHETIC IMAGE") and "seed 503" in dataset.DerivationDescription


def test_a_worker_killed_mid_batch_is_replaced_and_the_batch_ends_with_exactly_its_images(
    celery_worker_process, worker_env, coordinator, tiny_model_dir, settings
):
    total = 20
    first_worker = celery_worker_process(extra_env=worker_env)
    batch = batch_start(created_by=coordinator, request=request_for(tiny_model_dir, total, steps=30))
    wait_until(lambda: len(done_indices(batch)) >= 2, timeout=120, interval=0.05, what="the first chunk")
    first_worker.send_signal(signal.SIGKILL)
    first_worker.wait(timeout=10)
    before = dict(batch.images.filter(status="done").values_list("index", "png_sha256"))
    assert 2 <= len(before) < total, "killed mid-batch"
    assert GenerationBatch.objects.get(pk=batch.pk).status == "running"

    # The replacement worker re-queues the batch when it starts, once the dead worker's heartbeat is stale.
    wait_until(
        lambda: GenerationBatch.objects.get(pk=batch.pk).heartbeat_at < timezone.now() - timedelta(seconds=STALE_AFTER),
        timeout=30,
        what="the killed worker's heartbeat to go stale",
    )
    celery_worker_process(extra_env=worker_env)
    batch = wait_for_status(batch, "done")

    images = list(batch.images.order_by("index"))
    assert [(image.index, image.seed, image.status) for image in images] == [
        (index, 500 + index, "done") for index in range(total)
    ], "no gaps, no duplicates, the same seeds"
    assert len({image.png_sha256 for image in images}) == total
    assert {image.index: image.png_sha256 for image in images if image.index in before} == before
    folder = Path(settings.MEDIA_ROOT) / f"generation/batch-{batch.pk}"
    assert sorted(path.name for path in folder.iterdir()) == [f"{index:06d}.png" for index in range(total)]
    assert batch.runs == 2 and batch.run_log[0]["pid"] != batch.run_log[1]["pid"]


def test_cancel_stops_a_running_batch_and_the_worker_moves_on(
    celery_worker_process, worker_env, coordinator, tiny_model_dir, client
):
    celery_worker_process(extra_env=worker_env)
    batch = batch_start(created_by=coordinator, request=request_for(tiny_model_dir, 40, steps=30))
    wait_until(lambda: len(done_indices(batch)) >= 2, timeout=120, interval=0.05, what="the first chunk")
    assert batch_cancel(batch=batch).status == "cancelled"
    done_at_cancel = done_indices(batch)
    assert len(done_at_cancel) < 40
    time.sleep(2.0)  # several chunks' worth of generation time
    assert done_indices(batch) == done_at_cancel, "no image is added once the cancel is answered"

    # The worker dropped the cancelled batch: a new one runs to the end.
    follow_up = batch_start(created_by=coordinator, request=request_for(tiny_model_dir, 2, steps=4))
    wait_for_status(follow_up, "done", timeout=60)
    assert done_indices(batch) == done_at_cancel

    client.force_login(coordinator)
    api = client.get(reverse("generation-batch-detail", args=[batch.pk])).json()
    assert api["status"] == "cancelled" and api["done"] == len(done_at_cancel)
    page = client.get(reverse("generation:batch_detail", args=[batch.pk])).content.decode()
    assert "Cancelled" in page and "no images were added after that" in page

"""A generation batch in Chromium, end to end: the form (with the demo model as its default) starts a small batch,
a real Celery worker runs it, the progress bar reaches done, the gallery shows every image and its provenance, and
the images are added to a study."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.urls import reverse

from generation.models import GenerationBatch
from readerstudy.models import Case
from tests.browser.conftest import log_in

pytestmark = [pytest.mark.browser, pytest.mark.worker, pytest.mark.ml, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def demo_model_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("diffusers")
    from generation.demo import demo_model_build

    root = tmp_path_factory.mktemp("model-root")
    assert demo_model_build(model_root=root).built
    return root


def test_start_watch_and_add_a_batch_in_the_browser(
    live_server, new_page, celery_worker_process, demo_model_root, settings, coordinator, make_study, tmp_path
):
    settings.MODEL_ROOT = demo_model_root
    celery_worker_process(extra_env={"MODEL_ROOT": str(demo_model_root), "ML_CPU_THREADS": "1"})
    study = make_study(real=2, synthetic=0, name="Effusion reader study")
    page = new_page(viewport=(1360, 900))
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("response", lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    log_in(page, live_server.url, "coord", "pw-coord")

    page.click("nav >> text=Generation")
    assert page.url.endswith(reverse("generation:batch_list"))
    assert "random weights" in page.locator(".demo-note").inner_text()
    assert page.input_value("#id_base_model") == "demo-tiny-sd"
    assert page.input_value("#id_adapter") == "demo-tiny-lora"
    assert page.locator(".panel-template").is_visible() and not page.locator(".panel-list").is_visible()
    page.fill("#id_template_fields", "finding = 2 x No findings, 2 x small right pleural effusion")
    for field, value in (("#id_width", "100"), ("#id_height", "64"), ("#id_steps", "10")):
        page.fill(field, value)
    page.check("#id_write_dicom")
    page.click("button:has-text('Start batch')")
    # An impossible size is a message on the form, next to the field; what was typed is kept.
    assert "multiple of 8" in page.locator(".field.has-error").inner_text()
    assert page.input_value("#id_steps") == "10" and not GenerationBatch.objects.exists()
    page.screenshot(path=str(tmp_path / "generation-form-error.png"), full_page=True)
    page.fill("#id_width", "64")
    page.screenshot(path=str(tmp_path / "generation-form.png"), full_page=True)
    page.click("button:has-text('Start batch')")

    page.wait_for_url("**/generation/batches/*/")
    batch = GenerationBatch.objects.get()
    assert batch.total == 4 and batch.is_demo_model
    page.wait_for_selector("#batch-status .badge.batch-done", timeout=90_000)
    assert page.locator(".bar-done").evaluate("bar => bar.style.width") == "100%"
    assert "4 of 4 images" in page.locator("#batch-status .counts").inner_text()
    page.wait_for_function(
        "[...document.querySelectorAll('.gallery img')].length === 4 && "
        "[...document.querySelectorAll('.gallery img')].every(img => img.complete && img.naturalWidth === 64)",
        timeout=15_000,
    )
    page.screenshot(path=str(tmp_path / "generation-batch.png"), full_page=True)

    # An image's full provenance opens in a dialog.
    page.locator(".gallery a").nth(1).click()
    dialog = page.locator("#provenance")
    dialog.locator(".provenance-facts").wait_for()
    assert dialog.is_visible()
    facts = dialog.inner_text()
    assert "small right pleural effusion" in facts and "demo-tiny-lora" in facts and "PNDMScheduler" in facts
    assert dialog.locator("a:has-text('DICOM')").count() == 1
    page.screenshot(path=str(tmp_path / "generation-provenance.png"))
    dialog.locator("button:has-text('Close')").click()
    assert not dialog.is_visible()

    # Add the images to a study, twice: the second time adds nothing.
    page.select_option("#id_study", label="Effusion reader study")
    page.click("button:has-text('Add images to the study')")
    assert "Effusion reader study: 4 added." in page.locator(".messages").inner_text()
    page.select_option("#id_study", label="Effusion reader study")
    page.click("button:has-text('Add images to the study')")
    assert "0 added, 4 already in the study" in page.locator(".messages").inner_text()
    assert Case.objects.filter(study=study, source="generation", truth="synthetic").count() == 4
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    assert errors == []

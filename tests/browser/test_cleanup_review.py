"""The cleanup review page in Chromium: before/after slider and flip, the mask overlay and boxes, and deciding with
the keyboard (A accepts, X rejects, the next image to review is swapped in)."""

from __future__ import annotations

import os

import pytest
from django.urls import reverse

from cleanup import tasks
from cleanup.models import CleanupItem
from cleanup.ocr import tesseract_available
from cleanup.pipeline import CleanupConfig
from cleanup.services import cleanup_job_start
from cleanup.worker import cleanup_job_run
from tests.browser.conftest import log_in
from tests.factories import PhantomStudyFactory

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not tesseract_available(), reason="Debian's tesseract is not installed"),
]
# Set CLEANUP_SCREENSHOTS=folder to keep the screenshots for a look.
SCREENSHOTS = os.environ.get("CLEANUP_SCREENSHOTS")


@pytest.fixture
def cleaned_job(coordinator, monkeypatch):
    """Three labelled images and a clean one, cleaned here (no worker: the task message is not sent)."""
    monkeypatch.setattr(tasks.run_cleanup_job, "delay", lambda **kwargs: None)
    study = PhantomStudyFactory(
        created_by=coordinator,
        cases=[("real", "PORTABLE"), ("synthetic", "AP"), ("real", None), ("synthetic", "SUPINE")],
        size=320,
        name="Cleanup review study",
    )
    job = cleanup_job_start(
        created_by=coordinator, study=study, cases=list(study.cases.order_by("id")), config=CleanupConfig()
    )
    return cleanup_job_run(job_pk=job.pk)


def shown_item(page) -> int:
    return int(page.locator("[data-review]").get_attribute("data-item"))


def wait_for_item(page, item_pk: int) -> None:
    """Until the review shows this item and compare.js has set it up (after htmx settles the swap)."""
    page.wait_for_function(
        "n => { const r = document.querySelector('[data-review]'); return r.dataset.item === n && r.dataset.ready; }",
        arg=str(item_pk),
    )


def compare(page, attribute: str) -> str:
    return page.locator(".compare").get_attribute(f"data-{attribute}")


def style(page, selector: str, prop: str) -> str:
    return page.eval_on_selector(selector, f"element => getComputedStyle(element).{prop}")


def test_review_with_slider_mask_and_keyboard(live_server, new_page, cleaned_job, coordinator, tmp_path):
    shots = SCREENSHOTS or str(tmp_path)
    page = new_page(viewport=(1400, 900))
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on(
        "response",
        lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 and "favicon" not in r.url else None,
    )
    log_in(page, live_server.url, "coord", "pw-coord")
    page.goto(live_server.url + reverse("cleanup:job_detail", args=[cleaned_job.pk]))
    page.screenshot(path=f"{shots}/cleanup-job.png", full_page=True)
    page.click("text=Review 4 images")
    page.wait_for_function("document.querySelector('.compare img.after')?.complete")
    page.wait_for_function("document.querySelector('[data-review]').dataset.ready")

    queue = list(cleaned_job.items.filter(changed=True).order_by("position")) + list(
        cleaned_job.items.filter(changed=False)
    )
    assert shown_item(page) == queue[0].pk
    assert page.locator(".review-counter").inner_text() == "Image 1 of 4"
    assert page.locator(".box-list code").first.inner_text() == "PORTABLE"

    # Slider first: the "before" layer is clipped at the split; dragging moves it.
    assert (compare(page, "mode"), compare(page, "mask")) == ("slider", "off")
    frame = page.locator(".compare-frame").bounding_box()
    y = frame["y"] + frame["height"] / 2
    page.mouse.move(frame["x"] + frame["width"] * 0.5, y)
    page.mouse.down()
    page.mouse.move(frame["x"] + frame["width"] * 0.25, y, steps=5)
    page.mouse.up()
    split = float(page.eval_on_selector(".compare", "e => e.style.getPropertyValue('--split')").rstrip("%"))
    assert 23 <= split <= 27
    assert "inset" in style(page, ".compare img.before", "clipPath")

    # Space flips between before and after; S goes back to the slider; the buttons do the same.
    page.keyboard.press(" ")
    assert compare(page, "mode") == "before" and style(page, ".compare img.before", "clipPath") == "none"
    page.keyboard.press(" ")
    assert compare(page, "mode") == "after" and style(page, ".compare img.before", "visibility") == "hidden"
    page.click(".view-modes label:has-text('Before')")
    assert compare(page, "mode") == "before"
    page.keyboard.press("s")
    assert compare(page, "mode") == "slider"

    # M overlays the mask, O draws the boxes; hovering a listed box highlights it.
    assert style(page, ".compare img.mask", "display") == "none"
    page.keyboard.press("m")
    assert compare(page, "mask") == "on" and style(page, ".compare img.mask", "display") == "block"
    page.keyboard.press("o")
    assert compare(page, "boxes") == "on"
    page.wait_for_function("getComputedStyle(document.querySelector('.compare .box')).opacity === '1'")
    page.screenshot(path=f"{shots}/cleanup-review-mask.png")
    page.keyboard.press("o")
    page.hover(".box-list li")
    assert "hot" in page.locator(".compare .box").first.get_attribute("class")

    # A accepts and brings the next image to review; the view settings carry over.
    page.keyboard.press("a")
    wait_for_item(page, queue[1].pk)
    first = CleanupItem.objects.get(pk=queue[0].pk)
    assert first.review == CleanupItem.Review.ACCEPTED and first.case.provenance["cleanup"]["item"] == first.pk
    assert compare(page, "mask") == "on"
    page.wait_for_url(f"**?item={queue[1].pk}")
    page.wait_for_function("document.querySelector('.compare img.after')?.complete")
    page.keyboard.press("m")
    page.screenshot(path=f"{shots}/cleanup-review.png")

    # X rejects it: the case keeps its served image.
    served = queue[1].case.image_sha256
    page.keyboard.press("x")
    wait_for_item(page, queue[2].pk)
    second = CleanupItem.objects.get(pk=queue[1].pk)
    assert second.review == CleanupItem.Review.REJECTED and second.case.image_sha256 == served
    assert "cleanup" not in second.case.provenance

    # Arrows move between images without deciding anything.
    page.keyboard.press("ArrowLeft")
    wait_for_item(page, queue[1].pk)
    assert page.locator(".review-state .badge.review-rejected").inner_text() == "Rejected"
    page.keyboard.press("ArrowRight")
    wait_for_item(page, queue[2].pk)
    page.keyboard.press("ArrowRight")
    wait_for_item(page, queue[3].pk)
    assert "unchanged" in page.locator(".compare-tools").inner_text()
    page.screenshot(path=f"{shots}/cleanup-review-unchanged.png")
    assert CleanupItem.objects.filter(job=cleaned_job, review="pending").count() == 2
    assert problems == []

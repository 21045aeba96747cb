"""The reading loop in a real browser: keyboard only, window/level, prefetch, close the tab and resume."""

from __future__ import annotations

import re

import pytest

from readerstudy.models import Reading
from readerstudy.services import reader_assign
from tests.browser.conftest import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def counter(page) -> str:
    return page.locator(".counter").inner_text()


def test_keyboard_reading_loop_with_window_level_and_resume(live_server, new_page, make_study, reader, tmp_path):
    study = make_study(real=6, synthetic=6)
    session = reader_assign(study=study, reader=reader)
    page = new_page()
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    log_in(page, live_server.url, "reader", "pw-reader")
    page.goto(f"{live_server.url}/read/{session.pk}/")
    page.wait_for_function("document.querySelector('#xray').complete")
    assert counter(page) == "1 of 12"

    # Window/level by dragging: right widens the window, down raises the level.
    image = page.locator("#xray")
    assert image.get_attribute("data-window") == "1.000"
    box = page.locator(".stage").bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x - 120, y + 80, steps=8)
    page.mouse.up()
    assert float(image.get_attribute("data-window")) < 0.6
    assert float(image.get_attribute("data-level")) > 0.6
    slope = float(page.locator("#window-level feFuncR").get_attribute("slope"))
    assert slope > 1.6  # 1 / window: the filter really applies the new window
    page.keyboard.press("l")  # lung preset
    assert image.get_attribute("data-window") == "0.700"
    page.keyboard.press("i")
    assert image.get_attribute("data-invert") == "1"
    assert float(page.locator("#window-level feFuncR").get_attribute("slope")) < 0
    page.keyboard.press("0")
    assert (image.get_attribute("data-window"), image.get_attribute("data-invert")) == ("1.000", "0")
    page.screenshot(path=str(tmp_path / "reading.png"))

    # Ten cases with the keyboard only: call, confidence, three quality scores, Enter.
    second_image = page.locator("#case").get_attribute("data-next-image")
    assert any(url.endswith(second_image) for url in requested), "the next image is prefetched"
    for number in range(1, 11):
        page.keyboard.press("s" if number % 2 else "r")
        for key in ("4", "3", "4", "5"):
            page.keyboard.press(key)
        page.wait_for_timeout(150)  # a moment on the case: active time must be counted
        page.keyboard.press("Enter")
        page.wait_for_function(
            "n => (document.querySelector('.counter')?.innerText || '').startsWith(n + ' of')",
            arg=str(number + 1),
        )
    readings = list(Reading.objects.filter(item__session=session).order_by("item__position"))
    assert len(readings) == 10
    assert [r.call for r in readings] == ["synthetic", "real"] * 5
    assert {(r.confidence, r.anatomy, r.style, r.artifacts) for r in readings} == {(4, 3, 4, 5)}
    assert all(r.active_ms >= 100 for r in readings)

    # Close the tab and come back later: the reader resumes exactly at case 11.
    page.context.close()
    later = new_page()
    log_in(later, live_server.url, "reader", "pw-reader")
    later.click("text=Resume")
    later.wait_for_function("document.querySelector('#xray') && document.querySelector('#xray').complete")
    assert counter(later) == "11 of 12"
    assert re.search(r"/read/\d+/", later.url)


def test_enter_without_an_answer_says_what_is_missing(live_server, new_page, make_study, reader):
    study = make_study(real=2, synthetic=2)
    session = reader_assign(study=study, reader=reader)
    page = new_page()
    log_in(page, live_server.url, "reader", "pw-reader")
    page.goto(f"{live_server.url}/read/{session.pk}/")
    page.keyboard.press("r")
    page.keyboard.press("Enter")
    assert "Still to answer: confidence, anatomy, style, artifacts" in page.locator(".client-error").inner_text()
    assert Reading.objects.count() == 0


def test_time_while_the_page_is_hidden_is_not_counted(live_server, new_page, make_study, reader):
    study = make_study(real=1, synthetic=1, quality_scoring="off")
    session = reader_assign(study=study, reader=reader)
    page = new_page()
    log_in(page, live_server.url, "reader", "pw-reader")
    page.goto(f"{live_server.url}/read/{session.pk}/")
    page.wait_for_function("document.querySelector('#xray').complete")
    page.wait_for_timeout(600)
    # The reader switches to another tab for two seconds.
    page.evaluate(
        "Object.defineProperty(document, 'visibilityState', {configurable: true, get: () => 'hidden'});"
        "document.dispatchEvent(new Event('visibilitychange'))"
    )
    page.wait_for_timeout(2000)
    page.evaluate(
        "Object.defineProperty(document, 'visibilityState', {configurable: true, get: () => 'visible'});"
        "document.dispatchEvent(new Event('visibilitychange'))"
    )
    page.keyboard.press("r")
    page.keyboard.press("2")
    page.keyboard.press("Enter")
    page.wait_for_function("document.querySelector('.counter').innerText.startsWith('2 of')")
    active_ms = Reading.objects.get().active_ms
    assert 400 <= active_ms < 1500, active_ms

"""The coordinator dashboard and printable report in Chromium: every figure and thumbnail shows, nothing spills
sideways, printing hides the controls, and a reader is turned away."""

from __future__ import annotations

import pytest
from django.urls import reverse

from tests.browser.conftest import log_in
from tests.factories import read_study

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def read(make_study, make_user):
    readers = [make_user(f"reader-{name}", "reader") for name in ("ann", "bob", "cyd")]
    study = make_study(real=6, synthetic=6, practice=1)
    read_study(study, readers)
    return study


def test_dashboard_shows_every_figure_and_thumbnail(live_server, new_page, read, coordinator, tmp_path):
    page = new_page(viewport=(1280, 900))
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    # Every request the page makes succeeds (the browser's own favicon guess aside).
    page.on(
        "response",
        lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 and "favicon" not in r.url else None,
    )
    log_in(page, live_server.url, "coord", "pw-coord")
    page.goto(f"{live_server.url}{reverse('study_detail', args=[read.pk])}")
    page.click("text=Dashboard")
    page.wait_for_load_state("networkidle")
    assert page.url.endswith(reverse("study_dashboard", args=[read.pk]))
    assert page.locator(".rp-headline strong").inner_text().startswith("0.")
    plots = page.locator("svg.plot")
    assert plots.count() == 6
    for index in range(plots.count()):
        box = plots.nth(index).bounding_box()
        assert box["width"] > 300 and box["height"] > 150  # readable, not a postage stamp
    # Lazy thumbnails load as the coordinator scrolls to them, through the coordinator-only image URL.
    page.locator("#realism").scroll_into_view_if_needed()
    page.wait_for_function(
        "[...document.querySelectorAll('.rp-card-image img')].every(img => img.complete && img.naturalWidth > 0)"
    )
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
    assert errors == []


def test_printable_report_prints_without_controls(live_server, new_page, read, coordinator, tmp_path):
    page = new_page(viewport=(1100, 900))
    log_in(page, live_server.url, "coord", "pw-coord")
    page.goto(f"{live_server.url}{reverse('study_report', args=[read.pk])}")
    assert page.locator("svg.plot").count() == 6
    assert page.evaluate(
        "[...document.querySelectorAll('.rp-card-image img')].every(img => img.complete && img.naturalWidth > 0)"
    )
    assert page.locator("button", has_text="Print").is_visible()
    page.emulate_media(media="print")
    assert not page.locator("button", has_text="Print").is_visible()
    pdf = page.pdf(format="A4")  # Chromium's own print path, as a coordinator's "Save as PDF" would use
    assert pdf.startswith(b"%PDF-")
    (tmp_path / "printed.pdf").write_bytes(pdf)


def test_reader_is_turned_away_from_the_dashboard(live_server, new_page, read):
    page = new_page()
    log_in(page, live_server.url, "reader-ann", "pw-reader-ann")
    response = page.goto(f"{live_server.url}{reverse('study_dashboard', args=[read.pk])}")
    assert response.status == 403
    assert page.locator("svg.plot").count() == 0

"""The coordinator dashboard and printable report: who may see them, and that every section renders with no, one
and many readings."""

from __future__ import annotations

import pytest
from django.urls import reverse

from readerstudy.analysis import study_analysis
from readerstudy.exports import EXPORT_FORMATS
from readerstudy.services import reader_assign
from tests.factories import ReadingFactory, read_study

pytestmark = pytest.mark.django_db

SECTIONS = ("Progress", "Can readers as a population tell synthetic from real?")
FULL_SECTIONS = (
    "Per reader",
    "ROC curves and confusion matrices",
    "Multi-reader multi-case analysis",
    "Image quality: real vs synthetic",
    "Reading time",
    "Synthetic images that fooled readers",
)


@pytest.fixture
def readers(make_user):
    return [make_user(f"reader-{name}", "reader") for name in ("ann", "bob", "cyd", "dan")]


@pytest.fixture
def read(make_study, readers):
    study = make_study(real=5, synthetic=5, practice=2)
    read_study(study, readers)
    return study


def page_urls(study) -> list[str]:
    return [
        reverse("study_dashboard", args=[study.pk]),
        reverse("study_report", args=[study.pk]),
        reverse("study_report", args=[study.pk]) + "?download=1",
        *(reverse("study_export", args=[study.pk, slug]) for slug in EXPORT_FORMATS),
    ]


@pytest.mark.parametrize("role", ["anonymous", "reader", "coordinator", "admin"])
def test_every_page_and_export_is_for_coordinators_only(client, read, readers, coordinator, admin_user, role):
    users = {"reader": readers[0], "coordinator": coordinator, "admin": admin_user}
    if role != "anonymous":
        client.force_login(users[role])
    for url in page_urls(read):
        response = client.get(url)
        if role == "anonymous":
            assert response.status_code == 302 and response["Location"].startswith(reverse("login")), url
        elif role == "reader":
            assert response.status_code == 403, url
            assert b"AUC" not in response.content
        else:
            assert response.status_code == 200, url


def test_reader_cannot_post_or_guess_formats(client, read, coordinator):
    client.force_login(coordinator)
    assert client.post(reverse("study_dashboard", args=[read.pk])).status_code == 405
    assert client.get(reverse("study_export", args=[read.pk, "readings.exe"])).status_code == 404
    assert client.get(reverse("study_dashboard", args=[read.pk + 999])).status_code == 404


def test_study_page_links_to_the_dashboard(client, read, coordinator):
    client.force_login(coordinator)
    page = client.get(reverse("study_detail", args=[read.pk])).content.decode()
    assert reverse("study_dashboard", args=[read.pk]) in page


def test_dashboard_with_many_readings_shows_every_section_with_figures(client, read, coordinator):
    client.force_login(coordinator)
    page = client.get(reverse("study_dashboard", args=[read.pk])).content.decode()
    for title in SECTIONS + FULL_SECTIONS:
        assert title in page
    assert "Reader-population AUC" in page
    assert page.count('<svg class="plot"') == 6  # forest, ROC, confusion, quality, times, fooled
    report = study_analysis(study=read).report
    headline_auc = report.mrmc.auc[0].random_readers_random_cases.modalities[0].estimate
    assert f"{headline_auc:.3f}" in page
    for reader in report.design.readers:
        assert reader in page
    # Thumbnails go through the coordinator-only case image URL.
    top_case = report.realism.images[0].case
    assert reverse("case_image", args=[read.pk, int(top_case)]) in page


def test_dashboard_with_no_readings_says_so(client, make_study, readers, coordinator):
    study = make_study(real=3, synthetic=3)
    reader_assign(study=study, reader=readers[0])
    client.force_login(coordinator)
    response = client.get(reverse("study_dashboard", args=[study.pk]))
    page = response.content.decode()
    assert response.status_code == 200
    assert "No readings yet" in page
    assert "Per reader" not in page and "<svg" not in page


def test_dashboard_with_no_readers_says_so(client, make_study, coordinator):
    study = make_study(real=2, synthetic=2)
    client.force_login(coordinator)
    page = client.get(reverse("study_dashboard", args=[study.pk])).content.decode()
    assert "No readers are assigned to this study yet." in page


def test_dashboard_with_one_reading_explains_what_is_missing(client, make_study, readers, coordinator):
    study = make_study(real=3, synthetic=3)
    read_study(study, readers[:1], limit=1)
    client.force_login(coordinator)
    response = client.get(reverse("study_dashboard", args=[study.pk]))
    page = response.content.decode()
    assert response.status_code == 200
    for title in SECTIONS + FULL_SECTIONS:
        assert title in page
    assert "Readers have read only one class so far" in page
    assert "ROC curves appear once a reader has read both real and synthetic images." in page
    assert "The multi-reader analysis needs at least two real and two synthetic cases" in page


def test_dashboard_with_one_reader_reports_fixed_reader_results(client, make_study, readers, coordinator):
    study = make_study(real=4, synthetic=4)
    read_study(study, readers[:1])
    client.force_login(coordinator)
    page = client.get(reverse("study_dashboard", args=[study.pk])).content.decode()
    assert "fixed readers, random cases: with one reader the result describes this reader only" in page


def test_printable_report_is_self_contained(client, read, coordinator):
    client.force_login(coordinator)
    response = client.get(reverse("study_report", args=[read.pk]) + "?download=1")
    page = response.content.decode()
    assert response["Content-Disposition"] == f'attachment; filename="study-{read.pk}-report.html"'
    assert "<style>" in page and "rp-section" in page
    assert "<link" not in page and "<script" not in page
    assert "data:image/png;base64," in page  # thumbnails inline, so the file works offline
    for title in FULL_SECTIONS:
        assert title in page


def test_statistics_follow_new_readings(client, make_study, readers, coordinator):
    study = make_study(real=3, synthetic=3)
    sessions = read_study(study, readers[:2], limit=2)
    client.force_login(coordinator)
    url = reverse("study_dashboard", args=[study.pk])
    assert "4 analysed readings" in client.get(url).content.decode()

    ReadingFactory(session=sessions[1], reader_index=1)
    assert "5 analysed readings" in client.get(url).content.decode()


def test_report_and_pdf_survive_a_missing_image_file(client, read, coordinator):
    report = study_analysis(study=read).report
    case = read.cases.get(pk=int(report.realism.images[0].case))
    case.image.storage.delete(case.image.name)
    client.force_login(coordinator)
    page = client.get(reverse("study_report", args=[read.pk]))
    assert page.status_code == 200
    html = page.content.decode()
    assert f"case {case.pk}" in html  # still ranked and listed, just without its picture
    assert f'alt="Synthetic case {case.pk}"' not in html
    assert f'alt="Synthetic case {report.realism.images[1].case}"' in html
    pdf = client.get(reverse("study_export", args=[read.pk, "report.pdf"]))
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF-")

"""Exports of a study: each file opens in the tool it is for, and the long CSV, analysed by the command line,
gives exactly the dashboard's numbers."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from django.urls import reverse

from readerstudy.analysis import study_analysis, study_table
from readerstudy.exports import EXPORT_FORMATS, READINGS_CSV_COLUMNS
from readerstudy.stats.formats import parse_imrmc, parse_long_csv, parse_rjafroc_xlsx
from tests.factories import read_study

pytestmark = pytest.mark.django_db
REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def readers(make_user):
    return [make_user(f"reader-{name}", "reader") for name in ("ann", "bob", "cyd")]


@pytest.fixture
def read(make_study, readers):
    study = make_study(real=6, synthetic=6, practice=2)
    read_study(study, readers)
    return study


def download(client, study, slug) -> tuple[bytes, object]:
    response = client.get(reverse("study_export", args=[study.pk, slug]))
    assert response.status_code == 200, response.content[:200]
    body = b"".join(response.streaming_content) if response.streaming else response.content
    return body, response


def test_long_csv_analysed_by_the_command_line_gives_the_dashboards_numbers(client, read, coordinator, tmp_path):
    client.force_login(coordinator)
    body, _ = download(client, read, "readings.csv")
    path = tmp_path / "study.csv"
    path.write_bytes(body)
    result = subprocess.run(
        [sys.executable, "-m", "readerstudy.stats", str(path)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    from_command = json.loads(result.stdout)
    # The dashboard's report, through the same JSON encoding: every number must agree to the last digit.
    dashboard = json.loads(json.dumps(study_analysis(study=read).report.to_dict(), allow_nan=False))
    assert from_command == dashboard
    assert from_command["design"]["n_readings"] == 3 * 12
    assert from_command["mrmc"]["auc"][0]["random_readers_random_cases"]["modalities"][0]["estimate"] > 0


def test_dashboard_page_shows_the_numbers_the_command_prints(client, read, coordinator, tmp_path):
    client.force_login(coordinator)
    body, _ = download(client, read, "readings.csv")
    path = tmp_path / "study.csv"
    path.write_bytes(body)
    result = subprocess.run(
        [sys.executable, "-m", "readerstudy.stats", str(path)], cwd=REPO_ROOT, capture_output=True, text=True
    )
    report = json.loads(result.stdout)
    estimate = report["mrmc"]["auc"][0]["random_readers_random_cases"]["modalities"][0]
    page = client.get(reverse("study_dashboard", args=[read.pk])).content.decode()
    assert f"{estimate['estimate']:.3f}" in page
    assert f"{estimate['ci']['lower']:.3f}–{estimate['ci']['upper']:.3f}" in page
    for entry in report["binary"]["per_reader"]:
        accuracy = entry["metrics"]["accuracy"]
        assert (
            f"{accuracy['estimate']:.2f} ({accuracy['wilson']['lower']:.2f}–{accuracy['wilson']['upper']:.2f})" in page
        )


def test_long_csv_has_one_row_per_main_reading_with_its_context(client, read, coordinator):
    client.force_login(coordinator)
    body, response = download(client, read, "readings.csv")
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == f'attachment; filename="study-{read.pk}-readings.csv"'
    rows = list(csv.DictReader(io.StringIO(body.decode())))
    assert tuple(rows[0]) == READINGS_CSV_COLUMNS
    assert len(rows) == 3 * 12  # the 2 practice readings of each reader are left out
    levels = read.confidence_levels
    for row in rows:
        assert row["modality"] == "study"
        assert row["truth"] == ("1" if row["truth_class"] == "synthetic" else "0")
        assert row["label"] == ("1" if row["call"] == "synthetic" else "0")
        confidence = int(row["confidence"])
        expected = levels + confidence if row["call"] == "synthetic" else levels + 1 - confidence
        assert int(row["rating"]) == expected
        assert row["generator"] == ("gen-a" if row["truth"] == "1" else "")
        assert row["created_at"].endswith("Z") and row["revision"] == "1"
    positions = [int(row["position"]) for row in rows if row["reader"] == "reader-ann"]
    assert positions == sorted(positions) and min(positions) == 3  # after 2 practice items, 1-based


def test_imrmc_and_rjafroc_files_read_back_as_the_same_ratings(client, read, coordinator):
    client.force_login(coordinator)
    table = study_table(study=read)
    expected = sorted(zip(table.reader, table.case, table.truth.tolist(), table.rating.tolist(), strict=True))

    body, response = download(client, read, "imrmc")
    assert response["Content-Disposition"] == f'attachment; filename="study-{read.pk}-readings.imrmc"'
    assert b"BEGIN DATA:" in body
    parsed = parse_imrmc(body.decode())
    assert (
        sorted(zip(parsed.reader, parsed.case, parsed.truth.tolist(), parsed.rating.tolist(), strict=True)) == expected
    )

    body, response = download(client, read, "rjafroc.xlsx")
    assert response["Content-Type"] == EXPORT_FORMATS["rjafroc.xlsx"].content_type
    parsed = parse_rjafroc_xlsx(body)
    assert (
        sorted(zip(parsed.reader, parsed.case, parsed.truth.tolist(), parsed.rating.tolist(), strict=True)) == expected
    )

    body, _ = download(client, read, "rjafroc.csv")
    assert body.decode().splitlines()[0] == "Reader,Treatment,Case,Truth,Rating"
    parsed = parse_long_csv(body.decode())
    assert (
        sorted(zip(parsed.reader, parsed.case, parsed.truth.tolist(), parsed.rating.tolist(), strict=True)) == expected
    )


def test_report_workbook_has_a_sheet_per_table_and_every_reading(client, read, coordinator):
    from openpyxl import load_workbook

    client.force_login(coordinator)
    body, response = download(client, read, "report.xlsx")
    assert response["Content-Disposition"] == f'attachment; filename="study-{read.pk}-report.xlsx"'
    workbook = load_workbook(io.BytesIO(body), read_only=True)
    for sheet in ("Summary", "Per reader", "Pooled", "MRMC", "ROC points", "Agreement", "Quality"):
        assert sheet in workbook.sheetnames
    for sheet in ("Reading time", "Realism", "Readings"):
        assert sheet in workbook.sheetnames
    readings = list(workbook["Readings"].iter_rows(values_only=True))
    assert readings[0] == READINGS_CSV_COLUMNS and len(readings) == 1 + 3 * 12
    per_reader = list(workbook["Per reader"].iter_rows(values_only=True))
    report = study_analysis(study=read).report
    assert [row[0] for row in per_reader[1:]] == list(report.design.readers)
    auc_column = per_reader[0].index("AUC")
    assert [row[auc_column] for row in per_reader[1:]] == [e.estimate.auc for e in report.roc.per_reader]


def test_report_json_is_the_api_payload(client, read, coordinator):
    client.force_login(coordinator)
    body, response = download(client, read, "report.json")
    assert response["Content-Type"] == "application/json"
    payload = json.loads(body)
    api = client.get(f"/api/studies/{read.pk}/report/").json()
    assert payload["report"] == api["report"]
    assert payload["study"] == {
        "id": read.pk,
        "name": read.name,
        "status": "open",
        "confidence_levels": read.confidence_levels,
        "modality": "study",
    }


def test_pdf_report_is_a_multi_page_pdf(client, read, coordinator):
    client.force_login(coordinator)
    body, response = download(client, read, "report.pdf")
    assert response["Content-Type"] == "application/pdf"
    assert body.startswith(b"%PDF-") and body.count(b"/Type /Page\n") + body.count(b"/Type /Page ") >= 3


def test_empty_study_exports_a_header_and_refuses_rating_files(client, make_study, coordinator):
    study = make_study(real=2, synthetic=2)
    client.force_login(coordinator)
    body, _ = download(client, study, "readings.csv")
    assert body.decode() == ",".join(READINGS_CSV_COLUMNS) + "\n"
    for slug in ("imrmc", "rjafroc.xlsx", "rjafroc.csv"):
        response = client.get(reverse("study_export", args=[study.pk, slug]))
        assert response.status_code == 409
        assert "no analysed readings yet" in response.content.decode()
    for slug in ("report.json", "report.xlsx", "report.pdf"):
        download(client, study, slug)
    assert client.get(f"/api/studies/{study.pk}/report/").json()["problem"].startswith("No readings yet")


@pytest.mark.parametrize("role", ["anonymous", "reader", "coordinator", "admin"])
def test_api_report_and_exports_are_for_coordinators_only(client, read, readers, coordinator, admin_user, role):
    users = {"reader": readers[0], "coordinator": coordinator, "admin": admin_user}
    if role != "anonymous":
        client.force_login(users[role])
    urls = [f"/api/studies/{read.pk}/report/", *(f"/api/studies/{read.pk}/exports/{slug}/" for slug in EXPORT_FORMATS)]
    for url in urls:
        response = client.get(url)
        if role in ("anonymous", "reader"):
            assert response.status_code in (401, 403), url
        else:
            assert response.status_code == 200, url
    if role == "coordinator":
        assert client.get(f"/api/studies/{read.pk}/exports/nope/").status_code == 404


def test_api_schema_describes_the_report_and_exports(client, coordinator):
    client.force_login(coordinator)
    schema = client.get("/api/schema/?format=json").json()
    assert "/api/studies/{id}/report/" in schema["paths"]
    assert "/api/studies/{id}/exports/{slug}/" in schema["paths"]
    report = schema["components"]["schemas"]["StudyReport"]
    assert {"study", "readings", "report", "problem"} <= set(report["properties"])

"""The report's rows come from one place (readerstudy.report_rows): the dashboard, the printable page, the workbook
and the PDF show the same reader table for one small study, and a change of wording there shows in all of them."""

from __future__ import annotations

import io
import shutil
import subprocess
from html.parser import HTMLParser

import pytest
from django.urls import reverse

from readerstudy import report_rows
from readerstudy.analysis import study_analysis
from tests.readerstudy.test_analysis import read_study

pytestmark = pytest.mark.django_db


@pytest.fixture
def read(make_study, make_user):
    readers = [make_user(f"reader-{name}", "reader") for name in ("ann", "bob", "cyd")]
    study = make_study(real=4, synthetic=4, practice=1)
    read_study(study, readers)
    return study


class _SectionTable(HTMLParser):
    """The cell texts of the first table inside the element with ``id``, row by row (header row included)."""

    def __init__(self, section_id: str) -> None:
        super().__init__()
        self.section_id, self.inside, self.done = section_id, False, False
        self.rows: list[list[str]] = []
        self.cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if dict(attrs).get("id") == self.section_id:
            self.inside = True
        elif self.inside and not self.done:
            if tag == "tr":
                self.rows.append([])
            elif tag in ("td", "th"):
                self.cell = []

    def handle_endtag(self, tag):
        if not self.inside or self.done:
            return
        if tag in ("td", "th") and self.cell is not None:
            self.rows[-1].append(" ".join("".join(self.cell).split()))
            self.cell = None
        elif tag == "table":
            self.done = True

    def handle_data(self, data):
        if self.cell is not None:
            self.cell.append(data)


def page_reader_table(client, url: str) -> list[list[str]]:
    parser = _SectionTable("readers")
    parser.feed(client.get(url).content.decode())
    return parser.rows[1:]


def workbook_reader_sheet(client, study) -> tuple[list[str], list[tuple]]:
    from openpyxl import load_workbook

    body = client.get(reverse("study_export", args=[study.pk, "report.xlsx"])).content
    rows = list(load_workbook(io.BytesIO(body), read_only=True)["Per reader"].iter_rows(values_only=True))
    return list(rows[0]), rows[1:]


def pdf_lines(client, study) -> list[str]:
    """The PDF's text, one line per table row, white space folded."""
    assert shutil.which("pdftotext"), "scripts/test.sh installs poppler-utils"
    pdf = client.get(reverse("study_export", args=[study.pk, "report.pdf"])).content
    text = subprocess.run(["pdftotext", "-layout", "-", "-"], input=pdf, capture_output=True, check=True).stdout
    return [" ".join(line.split()) for line in text.decode().splitlines()]


def expected_page_rows(study) -> list[list[str]]:
    rows = report_rows.reader_rows(study_analysis(study=study).report)
    return [
        [
            row.reader,
            str(row.readings),
            row.accuracy.text,
            row.sensitivity.text,
            row.specificity.text,
            row.auc_text,
            row.auc_p_text,
        ]
        for row in rows
    ]


def test_dashboard_printable_page_workbook_and_pdf_show_the_same_reader_table(client, read, coordinator):
    client.force_login(coordinator)
    expected = expected_page_rows(read)
    assert [row[0] for row in expected] == ["reader-ann", "reader-bob", "reader-cyd"]
    assert all(cell != "–" for row in expected for cell in row[2:])  # every reader read both classes

    assert page_reader_table(client, reverse("study_dashboard", args=[read.pk])) == expected
    assert page_reader_table(client, reverse("study_report", args=[read.pk])) == expected

    # The workbook holds the raw numbers the text was made from: rounded the same way, they read the same.
    header, sheet = workbook_reader_sheet(client, read)
    column = {name: header.index(name) for name in header}
    for cells, shown in zip(sheet, expected, strict=True):
        assert [cells[column["reader"]], str(cells[column["readings"]])] == shown[:2]
        for name, text in zip(("accuracy", "sensitivity", "specificity"), shown[2:5], strict=True):
            lower, upper = cells[column[f"{name} Wilson lower"]], cells[column[f"{name} Wilson upper"]]
            assert f"{cells[column[name]]:.2f} ({lower:.2f}–{upper:.2f})" == text
        auc, lower, upper = (cells[column[name]] for name in ("AUC", "AUC CI lower", "AUC CI upper"))
        assert f"{auc:.2f} ({lower:.2f}–{upper:.2f})" == shown[5]

    # The PDF's reader table shows the same texts (without the p column), one line per reader.
    lines = pdf_lines(client, read)
    for shown in expected:
        assert " ".join(shown[:6]) in lines


def test_a_change_of_wording_in_report_rows_shows_on_the_page_and_in_the_pdf(client, read, coordinator, monkeypatch):
    def marked(proportion, digits=2):
        return f"[{proportion.estimate:.4f}]" if proportion is not None and proportion.trials else "–"

    monkeypatch.setattr(report_rows, "proportion_text", marked)
    client.force_login(coordinator)
    expected = expected_page_rows(read)
    assert expected[0][2].startswith("[") and len(expected[0][2]) == len("[0.0000]")
    assert page_reader_table(client, reverse("study_dashboard", args=[read.pk])) == expected
    lines = pdf_lines(client, read)
    for shown in expected:
        assert " ".join(shown[:6]) in lines


def test_the_pdf_prints_the_dashboards_further_tables_from_the_same_rows(client, read, coordinator):
    client.force_login(coordinator)
    report = study_analysis(study=read).report
    times = [[t.reader_label, t.real, t.synthetic, t.all] for t in report_rows.time_rows(report)]
    parser = _SectionTable("time")
    parser.feed(client.get(reverse("study_dashboard", args=[read.pk])).content.decode())
    assert parser.rows[1:] == times
    lines = pdf_lines(client, read)
    assert "Reading time (active seconds)" in lines and "Agreement between readers" in lines
    for shown in times:
        assert " ".join(shown) in lines
    for row in report_rows.agreement_rows(report, on_page=True):
        assert " ".join([row.label, row.value_text, row.ci_text, row.note]) in lines

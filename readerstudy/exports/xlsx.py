"""The report as an Excel workbook: one sheet per table of the report (from ``readerstudy.report_rows``), then
every analysed reading."""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Iterator

from readerstudy import report_rows as rows
from readerstudy.analysis import StudyAnalysis, study_analysis
from readerstudy.exports.long_csv import reading_rows
from readerstudy.models import Study


def report_xlsx(study: Study) -> bytes:
    """One sheet per table of the report, then every analysed reading (write-only workbook: streamed to disk)."""
    from openpyxl import Workbook

    analysis = study_analysis(study=study)
    workbook = Workbook(write_only=True)
    for title, lines in report_sheets(study, analysis):
        sheet = workbook.create_sheet(title)
        for row in lines:
            sheet.append([_xlsx_value(value) for value in row])
    readings = workbook.create_sheet("Readings")
    for row in reading_rows(study):
        readings.append(row)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def _xlsx_value(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def report_sheets(study: Study, analysis: StudyAnalysis) -> Iterator[tuple[str, Iterable[list]]]:
    """(title, rows with the header first) of each sheet the report can fill, in the workbook's order."""
    yield "Summary", rows.summary_rows(name=study.name, study_id=study.pk, analysis=analysis)
    report = analysis.report
    if report is None:
        return
    yield "Per reader", _sheet(rows.ReaderRow, rows.reader_rows(report))
    if report.binary is not None:
        yield "Pooled", _sheet(rows.PooledRow, rows.pooled_rows(report))
    yield "MRMC", _sheet(rows.MrmcRow, rows.mrmc_rows(report))
    yield "ROC points", [rows.ROC_POINTS_HEADER, *rows.roc_point_rows(report)]
    if report.generators:
        yield "Generators", _sheet(rows.GeneratorRow, rows.generator_rows(report))
    yield "Agreement", _sheet(rows.AgreementRow, rows.agreement_rows(report))
    if report.agreement.within_reader:
        yield "Within reader", _sheet(rows.RepeatRow, rows.repeat_rows(report))
    if report.quality:
        yield "Quality", _sheet_of_lines(rows.QualityRow, rows.quality_rows(report))
    if report.reading_time:
        yield "Reading time", _sheet_of_lines(rows.TimeRow, rows.time_rows(report))
    if report.realism is not None:
        names = dict(study.cases.values_list("pk", "label"))
        yield "Realism", _sheet(rows.RealismRow, rows.realism_rows(report, names))
    yield "Notes", [["note"], *([note] for note in report.notes)]


def _sheet(kind, entries) -> list[list]:
    """The header of a kind of row, then one line per row."""
    return [kind.SHEET_HEADER, *(entry.sheet_cells() for entry in entries)]


def _sheet_of_lines(kind, entries) -> list[list]:
    """The header of a kind of row, then the lines of each row (a row that the pages show as one line)."""
    return [kind.SHEET_HEADER, *(line for entry in entries for line in entry.sheet_rows())]

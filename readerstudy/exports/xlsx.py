"""The report as an Excel workbook: one sheet per table of the report (from ``readerstudy.report_rows``), then
every analysed reading."""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Iterator

from readerstudy.analysis import StudyAnalysis, study_analysis
from readerstudy.exports.long_csv import reading_rows
from readerstudy.models import Study
from readerstudy.report_rows import (
    ROC_POINTS_HEADER,
    AgreementRow,
    GeneratorRow,
    MrmcRow,
    PooledRow,
    QualityRow,
    ReaderRow,
    RealismRow,
    RepeatRow,
    TimeRow,
    agreement_rows,
    generator_rows,
    mrmc_rows,
    pooled_rows,
    quality_rows,
    reader_rows,
    realism_rows,
    repeat_rows,
    roc_point_rows,
    summary_rows,
    time_rows,
)


def report_xlsx(study: Study) -> bytes:
    """One sheet per table of the report, then every analysed reading (write-only workbook: streamed to disk)."""
    from openpyxl import Workbook

    analysis = study_analysis(study=study)
    workbook = Workbook(write_only=True)
    for title, rows in report_sheets(study, analysis):
        sheet = workbook.create_sheet(title)
        for row in rows:
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
    yield "Summary", summary_rows(name=study.name, study_id=study.pk, analysis=analysis)
    report = analysis.report
    if report is None:
        return
    yield "Per reader", _sheet(ReaderRow, reader_rows(report))
    if report.binary is not None:
        yield "Pooled", _sheet(PooledRow, pooled_rows(report))
    yield "MRMC", _sheet(MrmcRow, mrmc_rows(report))
    yield "ROC points", [ROC_POINTS_HEADER, *roc_point_rows(report)]
    if report.generators:
        yield "Generators", _sheet(GeneratorRow, generator_rows(report))
    yield "Agreement", _sheet(AgreementRow, agreement_rows(report))
    if report.agreement.within_reader:
        yield "Within reader", _sheet(RepeatRow, repeat_rows(report))
    if report.quality:
        yield "Quality", [QualityRow.SHEET_HEADER, *(line for row in quality_rows(report) for line in row.sheet_rows())]
    if report.reading_time:
        yield "Reading time", [TimeRow.SHEET_HEADER, *(line for row in time_rows(report) for line in row.sheet_rows())]
    if report.realism is not None:
        names = dict(study.cases.values_list("pk", "label"))
        yield "Realism", _sheet(RealismRow, realism_rows(report, names))
    yield "Notes", [["note"], *([note] for note in report.notes)]


def _sheet(kind, rows) -> list[list]:
    return [kind.SHEET_HEADER, *(row.sheet_cells() for row in rows)]

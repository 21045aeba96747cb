"""A study's exports for coordinators, one module per format: the long CSV of readings (``long_csv``), the report
as JSON (``report_json``), XLSX (``xlsx``) and PDF (``pdf``), and the input files of iMRMC (``imrmc``) and RJafroc
(``rjafroc``). This module lists them (``EXPORT_FORMATS``) and builds one (``export_file``)."""

from __future__ import annotations

from readerstudy.exports.common import XLSX, ExportFile, ExportFormat, ExportUnavailable
from readerstudy.exports.imrmc import imrmc
from readerstudy.exports.long_csv import CHUNK, READINGS_CSV_COLUMNS, reading_rows, readings_csv
from readerstudy.exports.pdf import report_pdf
from readerstudy.exports.report_json import report_json, report_payload
from readerstudy.exports.rjafroc import rjafroc_csv, rjafroc_xlsx
from readerstudy.exports.thumbnails import case_thumbnails
from readerstudy.exports.xlsx import report_xlsx
from readerstudy.models import Study

__all__ = [
    "CHUNK",
    "EXPORT_FORMATS",
    "READINGS_CSV_COLUMNS",
    "XLSX",
    "ExportFile",
    "ExportFormat",
    "ExportUnavailable",
    "case_thumbnails",
    "export_file",
    "imrmc",
    "reading_rows",
    "readings_csv",
    "report_json",
    "report_payload",
    "report_pdf",
    "report_xlsx",
    "rjafroc_csv",
    "rjafroc_xlsx",
]

EXPORT_FORMATS: dict[str, ExportFormat] = {
    f.slug: f
    for f in (
        ExportFormat(
            "readings.csv",
            "Readings (CSV)",
            "One row per reading: what python -m readerstudy.stats reads (and R's MRMCaov, naming the columns).",
            "readings.csv",
            "text/csv; charset=utf-8",
            readings_csv,
        ),
        ExportFormat(
            "report.json",
            "Report (JSON)",
            "Every statistic of the report, as the API returns it.",
            "report.json",
            "application/json",
            report_json,
        ),
        ExportFormat(
            "report.xlsx",
            "Report (Excel)",
            "One sheet per table of the report, and every reading.",
            "report.xlsx",
            XLSX,
            report_xlsx,
        ),
        ExportFormat(
            "imrmc",
            "iMRMC",
            "Input file of the FDA's iMRMC (truth rows and ratings).",
            "readings.imrmc",
            "text/plain; charset=utf-8",
            imrmc,
        ),
        ExportFormat(
            "rjafroc.xlsx",
            "RJafroc (Excel)",
            "JAFROC workbook (TRUTH, FP, TP sheets) for RJafroc::DfReadDataFile.",
            "rjafroc.xlsx",
            XLSX,
            rjafroc_xlsx,
        ),
        ExportFormat(
            "rjafroc.csv",
            "RJafroc / OR-DBM (CSV)",
            'Reader, Treatment, Case, Truth, Rating: DfReadDataFile(file, format = "MRMC").',
            "rjafroc.csv",
            "text/csv; charset=utf-8",
            rjafroc_csv,
        ),
        ExportFormat(
            "report.pdf",
            "Report (PDF)",
            "The report with its figures, for printing and sharing.",
            "report.pdf",
            "application/pdf",
            report_pdf,
        ),
    )
}


def export_file(*, study: Study, slug: str) -> ExportFile:
    """Build one export of a study. Unknown formats raise KeyError; empty studies raise ExportUnavailable."""
    export_format = EXPORT_FORMATS[slug]
    return ExportFile(export_format.filename(study), export_format.content_type, export_format.build(study))

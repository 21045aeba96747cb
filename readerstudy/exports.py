"""A study's exports for coordinators: the long CSV of readings, the report as JSON, XLSX and PDF, and the input
files of iMRMC and RJafroc.

The long CSV is what ``python -m readerstudy.stats`` reads (its extra columns are ignored there), in the order the
dashboard analyses, so both give the same numbers. Readings are streamed from the database in chunks, so an
80,000-reading study never sits in memory as model objects.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from PIL import Image

from readerstudy.analysis import (
    MODALITY,
    StudyAnalysis,
    analysed_readings,
    headline,
    mrmc_rows,
    rating_of,
    reader_rows,
    study_analysis,
    study_table,
)
from readerstudy.blinding import opening_lines, study_opening_record
from readerstudy.models import Study
from readerstudy.plots import report_pdf_bytes
from readerstudy.stats import StudyReport
from readerstudy.stats.formats import csv_cell, format_imrmc, format_rjafroc_csv, rjafroc_xlsx_bytes
from readerstudy.stats.proportions import Proportion

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
CHUNK = 2000

# The long CSV: the columns python -m readerstudy.stats analyses, then context it ignores.
READINGS_CSV_COLUMNS = (
    "reader",
    "modality",
    "case",
    "truth",
    "rating",
    "label",
    "confidence",
    "anatomy",
    "style",
    "artifacts",
    "active_seconds",
    "generator",
    "replicate",
    "call",
    "truth_class",
    "flags",
    "comment",
    "position",
    "revision",
    "created_at",
    "updated_at",
    "case_name",
)
_CSV_FIELDS = (
    "item__session__reader__username",
    "item__case_id",
    "item__case__truth",
    "call",
    "confidence",
    "anatomy",
    "style",
    "artifacts",
    "active_ms",
    "item__case__generator",
    "item__replicate",
    "flags",
    "comment",
    "item__position",
    "revision",
    "created_at",
    "updated_at",
    "item__case__label",
)


class ExportUnavailable(Exception):
    """The study has nothing to export in this format yet; the message says why."""


@dataclass(frozen=True)
class ExportFile:
    filename: str
    content_type: str
    content: bytes | Iterator[bytes]


@dataclass(frozen=True)
class ExportFormat:
    slug: str
    label: str
    description: str
    suffix: str
    content_type: str
    build: Callable[[Study], bytes | Iterator[bytes]]

    def filename(self, study: Study) -> str:
        return f"study-{study.pk}-{self.suffix}"


# -- long CSV -------------------------------------------------------------------------------------------------


def reading_rows(study: Study) -> Iterator[list]:
    """The header, then one row per analysed reading (practice excluded) in the dashboard's order, as typed
    values (numbers as numbers, missing as None) for the CSV and the workbook alike."""
    yield list(READINGS_CSV_COLUMNS)
    levels = study.confidence_levels
    rows = analysed_readings(study=study).values_list(*_CSV_FIELDS).iterator(chunk_size=CHUNK)
    for (
        reader,
        case,
        truth,
        call,
        confidence,
        anatomy,
        style,
        artifacts,
        active_ms,
        generator,
        replicate,
        flags,
        comment,
        position,
        revision,
        created_at,
        updated_at,
        case_name,
    ) in rows:
        synthetic = truth == "synthetic"
        yield [
            reader,
            MODALITY,
            case,
            int(synthetic),
            rating_of(call, confidence, levels),
            int(call == "synthetic"),
            confidence,
            anatomy,
            style,
            artifacts,
            active_ms / 1000,  # the float the dashboard divides to; csv_cell writes it to round-trip exactly
            generator if synthetic else "",
            replicate,
            call,
            truth,
            ";".join(flags or ()),
            comment,
            position + 1,
            revision,
            _timestamp(created_at),
            _timestamp(updated_at),
            case_name,
        ]


def readings_csv(study: Study) -> Iterator[bytes]:
    """The long CSV, encoded in chunks for a streaming response."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    for index, row in enumerate(reading_rows(study)):
        writer.writerow(["" if value is None else csv_cell(value) for value in row])
        if index % CHUNK == 0:
            yield buffer.getvalue().encode()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode()


def _timestamp(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# -- report as JSON -------------------------------------------------------------------------------------------


def report_payload(study: Study, analysis: StudyAnalysis) -> dict:
    """The study, the version of its readings and the full report dict (None with ``problem`` when none yet)."""
    return {
        "study": {
            "id": study.pk,
            "name": study.name,
            "status": study.status,
            "confidence_levels": study.confidence_levels,
            "modality": MODALITY,
        },
        "readings": analysis.version.count,
        "last_reading_change": analysis.version.last_change.isoformat() if analysis.version.last_change else None,
        "computed_at": analysis.computed_at.isoformat(),
        "problem": analysis.problem or None,
        "blinding_at_opening": study_opening_record(study=study),
        "report": analysis.report.to_dict() if analysis.report is not None else None,
    }


def report_json(study: Study) -> bytes:
    payload = report_payload(study, study_analysis(study=study))
    return json.dumps(payload, indent=2, allow_nan=False).encode()


# -- report as XLSX -------------------------------------------------------------------------------------------


def report_xlsx(study: Study) -> bytes:
    """One sheet per table of the report, then every analysed reading (write-only workbook: streamed to disk)."""
    from openpyxl import Workbook

    analysis = study_analysis(study=study)
    report = analysis.report
    workbook = Workbook(write_only=True)
    for title, rows in _report_sheets(study, analysis, report):
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


def _proportion_cells(p: Proportion | None) -> list:
    if p is None:
        return [None, None, None, None]
    return [p.estimate, p.wilson.lower, p.wilson.upper, f"{p.successes}/{p.trials}"]


def _report_sheets(
    study: Study, analysis: StudyAnalysis, report: StudyReport | None
) -> Iterable[tuple[str, Iterable[list]]]:
    summary = [
        ["Study", study.name],
        ["Study id", study.pk],
        ["Analysed readings", analysis.version.count],
        ["Computed at", analysis.computed_at.isoformat()],
    ]
    if report is None:
        yield "Summary", [*summary, ["Status", analysis.problem]]
        return
    design = report.design
    top = headline(report)
    summary += [
        ["Readers", len(design.readers)],
        ["Cases", design.n_cases],
        ["Synthetic cases", design.n_synthetic],
        ["Real cases", design.n_real],
        ["Confidence level", 1 - report.alpha],
        ["MRMC AUC", top.estimate.estimate if top.estimate else None],
        ["MRMC AUC CI lower", top.ci.lower if top.ci else None],
        ["MRMC AUC CI upper", top.ci.upper if top.ci else None],
        ["MRMC AUC p (vs 0.5)", top.estimate.p_value if top.estimate else None],
        ["Generalisation", top.generalisation],
        ["Conclusion", top.verdict],
    ]
    yield "Summary", summary
    proportion_header = []
    for name in ("accuracy", "sensitivity", "specificity"):
        proportion_header += [name, f"{name} Wilson lower", f"{name} Wilson upper", f"{name} count"]
    yield (
        "Per reader",
        [
            [
                "reader",
                "readings",
                "TP",
                "FN",
                "TN",
                "FP",
                *proportion_header,
                "AUC",
                "AUC SE (DeLong)",
                "AUC CI lower",
                "AUC CI upper",
                "p (AUC = 0.5)",
            ],
            *(
                [row.reader, row.readings, *_confusion_cells(row.confusion)]
                + _proportion_cells(row.metrics.accuracy if row.metrics else None)
                + _proportion_cells(row.metrics.sensitivity if row.metrics else None)
                + _proportion_cells(row.metrics.specificity if row.metrics else None)
                + (
                    [row.auc.auc, row.auc.se, row.auc.ci.lower, row.auc.ci.upper, row.auc.p_vs_chance]
                    if row.auc
                    else [None] * 5
                )
                for row in reader_rows(report)
            ),
        ],
    )
    if report.binary is not None:
        entries = [report.binary.pooled, *report.binary.per_generator]
        yield (
            "Pooled",
            [
                ["group", "TP", "FN", "TN", "FP", *proportion_header, "p (accuracy = 0.5)", "Fisher p"],
                *(
                    [
                        f"generator {e.generator}" if e.generator else "all readings",
                        *_confusion_cells(e.metrics.confusion),
                        *_proportion_cells(e.metrics.accuracy),
                        *_proportion_cells(e.metrics.sensitivity),
                        *_proportion_cells(e.metrics.specificity),
                        e.metrics.accuracy_vs_chance.p_value,
                        e.metrics.fisher.p_value,
                    ]
                    for e in entries
                ),
            ],
        )
    yield (
        "MRMC",
        [
            [
                "figure of merit",
                "analysis",
                "readers",
                "cases",
                "estimate",
                "SE",
                "df",
                "CI lower",
                "CI upper",
                "null value",
                "p",
            ],
            *(
                [
                    row.figure_label,
                    row.analysis_label,
                    row.readers,
                    row.cases,
                    row.estimate.estimate,
                    row.estimate.se,
                    row.estimate.df,
                    row.estimate.ci.lower,
                    row.estimate.ci.upper,
                    row.estimate.null_value,
                    row.estimate.p_value,
                ]
                for row in mrmc_rows(report)
            ),
        ],
    )
    roc_rows = [["curve", "threshold (rating >=)", "false positive fraction", "true positive fraction"]]
    curves = [(e.reader, e.curve) for e in report.roc.per_reader] + [
        ("all readings", e.curve) for e in report.roc.pooled
    ]
    for name, curve in curves:
        roc_rows += [
            [name, threshold, fpf, tpf]
            for threshold, fpf, tpf in zip(
                curve.thresholds, curve.false_positive_fraction, curve.true_positive_fraction, strict=True
            )
        ]
    yield "ROC points", roc_rows
    if report.generators:
        yield (
            "Generators",
            [
                [
                    "generator",
                    "synthetic images",
                    "MRMC AUC",
                    "CI lower",
                    "CI upper",
                    "p (AUC = 0.5)",
                    "sensitivity",
                    "sensitivity Wilson lower",
                    "sensitivity Wilson upper",
                ],
                *(
                    [g.generator, g.n_synthetic]
                    + _generator_auc_cells(g)
                    + (_proportion_cells(g.detection.metrics.sensitivity)[:3] if g.detection else [None] * 3)
                    for g in report.generators
                ),
            ],
        )
    agreement = report.agreement
    agreement_rows = [["statistic", "variable", "raters", "estimate", "CI lower", "CI upper", "p"]]
    agreement_rows += [
        [
            f"Cohen's kappa {k.reader_a} vs {k.reader_b}",
            "call",
            2,
            k.kappa.kappa,
            k.kappa.ci.lower,
            k.kappa.ci.upper,
            k.kappa.p_value,
        ]
        for k in agreement.pairwise_kappa
    ]
    agreement_rows += [
        ["Fleiss' kappa", "call", f.kappa.raters, f.kappa.kappa, f.kappa.ci.lower, f.kappa.ci.upper, f.kappa.p_value]
        for f in agreement.fleiss_kappa
    ]
    agreement_rows += [
        ["Krippendorff's alpha", a.variable, None, a.alpha.alpha, None, None, None]
        for a in agreement.krippendorff_alpha
    ]
    agreement_rows += [
        [form.form, i.variable, None, form.icc, form.ci.lower, form.ci.upper, form.p_value]
        for i in agreement.icc
        for form in i.forms
    ]
    yield "Agreement", agreement_rows
    if agreement.within_reader:
        repeat_rows = [
            [
                "reader",
                "pairs",
                "same call",
                "same call Wilson lower",
                "same call Wilson upper",
                "same call count",
                "Cohen's kappa",
                "kappa CI lower",
                "kappa CI upper",
                "Krippendorff's alpha (combined score, ordinal)",
            ]
        ]
        repeat_rows += [
            [
                entry.reader or "all readers",
                entry.pairs,
                *_proportion_cells(entry.call_agreement),
                *(
                    [entry.call_kappa.kappa, entry.call_kappa.ci.lower, entry.call_kappa.ci.upper]
                    if entry.call_kappa
                    else [None, None, None]
                ),
                entry.rating_alpha.alpha if entry.rating_alpha else None,
            ]
            for entry in agreement.within_reader
        ]
        yield "Within reader", repeat_rows
    if report.quality:
        quality_rows = [
            [
                "score",
                "class",
                "n",
                "mean",
                "SD",
                "median",
                "Q1",
                "Q3",
                *(f"count {v:g}" for v in (1, 2, 3, 4, 5)),
                "Mann-Whitney p (synthetic vs real)",
                "P(synthetic > real)",
                "share synthetic >= real median",
            ]
        ]
        for entry in report.quality:
            for name, d in (("real", entry.real), ("synthetic", entry.synthetic)):
                counts = dict(zip(d.values, d.counts, strict=True))
                quality_rows.append(
                    [entry.field, name, d.n, d.mean, d.sd, d.median, d.q1, d.q3]
                    + [counts.get(float(v), 0) for v in (1, 2, 3, 4, 5)]
                    + (
                        [
                            entry.synthetic_vs_real.p_value,
                            entry.synthetic_vs_real.common_language,
                            entry.share_synthetic_at_least_real_median,
                        ]
                        if name == "synthetic"
                        else [None, None, None]
                    )
                )
        yield "Quality", quality_rows
    if report.reading_time:
        yield (
            "Reading time",
            [
                ["reader", "class", "readings", "median seconds", "Q1", "Q3"],
                *(
                    [t.reader or "all readers", t.truth, t.summary.n, t.summary.median, t.summary.q1, t.summary.q3]
                    for t in report.reading_time
                ),
            ],
        )
    if report.realism is not None:
        names = dict(study.cases.values_list("pk", "label"))
        yield (
            "Realism",
            [
                [
                    "rank",
                    "case",
                    "case name",
                    "generator",
                    "readers",
                    "fooled",
                    "fooled share",
                    "realism (logit)",
                    "ability-adjusted P(fooled)",
                ],
                *(
                    [
                        image.rank,
                        int(image.case),
                        names.get(int(image.case), ""),
                        image.generator,
                        image.readers,
                        image.fooled,
                        image.fooled_share,
                        image.realism,
                        image.adjusted_fooled_probability,
                    ]
                    for image in report.realism.images
                ),
            ],
        )
    yield "Notes", [["note"], *([note] for note in report.notes)]


def _confusion_cells(confusion) -> list:
    if confusion is None:
        return [None] * 4
    return [confusion.true_positive, confusion.false_negative, confusion.true_negative, confusion.false_positive]


def _generator_auc_cells(entry) -> list:
    if entry.auc is None:
        return [None] * 4
    estimate = entry.auc.random_readers_random_cases.modalities[0]
    return [estimate.estimate, estimate.ci.lower, estimate.ci.upper, estimate.p_value]


# -- iMRMC and RJafroc ----------------------------------------------------------------------------------------


def _table_or_refuse(study: Study):
    table = study_table(study=study)
    if table is None:
        raise ExportUnavailable("This study has no analysed readings yet, so there is nothing to export.")
    return table


def imrmc(study: Study) -> bytes:
    description = f"Reader study {study.pk}: {study.name} (synthetic = 1, rating = call x confidence on 1..2K)"
    return format_imrmc(_table_or_refuse(study), description=description).encode()


def rjafroc_xlsx(study: Study) -> bytes:
    return rjafroc_xlsx_bytes(_table_or_refuse(study))


def rjafroc_csv(study: Study) -> bytes:
    return format_rjafroc_csv(_table_or_refuse(study)).encode()


def report_pdf(study: Study) -> bytes:
    analysis = study_analysis(study=study)
    images = analysis.report.realism.images if analysis.report and analysis.report.realism else ()
    shown = [int(image.case) for image in (*images[:PDF_THUMBNAILS], *images[-PDF_THUMBNAILS // 2 :])]
    opening = study_opening_record(study=study)
    return report_pdf_bytes(
        title=study.name,
        opening=opening_lines(opening) if opening else ["The study has not been opened for reading."],
        study_id=study.pk,
        analysis=analysis,
        thumbnails=case_thumbnails(study, shown),
        case_names=dict(study.cases.filter(pk__in=shown).values_list("pk", "label")),
    )


PDF_THUMBNAILS = 8


def case_thumbnails(study: Study, case_ids: Iterable[int], *, size: int = 160) -> dict[int, bytes]:
    """Small PNGs of the served images of some cases (for the self-contained HTML report and the PDF). A case whose
    file cannot be read is left out: a thumbnail is an illustration, never a reason to fail the report."""
    thumbnails = {}
    for case in study.cases.filter(pk__in=list(case_ids)).only("pk", "image"):
        try:
            with case.image.open("rb") as handle, Image.open(handle) as image:
                image.thumbnail((size, size))
                buffer = io.BytesIO()
                image.save(buffer, format="PNG", optimize=True)
        except OSError:
            continue
        thumbnails[case.pk] = buffer.getvalue()
    return thumbnails


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

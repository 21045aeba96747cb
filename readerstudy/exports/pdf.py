"""The report as an A4 PDF: the headline and tables (from ``readerstudy.report_rows``), every figure (from
``readerstudy.plots``), the most and least realistic images, the blinding at opening and the notes."""

from __future__ import annotations

import io
from collections.abc import Callable

import matplotlib
import numpy as np
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure

from readerstudy import report_rows
from readerstudy.analysis import StudyAnalysis, study_analysis
from readerstudy.blinding import opening_lines, study_opening_record
from readerstudy.exports.thumbnails import case_thumbnails
from readerstudy.models import Study
from readerstudy.plots import GRID, MUTED, STYLE, Canvas, figure_plan
from readerstudy.report_rows import DASH, RealismRow
from readerstudy.stats import StudyReport

A4 = (8.27, 11.69)
PDF_MAX_READER_ROWS = 30  # what fits on the first page beside the headline
PDF_MAX_TABLE_ROWS = 36  # what fits on a page of tables
PDF_THUMBNAILS = 8  # the most realistic images; half as many of the least realistic follow
PDF_BODY_HEIGHT = 10.3  # inches of an A4 page below the header


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


def report_pdf_bytes(
    *,
    title: str,
    study_id: int,
    analysis: StudyAnalysis,
    thumbnails: dict[int, bytes],
    case_names: dict[int, str],
    opening: list[str] = (),
) -> bytes:
    """The report as an A4 PDF: the headline and tables, then every figure, with vector text (matplotlib PdfPages).

    matplotlib is already needed for the dashboard, so the PDF needs no further library (no system fonts or
    rendering engine to install) and looks the same on every machine.
    """
    report = analysis.report
    buffer = io.BytesIO()
    with matplotlib.rc_context(STYLE), PdfPages(buffer, metadata={"Title": title, "Creator": "readerstudy"}) as pdf:
        page, body = _pdf_page(
            title,
            f"Reader study report · study {study_id} · {analysis.version.count} analysed "
            f"readings · computed {analysis.computed_at:%Y-%m-%d %H:%M} UTC",
        )
        if report is None:
            body.text(0, 0.95, analysis.problem, fontsize=11, va="top", wrap=True)
            pdf.savefig(page)
        else:
            mrmc_shown = _first_page(body, report)
            pdf.savefig(page)
            _pdf_table_pages(pdf, title, _more_tables(report, with_mrmc=not mrmc_shown))
            for blocks in _pdf_pages_of(_pdf_figure_blocks(report, thumbnails, case_names)):
                pdf.savefig(_pdf_figure_page(title, "Figures", blocks))
        if opening:
            page, body = _pdf_page(title, "Blinding at opening")
            # Plain text: a study name or reason with "$" must not become matplotlib mathtext.
            body.text(0, 0.98, "\n".join(opening), fontsize=9, va="top", wrap=True, usetex=False, parse_math=False)
            pdf.savefig(page)
        if report is not None and report.notes:
            page, body = _pdf_page(title, "Notes")
            body.text(0, 0.98, "\n\n".join(f"• {note}" for note in report.notes), fontsize=9, va="top", wrap=True)
            pdf.savefig(page)
    return buffer.getvalue()


def _first_page(body, report: StudyReport) -> bool:
    """The headline, the pooled proportions, the reader table and, where it fits, the multi-reader table (True when
    it did)."""
    summary = report_rows.headline(report)
    level = report_rows.level_text(report.alpha)
    y = 0.98
    if summary.available:
        body.text(0, y, "Reader-population AUC", fontsize=9, color=MUTED, va="top")
        body.text(0, y - 0.025, summary.text, fontsize=26, fontweight="bold", va="top")
        body.text(
            0.3,
            y - 0.02,
            f"{level} CI {summary.ci_text} · p {summary.p_value_text or DASH} vs 0.5\n{summary.verdict}\n"
            f"({summary.generalisation}; {summary.readers} readers, {summary.cases} cases)",
            fontsize=9,
            va="top",
            wrap=True,
        )
    else:
        body.text(0, y, summary.verdict, fontsize=10, va="top", wrap=True)
    y -= 0.12
    pooled = report_rows.pooled_rows(report)
    if pooled:
        body.text(
            0,
            y,
            f"All readings pooled: accuracy {pooled[0].accuracy.text}, sensitivity {pooled[0].sensitivity.text}, "
            f"specificity {pooled[0].specificity.text} (Wilson {level} intervals).",
            fontsize=9,
            va="top",
            wrap=True,
        )
        y -= 0.05
    reader_table = [
        [row.reader, str(row.readings), row.accuracy.text, row.sensitivity.text, row.specificity.text, row.auc_text]
        for row in report_rows.reader_rows(report)
    ]
    header = ["Reader", "Readings", "Accuracy", "Sensitivity", "Specificity", "AUC (DeLong CI)"]
    reader_table = _truncated(reader_table, PDF_MAX_READER_ROWS)
    height = _pdf_table(body, y, "Per reader", header, reader_table, [0.2, 0.1, 0.18, 0.18, 0.18, 0.16])
    y -= height + 0.04
    mrmc = _mrmc_table(report)
    if mrmc[2] and y > 0.25:
        _pdf_table(body, y, *mrmc)
        return True
    return not mrmc[2]


Table = tuple[str, list[str], list[list[str]], list[float]]  # caption, header, rows, column widths


def _mrmc_table(report: StudyReport) -> Table:
    return (
        "Multi-reader analysis (Obuchowski-Rockette, Hillis df)",
        ["Figure", "Generalises to", "Estimate", f"{report_rows.level_text(report.alpha)} CI", "p"],
        [
            [r.figure_label, r.analysis_label, r.estimate_text, r.ci_text, r.p_value_text]
            for r in report_rows.mrmc_rows(report)
        ],
        [0.16, 0.36, 0.14, 0.22, 0.12],
    )


def _more_tables(report: StudyReport, *, with_mrmc: bool) -> list[Table]:
    """The tables of the pages that the first page has no room for, as the dashboard words them."""
    level = report_rows.level_text(report.alpha)
    tables = [_mrmc_table(report)] if with_mrmc else []
    generators = report_rows.generator_rows(report)
    if len(generators) > 1:
        header = ["Generator", "Images", "MRMC AUC", f"{level} CI", "p", "Detected (sensitivity)"]
        rows = [
            [g.generator, str(g.images), g.auc_text, g.auc_ci_text, g.auc_p_text, g.sensitivity.text]
            for g in generators
        ]
        widths = [0.24, 0.1, 0.13, 0.19, 0.1, 0.24]
        tables.append(("Per generator (its synthetic images against all real images)", header, rows, widths))
    agreement = report_rows.agreement_rows(report, on_page=True)
    if agreement:
        rows = [[r.label, r.value_text, r.ci_text, r.note] for r in agreement]
        header = ["Statistic", "Value", f"{level} CI", "Based on"]
        tables.append(("Agreement between readers", header, rows, [0.42, 0.1, 0.18, 0.3]))
    repeats = report_rows.repeat_rows(report)
    if repeats:
        rows = [
            [r.reader_label, str(r.pairs), r.agreement.text, r.kappa_text, r.kappa_ci_text, r.alpha_text]
            for r in repeats
        ]
        header = ["Reader", "Pairs", f"Same call ({level} CI)", "Cohen's kappa", f"{level} CI", "Krippendorff's alpha"]
        widths = [0.2, 0.08, 0.2, 0.14, 0.18, 0.2]
        tables.append(("Consistency within readers (hidden repeats)", header, rows, widths))
    quality = report_rows.quality_rows(report)
    if quality:
        rows = [
            [
                q.field,
                f"{q.real} (n={q.n_real})",
                f"{q.synthetic} (n={q.n_synthetic})",
                q.common_language,
                q.p_value_text,
                q.share,
            ]
            for q in quality
        ]
        header = ["Score", "Real mean ± SD", "Synthetic mean ± SD", "P(synthetic higher)", "Mann-Whitney p"]
        header.append("Share ≥ real median")
        tables.append(("Image quality: real vs synthetic", header, rows, [0.1, 0.18, 0.2, 0.18, 0.16, 0.18]))
    times = report_rows.time_rows(report)
    if times:
        rows = [[t.reader_label, t.real, t.synthetic, t.all] for t in times]
        header = ["Reader", "Real: median (IQR)", "Synthetic: median (IQR)", "All cases"]
        tables.append(("Reading time (active seconds)", header, rows, [0.25, 0.25, 0.25, 0.25]))
    return tables


def _pdf_table_pages(pdf: PdfPages, title: str, tables: list[Table]) -> None:
    """The tables one below the other, on as many pages as they need (a long table is cut to fit one page)."""
    page = body = None
    y = 0.0
    for caption, header, rows, widths in tables:
        rows = _truncated(rows, PDF_MAX_TABLE_ROWS)
        if page is None or y - (0.022 * (len(rows) + 1) + 0.03) < 0:
            if page is not None:
                pdf.savefig(page)
            page, body = _pdf_page(title, "Tables")
            y = 0.98
        y -= _pdf_table(body, y, caption, header, rows, widths) + 0.04
    if page is not None:
        pdf.savefig(page)


def _truncated(rows: list[list[str]], limit: int) -> list[list[str]]:
    """At most ``limit`` rows: the last one says how many more the Excel export has."""
    if len(rows) <= limit:
        return rows
    more = len(rows) - limit + 1
    return [*rows[: limit - 1], [f"+ {more} more: see the Excel export", *[""] * (len(rows[0]) - 1)]]


def _pdf_figure_blocks(
    report: StudyReport, thumbnails: dict[int, bytes], names: dict[int, str]
) -> list[tuple[Callable, float]]:
    """The figures, each with the height it takes on a page (inches), then the thumbnail gallery."""
    blocks: list[tuple[Callable, float]] = [
        (plan.draw, min(PDF_BODY_HEIGHT, plan.height)) for plan in figure_plan(report)
    ]
    if thumbnails and report.realism is not None:
        shown = [row for row in report_rows.realism_rows(report, names) if row.case_id in thumbnails]  # in rank order
        blocks.append((lambda f: _draw_gallery(f, shown, thumbnails), 6.0))
    return blocks


def _pdf_pages_of(blocks: list[tuple[Callable, float]]) -> list[list[tuple[Callable, float]]]:
    pages, current, used = [], [], 0.0
    for block in blocks:
        if current and used + block[1] > PDF_BODY_HEIGHT:
            pages.append(current)
            current, used = [], 0.0
        current.append(block)
        used += block[1]
    if current:
        pages.append(current)
    return pages


def _pdf_figure_page(title: str, subtitle: str, blocks: list[tuple[Callable, float]]) -> Figure:
    """An A4 page: the header, then each figure at its own height, the rest left blank."""
    page = Figure(figsize=A4, layout="constrained")
    heights = [A4[1] - PDF_BODY_HEIGHT, *(height for _, height in blocks)]
    spare = A4[1] - sum(heights)
    if spare > 0.05:
        heights.append(spare)
    parts = page.subfigures(len(heights), 1, height_ratios=heights)
    parts[0].text(0.06, 0.72, title, fontsize=15, fontweight="bold", va="top")
    parts[0].text(0.06, 0.32, subtitle, fontsize=8.5, color=MUTED, va="top")
    for part, (draw, _) in zip(parts[1:], blocks, strict=False):
        draw(part)
    return page


def _pdf_page(title: str, subtitle: str):
    page = Figure(figsize=A4)
    page.text(0.06, 0.965, title, fontsize=15, fontweight="bold", va="top")
    page.text(0.06, 0.94, subtitle, fontsize=8.5, color=MUTED, va="top")
    body = page.add_axes((0.06, 0.05, 0.88, 0.86))
    body.set_axis_off()
    body.set_xlim(0, 1)
    body.set_ylim(0, 1)
    page.subplots_adjust(top=0.9, bottom=0.05, left=0.08, right=0.95)
    return page, body


def _pdf_table(ax, top: float, caption: str, header: list[str], rows: list[list[str]], widths: list[float]) -> float:
    """Draw a table below ``top`` (axes fraction) and return the height it took."""
    row_height = 0.022
    ax.text(0, top, caption, fontsize=10.5, fontweight="bold", va="top")
    height = row_height * (len(rows) + 1)
    table = ax.table(
        cellText=rows or [[DASH] * len(header)],
        colLabels=header,
        colWidths=widths,
        bbox=(0, top - 0.03 - height, 1, height),
        cellLoc="left",
        edges="horizontal",
    )
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    for (row, _), cell in table.get_celld().items():
        cell.set_edgecolor(GRID)
        if row == 0:
            cell.set_text_props(fontweight="bold")
            cell.set_facecolor("#f1f3f6")
    return height + 0.03


def _draw_gallery(fig: Canvas, shown: list[RealismRow], thumbnails: dict[int, bytes]) -> None:
    """The synthetic images that have thumbnails (the caller picks the most and least realistic), best first."""
    from PIL import Image

    grid = fig.subplots(3, 4, squeeze=False)
    for ax in grid.ravel():
        ax.set_axis_off()
    for ax, row in zip(grid.ravel(), shown, strict=False):
        with Image.open(io.BytesIO(thumbnails[row.case_id])) as picture:
            ax.imshow(np.asarray(picture.convert("L")), cmap="gray", vmin=0, vmax=255)
        ax.set_title(f"#{row.rank} · fooled {row.fooled}/{row.readers}\n{row.name[:22]}", fontsize=8)
    fig.suptitle("Most realistic (top rows) and least realistic synthetic images", fontsize=11, fontweight="bold")

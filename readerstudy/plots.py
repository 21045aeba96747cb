"""The study report's figures, drawn server-side with matplotlib (Agg, no pyplot state) for the dashboard (inline
SVG) and the PDF report (``readerstudy.exports.pdf`` puts the same drawing functions on A4 pages).

Real images are always blue and synthetic ones always orange; every function draws onto a Figure or SubFigure
it is given, so one drawing serves both outputs.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Callable
from dataclasses import dataclass

import matplotlib
import numpy as np
from django.core.cache import cache
from matplotlib.figure import Figure, SubFigure

from readerstudy.analysis import CACHE_SECONDS, StudyAnalysis
from readerstudy.report_rows import Headline, headline, reader_rows
from readerstudy.stats import StudyReport

matplotlib.use("Agg")  # never a GUI backend in a web process

REAL = "#2563eb"
SYNTHETIC = "#ea580c"
INK = "#1d2530"
MUTED = "#667085"
GRID = "#e4e7ec"
POOLED = "#111827"
STYLE = {
    "font.family": "DejaVu Sans",
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.titleweight": "bold",
    "axes.labelsize": 10,
    "axes.edgecolor": "#98a2b3",
    "axes.labelcolor": INK,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": GRID,
    "grid.linewidth": 0.8,
    "xtick.color": INK,
    "ytick.color": INK,
    "legend.frameon": False,
    "legend.fontsize": 9,
    "svg.fonttype": "none",  # text stays text: sharp, searchable, and the page's font
    "svg.hashsalt": "readerstudy",  # stable element ids, so equal inputs give equal SVG
}
MAX_READER_PANELS = 24

Canvas = Figure | SubFigure


def draw_forest(fig: Canvas, report: StudyReport, summary: Headline) -> None:
    """Each reader's AUC with its DeLong CI, and the reader-population (MRMC) AUC as a diamond."""
    rows = [row for row in reader_rows(report) if row.auc is not None]
    ax = fig.add_subplot()
    labels = [row.reader for row in rows]
    y = np.arange(len(rows))[::-1] + 1.5
    for position, row in zip(y, rows, strict=True):
        lower, upper = _ci_or_point(row.auc.ci.lower, row.auc.ci.upper, row.auc.value)
        ax.plot([lower, upper], [position, position], color=MUTED, linewidth=1.6, solid_capstyle="butt")
        ax.plot(row.auc.value, position, "o", color=INK, markersize=5)
    if summary.available and summary.estimate is not None:
        e = summary.estimate
        ax.fill(
            [e.ci.lower, e.estimate, e.ci.upper, e.estimate],
            [0.5, 0.85, 0.5, 0.15],
            color=SYNTHETIC,
            zorder=3,
        )
        labels = [*labels, "All readers (MRMC)"]
        y = np.r_[y, 0.5]
    ax.axvline(0.5, color=MUTED, linestyle="--", linewidth=1)
    ax.set_yticks(y, labels)
    ax.set_xlim(0, 1)
    ax.set_ylim(-0.2, len(rows) + 2)
    ax.set_xlabel("AUC (0.5 = chance, 1 = always right)")
    ax.grid(axis="y", visible=False)
    ax.set_title("AUC per reader with 95% CI")


def draw_roc(fig: Canvas, report: StudyReport) -> None:
    """Empirical ROC curves: each reader thin, all readings pooled thick, with the pooled calls' operating point."""
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], color=MUTED, linestyle="--", linewidth=1, label="Chance")
    for index, entry in enumerate(report.roc.per_reader):
        ax.plot(
            entry.curve.false_positive_fraction,
            entry.curve.true_positive_fraction,
            color=REAL,
            alpha=0.45,
            linewidth=1.2,
            label="Individual readers" if index == 0 else None,
        )
    for entry in report.roc.pooled:
        ax.plot(
            entry.curve.false_positive_fraction,
            entry.curve.true_positive_fraction,
            color=POOLED,
            linewidth=2.4,
            label=f"All readings pooled (AUC {entry.auc:.2f})",
        )
    if report.binary is not None:
        pooled = report.binary.pooled.metrics
        if pooled.sensitivity.trials and pooled.specificity.trials:
            ax.plot(
                1 - pooled.specificity.estimate,
                pooled.sensitivity.estimate,
                "D",
                color=SYNTHETIC,
                markersize=7,
                label="Readers' calls (pooled)",
                zorder=4,
            )
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_aspect("equal")
    ax.set_xlabel("False positive fraction (real called synthetic)")
    ax.set_ylabel("True positive fraction\n(synthetic called synthetic)")
    ax.legend(loc="lower right")
    ax.set_title("ROC curves")


def draw_confusion(fig: Canvas, report: StudyReport) -> None:
    """The pooled confusion matrix large, then one small matrix per reader (rows: truth, columns: call).

    The readers' matrices share one image on one axes: a panel per reader would cost a layout pass each.
    """
    rows = [row for row in reader_rows(report) if row.confusion is not None]
    small = rows if 1 < len(rows) <= MAX_READER_PANELS else []
    pooled_ax, readers_ax = fig.subplots(1, 2, width_ratios=[1, 2.2]) if small else (fig.add_subplot(), None)
    counts, shares = _confusion_arrays(report.binary.pooled.metrics.confusion)
    pooled_ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for (i, j), count in np.ndenumerate(counts):
        colour = "white" if shares[i, j] > 0.6 else INK
        pooled_ax.text(j, i, f"{count}\n{shares[i, j]:.0%}", ha="center", va="center", color=colour, fontsize=11)
    pooled_ax.set_title("All readers")
    pooled_ax.set_xticks([0, 1], ["called real", "called synthetic"])
    pooled_ax.set_yticks([0, 1], ["real", "synthetic"])
    pooled_ax.set_ylabel("Truth")
    for label, colour in zip(pooled_ax.get_yticklabels(), (REAL, SYNTHETIC), strict=True):
        label.set_color(colour)
    _bare(pooled_ax)
    if readers_ax is None:
        return
    columns = min(6, len(small))
    mosaic = np.full((3 * math.ceil(len(small) / columns), 3 * columns), np.nan)
    for index, row in enumerate(small):
        top, left = 3 * (index // columns), 3 * (index % columns)
        counts, shares = _confusion_arrays(row.confusion)
        mosaic[top + 1 : top + 3, left : left + 2] = shares
        for (i, j), count in np.ndenumerate(counts):
            colour = "white" if shares[i, j] > 0.6 else INK
            readers_ax.text(left + j, top + 1 + i, str(count), ha="center", va="center", color=colour, fontsize=8)
        readers_ax.text(left + 0.5, top + 0.25, row.reader[:16], ha="center", va="center", fontsize=8)
    cmap = matplotlib.colormaps["Blues"].with_extremes(bad="white")
    readers_ax.imshow(mosaic, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
    readers_ax.set_xticks([])
    readers_ax.set_yticks([])
    readers_ax.set_title("Each reader (same layout)")
    _bare(readers_ax)


def _confusion_arrays(confusion) -> tuple[np.ndarray, np.ndarray]:
    counts = np.array(
        [[confusion.true_negative, confusion.false_positive], [confusion.false_negative, confusion.true_positive]]
    )
    totals = counts.sum(axis=1, keepdims=True)
    return counts, np.divide(counts, totals, out=np.zeros(counts.shape), where=totals > 0)


def _bare(ax) -> None:
    ax.grid(False)
    for spine in ax.spines.values():
        spine.set_visible(False)


def draw_quality(fig: Canvas, report: StudyReport) -> None:
    """Share of each quality score (1-5) given to real and to synthetic images, one panel per score."""
    entries = report.quality
    axes = fig.subplots(1, len(entries), sharey=True, squeeze=False)[0]
    width = 0.38
    for ax, entry in zip(axes, entries, strict=True):
        levels = np.asarray(entry.real.values, dtype=float)
        for offset, distribution, colour, name in (
            (-width / 2, entry.real, REAL, "Real images"),
            (width / 2, entry.synthetic, SYNTHETIC, "Synthetic images"),
        ):
            counts = np.asarray(distribution.counts, dtype=float)
            shares = counts / counts.sum() if counts.sum() else counts
            ax.bar(levels + offset, shares, width=width, color=colour, label=name)
        ax.set_xticks(levels, [f"{level:g}" for level in levels])
        ax.set_title(entry.field.capitalize())
        ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0, decimals=0))
        ax.grid(axis="x", visible=False)
    axes[0].set_ylabel("Share of scores")
    fig.supxlabel("Score: 1 = unacceptable, 5 = excellent, as a good clinical image", fontsize=10)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside upper right", ncols=2)


def draw_times(fig: Canvas, report: StudyReport) -> None:
    """Median active reading time with its interquartile range per reader, real and synthetic images apart."""
    entries = {(t.reader, t.truth): t.summary for t in report.reading_time}
    readers = [None, *report.design.readers]
    ax = fig.add_subplot()
    y = np.arange(len(readers))[::-1].astype(float)
    for shift, truth, colour in ((0.17, "real", REAL), (-0.17, "synthetic", SYNTHETIC)):
        for position, reader in zip(y, readers, strict=True):
            summary = entries.get((reader, truth))
            if summary is None or not summary.n:
                continue
            ax.plot([summary.q1, summary.q3], [position + shift] * 2, color=colour, linewidth=3, alpha=0.45)
            ax.plot(summary.median, position + shift, "o", color=colour, markersize=5)
        ax.plot([], [], "o-", color=colour, label=f"{truth.capitalize()} images")
    ax.set_yticks(y, ["All readers", *readers[1:]])
    ax.set_xlabel("Active reading time per case, seconds (median and interquartile range)")
    ax.set_xlim(left=0)
    ax.grid(axis="y", visible=False)
    fig.legend(loc="outside upper right", ncols=2)


def draw_fooled(fig: Canvas, report: StudyReport) -> None:
    """How many synthetic images fooled how many of the readers who saw them."""
    images = report.realism.images
    ax = fig.add_subplot()
    counts = {image.readers for image in images}
    if len(counts) == 1:
        readers = counts.pop()
        fooled = np.bincount([image.fooled for image in images], minlength=readers + 1)
        ax.bar(np.arange(readers + 1), fooled, color=SYNTHETIC, width=0.7)
        ax.set_xticks(np.arange(readers + 1))
        ax.set_xlabel(f"Readers fooled (of {readers}) — called it real")
    else:
        ax.hist([image.fooled_share for image in images], bins=np.linspace(0, 1, 11), color=SYNTHETIC, rwidth=0.85)
        ax.xaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0, decimals=0))
        ax.set_xlabel("Share of its readers who called it real")
    ax.set_ylabel("Synthetic images")
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.grid(axis="x", visible=False)
    ax.set_title("How often each synthetic image fooled readers")


def _ci_or_point(lower: float, upper: float, point: float) -> tuple[float, float]:
    if math.isfinite(lower) and math.isfinite(upper):
        return lower, upper
    return point, point


# -- SVG for the dashboard ------------------------------------------------------------------------------------


def figure_svg(draw: Callable[[Figure], None], *, width: float, height: float) -> str:
    """Draw on a fresh figure of ``width`` x ``height`` inches and return it as inline SVG (no XML prologue)."""
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(width, height), layout="constrained")
        draw(fig)
        buffer = io.StringIO()
        fig.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
    svg = buffer.getvalue()
    svg = re.sub(r"<metadata>.*?</metadata>\s*", "", svg[svg.index("<svg") :], count=1, flags=re.DOTALL)
    # Let CSS size it: keep the viewBox, drop the fixed point size.
    return re.sub(r'<svg([^>]*?) width="[^"]+" height="[^"]+"', r'<svg class="plot" role="img"\1', svg, count=1)


@dataclass(frozen=True)
class DashboardFigures:
    """Inline SVG of every dashboard figure; None where the data cannot support it yet."""

    forest: str | None
    roc: str | None
    confusion: str | None
    quality: str | None
    times: str | None
    fooled: str | None


def dashboard_figures(analysis: StudyAnalysis) -> DashboardFigures:
    """Every figure of a study's report as SVG, cached with the report (same key, so it changes with it)."""
    key = f"{analysis.cache_key}:figures"
    figures = cache.get(key)
    if figures is None:
        figures = render_figures(analysis.report)
        cache.set(key, figures, CACHE_SECONDS)
    return figures


def render_figures(report: StudyReport | None) -> DashboardFigures:
    svgs = {name: None for name in DashboardFigures.__dataclass_fields__}
    if report is not None:
        for plan in figure_plan(report):
            svgs[plan.name] = figure_svg(plan.draw, width=plan.width, height=plan.height)
    return DashboardFigures(**svgs)


@dataclass(frozen=True)
class FigurePlan:
    """One figure the data supports: how to draw it and its size in inches (on screen; the PDF keeps the height)."""

    name: str
    draw: Callable[[Canvas], None]
    width: float
    height: float


def figure_plan(report: StudyReport) -> list[FigurePlan]:
    """The report's figures that its data can support, in reading order."""
    summary = headline(report)
    readers = len(report.design.readers)
    rows = reader_rows(report)
    panels = sum(row.confusion is not None for row in rows)
    confusion_rows = math.ceil(panels / 6) if 1 < panels <= MAX_READER_PANELS else 1
    plan = []
    if any(row.auc is not None for row in rows):
        plan.append(FigurePlan("forest", lambda f: draw_forest(f, report, summary), 6.4, 1.4 + 0.32 * (readers + 1)))
    if report.roc.per_reader:
        plan.append(FigurePlan("roc", lambda f: draw_roc(f, report), 5.6, 5.2))
    if report.binary is not None and report.binary.pooled.metrics.confusion.total:
        height = max(3.4, 1.0 * confusion_rows + 0.9)
        plan.append(FigurePlan("confusion", lambda f: draw_confusion(f, report), 10, height))
    if report.quality:
        plan.append(FigurePlan("quality", lambda f: draw_quality(f, report), 10, 3.6))
    if report.reading_time:
        plan.append(FigurePlan("times", lambda f: draw_times(f, report), 7.5, 1.3 + 0.42 * (readers + 1)))
    if report.realism is not None and report.realism.images:
        plan.append(FigurePlan("fooled", lambda f: draw_fooled(f, report), 6.4, 3.4))
    return plan

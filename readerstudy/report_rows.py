"""The one place that turns a study report into table rows and labels, for the dashboard, the printable page, the
XLSX and the PDF alike.

Each table has one function (``reader_rows``, ``pooled_rows``, ``mrmc_rows``, ``generator_rows``,
``agreement_rows``, ``repeat_rows``, ``quality_rows``, ``time_rows``, ``realism_rows``, ``roc_point_rows``,
``summary_rows``, and ``headline``) returning frozen rows that carry both the text people read (``.text``,
``*_text``: the pages and the PDF show these) and the raw numbers (``sheet_cells()`` / ``sheet_rows()`` under
``SHEET_HEADER``: the XLSX writes these), so a number is rounded and labelled in one place only. It is longer than
most modules because it holds every table of the report; it does nothing else (no layout, no file format, no
database).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from readerstudy.stats import StudyReport
from readerstudy.stats.mrmc import ModalityEstimate, MRMCResult
from readerstudy.stats.proportions import BinaryMetrics, ConfusionMatrix, Interval, Proportion
from readerstudy.stats.report import QualityEntry, TimeEntry

if TYPE_CHECKING:
    from readerstudy.analysis import StudyAnalysis

DASH = "–"


# -- text for people ------------------------------------------------------------------------------------------


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def number_text(value: float | None, digits: int = 2, *, suffix: str = "") -> str:
    """A number for people, or "–" when there is none (None, NaN or infinite)."""
    return f"{value:.{digits}f}{suffix}" if _finite(value) else DASH


def interval_text(interval: Interval | None, digits: int = 2) -> str:
    if interval is None or not (_finite(interval.lower) and _finite(interval.upper)):
        return DASH
    separator = " to " if interval.lower < 0 else "–"  # "-0.33–-0.12" would read as a range of minus signs
    return f"{interval.lower:.{digits}f}{separator}{interval.upper:.{digits}f}"


def proportion_text(proportion: Proportion | None, digits: int = 2) -> str:
    """e.g. "0.81 (0.72–0.88)": estimate and Wilson interval, for tables and plots."""
    if proportion is None or not proportion.trials:
        return DASH
    return f"{proportion.estimate:.{digits}f} ({interval_text(proportion.wilson, digits)})"


def p_text(p: float | None) -> str:
    if p is None or not math.isfinite(p):
        return DASH
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def level_text(alpha: float) -> str:
    """The confidence level of the report's intervals, e.g. "95%"."""
    return f"{100 * (1 - alpha):g}%"


# -- cells shared by several tables ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ProportionCell:
    """A proportion (None: not available) as text and as its estimate, Wilson bounds and "successes/trials"."""

    proportion: Proportion | None

    @property
    def text(self) -> str:
        return proportion_text(self.proportion)

    def sheet_cells(self) -> list:
        p = self.proportion
        if p is None:
            return [None, None, None, None]
        return [p.estimate, p.wilson.lower, p.wilson.upper, f"{p.successes}/{p.trials}"]


def proportion_header(name: str) -> list[str]:
    return [name, f"{name} Wilson lower", f"{name} Wilson upper", f"{name} count"]


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its confidence interval, test p and standard error, shown to ``digits`` places."""

    value: float
    ci: Interval
    p: float | None = None
    se: float | None = None
    digits: int = 2

    @property
    def text(self) -> str:
        return number_text(self.value, self.digits)

    @property
    def ci_text(self) -> str:
        return interval_text(self.ci, self.digits)

    @property
    def p_value_text(self) -> str:
        return p_text(self.p)

    @property
    def with_ci(self) -> str:
        return f"{self.text} ({self.ci_text})"


def _mrmc_auc(result: MRMCResult | None, digits: int = 2) -> Estimate | None:
    """The random-readers-random-cases AUC of a single-modality OR analysis."""
    if result is None:
        return None
    e = result.random_readers_random_cases.modalities[0]
    return Estimate(e.estimate, e.ci, e.p_value, e.se, digits)


CALLS_HEADER = ["TP", "FN", "TN", "FP"]
CALLS_HEADER += [column for name in ("accuracy", "sensitivity", "specificity") for column in proportion_header(name)]


@dataclass(frozen=True)
class Calls:
    """Calls against truth: the confusion matrix (None: no calls) and accuracy, sensitivity and specificity."""

    confusion: ConfusionMatrix | None
    accuracy: ProportionCell
    sensitivity: ProportionCell
    specificity: ProportionCell

    @staticmethod
    def values(metrics: BinaryMetrics | None) -> dict:
        """The fields of Calls for ``metrics`` (for the rows built on it)."""
        if metrics is None:
            return {"confusion": None, **{n: ProportionCell(None) for n in ("accuracy", "sensitivity", "specificity")}}
        return {
            "confusion": metrics.confusion,
            "accuracy": ProportionCell(metrics.accuracy),
            "sensitivity": ProportionCell(metrics.sensitivity),
            "specificity": ProportionCell(metrics.specificity),
        }

    def calls_cells(self) -> list:
        c = self.confusion
        counts = [None] * 4 if c is None else [c.true_positive, c.false_negative, c.true_negative, c.false_positive]
        return counts + self.accuracy.sheet_cells() + self.sensitivity.sheet_cells() + self.specificity.sheet_cells()


# -- the headline ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Headline:
    """The study's answer to "can radiologists as a population tell these images apart?"."""

    available: bool
    estimate: ModalityEstimate | None
    generalisation: str
    readers: int
    cases: int
    verdict: str
    tone: str  # "good" (tell apart), "bad" (cannot), "neutral" (not enough data)

    @property
    def ci(self) -> Interval | None:
        return self.estimate.ci if self.estimate else None

    @property
    def text(self) -> str:
        return number_text(self.estimate.estimate if self.estimate else None, 3)

    @property
    def ci_text(self) -> str:
        return interval_text(self.ci, 3)

    @property
    def p_value_text(self) -> str:
        return p_text(self.estimate.p_value) if self.estimate and self.estimate.p_value is not None else ""


def headline(report: StudyReport | None) -> Headline:
    """The random-readers-random-cases MRMC AUC against 0.5; with one reader, the fixed-reader one, said so."""
    if report is None or not report.mrmc.auc:
        return Headline(False, None, "", 0, 0, _no_headline_reason(report), "neutral")
    result: MRMCResult = report.mrmc.auc[0]
    estimate = result.random_readers_random_cases.modalities[0]
    generalisation = "random readers and random cases: the result generalises to both populations"
    if not _finite(estimate.ci.lower):
        estimate = result.fixed_readers_random_cases.modalities[0]
        generalisation = "fixed readers, random cases: with one reader the result describes this reader only"
    if not (_finite(estimate.ci.lower) and _finite(estimate.ci.upper)):
        reason = "Not enough readings for a confidence interval yet."
        return Headline(False, estimate, generalisation, len(result.readers), result.n_cases, reason, "neutral")
    level = level_text(report.alpha)
    if estimate.ci.lower > 0.5:
        verdict = (
            f"Yes: readers tell synthetic from real images better than chance (the {level} confidence interval "
            "of the AUC lies above 0.5)."
        )
        tone = "good"
    elif estimate.ci.upper < 0.5:
        verdict = (
            f"Worse than chance: readers call synthetic images real more often than real ones (the {level} "
            "confidence interval lies below 0.5)."
        )
        tone = "bad"
    else:
        verdict = (
            f"Not shown: the {level} confidence interval of the AUC includes 0.5, so these readers cannot be "
            "shown to tell the images apart better than chance."
        )
        tone = "bad"
    return Headline(True, estimate, generalisation, len(result.readers), result.n_cases, verdict, tone)


def _no_headline_reason(report: StudyReport | None) -> str:
    if report is None:
        return "No readings yet."
    design = report.design
    if design.n_real == 0 or design.n_synthetic == 0:
        return "Readers have read only one class so far: the AUC needs readings of both real and synthetic images."
    return (
        "Not enough cases read by every reader yet: the multi-reader analysis needs at least two real and two "
        "synthetic cases that every reader has answered."
    )


def summary_rows(*, name: str, study_id: int, analysis: StudyAnalysis) -> list[list]:
    """The study, its readings and the headline as label/value pairs (the workbook's first sheet)."""
    rows = [
        ["Study", name],
        ["Study id", study_id],
        ["Analysed readings", analysis.version.count],
        ["Computed at", analysis.computed_at.isoformat()],
    ]
    report = analysis.report
    if report is None:
        return [*rows, ["Status", analysis.problem]]
    design = report.design
    top = headline(report)
    return [
        *rows,
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


# -- calls: per reader and pooled -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ReaderRow(Calls):
    """One reader's calls and ROC side by side (None where the data cannot support the figure)."""

    reader: str
    readings: int
    auc: Estimate | None  # DeLong

    SHEET_HEADER: ClassVar = [
        "reader",
        "readings",
        *CALLS_HEADER,
        "AUC",
        "AUC SE (DeLong)",
        "AUC CI lower",
        "AUC CI upper",
        "p (AUC = 0.5)",
    ]

    @property
    def auc_text(self) -> str:
        return self.auc.with_ci if self.auc else DASH

    @property
    def auc_p_text(self) -> str:
        return self.auc.p_value_text if self.auc else DASH

    def sheet_cells(self) -> list:
        a = self.auc
        auc = [a.value, a.se, a.ci.lower, a.ci.upper, a.p] if a else [None] * 5
        return [self.reader, self.readings, *self.calls_cells(), *auc]


def reader_rows(report: StudyReport) -> tuple[ReaderRow, ...]:
    binary = {e.reader: e.metrics for e in report.binary.per_reader} if report.binary else {}
    roc = {e.reader: e.estimate for e in report.roc.per_reader}
    rows = []
    for reader in report.design.readers:
        metrics, auc = binary.get(reader), roc.get(reader)
        rows.append(
            ReaderRow(
                reader=reader,
                readings=metrics.confusion.total if metrics else 0,
                auc=Estimate(auc.auc, auc.ci, auc.p_vs_chance, auc.se) if auc else None,
                **Calls.values(metrics),
            )
        )
    return tuple(rows)


@dataclass(frozen=True)
class PooledRow(Calls):
    """All readings pooled (``generator`` ""), or the readings of one generator's images and all real ones."""

    generator: str
    readings: int
    accuracy_p: float
    fisher_p: float

    SHEET_HEADER: ClassVar = ["group", *CALLS_HEADER, "p (accuracy = 0.5)", "Fisher p"]

    @property
    def accuracy_p_text(self) -> str:
        return p_text(self.accuracy_p)

    def sheet_cells(self) -> list:
        group = f"generator {self.generator}" if self.generator else "all readings"
        return [group, *self.calls_cells(), self.accuracy_p, self.fisher_p]


def pooled_rows(report: StudyReport) -> tuple[PooledRow, ...]:
    """All readings pooled first, then each generator; empty when no reading has a call."""
    if report.binary is None:
        return ()
    return tuple(
        PooledRow(
            generator=e.generator or "",
            readings=e.metrics.confusion.total,
            accuracy_p=e.metrics.accuracy_vs_chance.p_value,
            fisher_p=e.metrics.fisher.p_value,
            **Calls.values(e.metrics),
        )
        for e in (report.binary.pooled, *report.binary.per_generator)
    )


# -- multi-reader analysis and generators ---------------------------------------------------------------------

ANALYSIS_LABELS = (
    ("random_readers_random_cases", "Random readers, random cases"),
    ("fixed_readers_random_cases", "Fixed readers, random cases"),
    ("random_readers_fixed_cases", "Random readers, fixed cases"),
)
FIGURE_LABELS = {"auc": "AUC", "accuracy": "Accuracy", "sensitivity": "Sensitivity", "specificity": "Specificity"}


@dataclass(frozen=True)
class MrmcRow:
    """One Obuchowski-Rockette estimate: a figure of merit under one of the three generalisations."""

    figure: str
    analysis: str
    readers: int
    cases: int
    estimate: ModalityEstimate

    SHEET_HEADER: ClassVar = [
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
    ]

    @property
    def figure_label(self) -> str:
        return FIGURE_LABELS[self.figure]

    @property
    def analysis_label(self) -> str:
        return dict(ANALYSIS_LABELS)[self.analysis]

    @property
    def headline(self) -> bool:
        return self.figure == "auc" and self.analysis == "random_readers_random_cases"

    @property
    def estimate_text(self) -> str:
        return number_text(self.estimate.estimate, 3)

    @property
    def se_text(self) -> str:
        return number_text(self.estimate.se, 3)

    @property
    def df_text(self) -> str:
        return "∞" if self.estimate.df is None else number_text(self.estimate.df, 1)  # None: a normal (z) reference

    @property
    def ci_text(self) -> str:
        return interval_text(self.estimate.ci, 3)

    @property
    def p_value_text(self) -> str:
        """The p of the test against chance; "–" for sensitivity and specificity, which have no chance level."""
        return p_text(self.estimate.p_value) if self.estimate.null_value is not None else DASH

    def sheet_cells(self) -> list:
        e = self.estimate
        return [
            self.figure_label,
            self.analysis_label,
            self.readers,
            self.cases,
            e.estimate,
            e.se,
            e.df,
            e.ci.lower,
            e.ci.upper,
            e.null_value,
            e.p_value,
        ]


def mrmc_rows(report: StudyReport) -> tuple[MrmcRow, ...]:
    rows = []
    for figure in FIGURE_LABELS:
        for result in getattr(report.mrmc, figure):
            for attribute, _ in ANALYSIS_LABELS:
                for estimate in getattr(result, attribute).modalities:
                    rows.append(MrmcRow(figure, attribute, len(result.readers), result.n_cases, estimate))
    return tuple(rows)


@dataclass(frozen=True)
class GeneratorRow:
    """One generator's images against all real ones: the MRMC AUC and how often they were called synthetic."""

    generator: str
    images: int
    auc: Estimate | None
    sensitivity: ProportionCell

    SHEET_HEADER: ClassVar = [
        "generator",
        "synthetic images",
        "MRMC AUC",
        "CI lower",
        "CI upper",
        "p (AUC = 0.5)",
        "sensitivity",
        "sensitivity Wilson lower",
        "sensitivity Wilson upper",
    ]

    @property
    def auc_text(self) -> str:
        return self.auc.text if self.auc else DASH

    @property
    def auc_ci_text(self) -> str:
        return self.auc.ci_text if self.auc else DASH

    @property
    def auc_p_text(self) -> str:
        return self.auc.p_value_text if self.auc else DASH

    def sheet_cells(self) -> list:
        a = self.auc
        auc = [a.value, a.ci.lower, a.ci.upper, a.p] if a else [None] * 4
        return [self.generator, self.images, *auc, *self.sensitivity.sheet_cells()[:3]]


def generator_rows(report: StudyReport) -> tuple[GeneratorRow, ...]:
    return tuple(
        GeneratorRow(
            generator=g.generator,
            images=g.n_synthetic,
            auc=_mrmc_auc(g.auc),
            sensitivity=ProportionCell(g.detection.metrics.sensitivity if g.detection else None),
        )
        for g in report.generators
    )


# -- agreement between and within readers ---------------------------------------------------------------------

_PAGE_ALPHAS = {"call": "calls (nominal)", "rating": "combined score (ordinal)"} | {
    f"{field}:ordinal": f"{field} score (ordinal)" for field in ("anatomy", "style", "artifacts")
}


@dataclass(frozen=True)
class AgreementRow:
    """One agreement statistic. ``label`` is its name on the pages, "" for those only the workbook lists."""

    statistic: str
    variable: str
    raters: int | None
    value: float
    ci: Interval | None
    p: float | None
    label: str = ""
    note: str = ""

    SHEET_HEADER: ClassVar = ["statistic", "variable", "raters", "estimate", "CI lower", "CI upper", "p"]

    @property
    def value_text(self) -> str:
        return number_text(self.value, 3)

    @property
    def ci_text(self) -> str:
        return interval_text(self.ci, 3) if self.ci else DASH

    def sheet_cells(self) -> list:
        lower, upper = (self.ci.lower, self.ci.upper) if self.ci else (None, None)
        return [self.statistic, self.variable, self.raters, self.value, lower, upper, self.p]


def agreement_rows(report: StudyReport, *, on_page: bool = False) -> tuple[AgreementRow, ...]:
    """Every agreement statistic (the workbook's), or with ``on_page`` those the pages and the PDF show."""
    agreement = report.agreement
    rows = [
        AgreementRow(
            f"Cohen's kappa {k.reader_a} vs {k.reader_b}", "call", 2, k.kappa.kappa, k.kappa.ci, k.kappa.p_value
        )
        for k in agreement.pairwise_kappa
    ]
    rows += [
        AgreementRow(
            "Fleiss' kappa",
            "call",
            f.kappa.raters,
            f.kappa.kappa,
            f.kappa.ci,
            f.kappa.p_value,
            label="Fleiss' kappa on calls" if math.isfinite(f.kappa.kappa) else "",
            note=f"{f.kappa.raters} readers, {f.kappa.subjects} cases read by all",
        )
        for f in agreement.fleiss_kappa
    ]
    rows += [
        AgreementRow(
            "Krippendorff's alpha",
            a.variable,
            None,
            a.alpha.alpha,
            None,
            None,
            label=f"Krippendorff's alpha, {_PAGE_ALPHAS[a.variable]}"
            if a.variable in _PAGE_ALPHAS and math.isfinite(a.alpha.alpha)
            else "",
            note=f"{a.alpha.units} cases",
        )
        for a in agreement.krippendorff_alpha
    ]
    rows += [
        AgreementRow(form.form, i.variable, None, form.icc, form.ci, form.p_value)
        for i in agreement.icc
        for form in i.forms
    ]
    return tuple(row for row in rows if row.label) if on_page else tuple(rows)


@dataclass(frozen=True)
class RepeatRow:
    """Within-reader agreement on hidden repeats of one reader (``reader`` None: all readers)."""

    reader: str | None
    pairs: int
    agreement: ProportionCell
    kappa: Estimate | None
    alpha: float | None

    SHEET_HEADER: ClassVar = [
        "reader",
        "pairs",
        *proportion_header("same call"),
        "Cohen's kappa",
        "kappa CI lower",
        "kappa CI upper",
        "Krippendorff's alpha (combined score, ordinal)",
    ]

    @property
    def reader_label(self) -> str:
        return self.reader or "All readers"

    @property
    def kappa_text(self) -> str:
        return self.kappa.text if self.kappa else DASH

    @property
    def kappa_ci_text(self) -> str:
        return self.kappa.ci_text if self.kappa else DASH

    @property
    def alpha_text(self) -> str:
        return number_text(self.alpha, 3) if self.alpha is not None else DASH

    def sheet_cells(self) -> list:
        kappa = [self.kappa.value, self.kappa.ci.lower, self.kappa.ci.upper] if self.kappa else [None] * 3
        return [self.reader or "all readers", self.pairs, *self.agreement.sheet_cells(), *kappa, self.alpha]


def repeat_rows(report: StudyReport) -> tuple[RepeatRow, ...]:
    """All readers first, then each reader; empty when the study has no hidden repeats."""
    return tuple(
        RepeatRow(
            reader=e.reader,
            pairs=e.pairs,
            agreement=ProportionCell(e.call_agreement),
            kappa=Estimate(e.call_kappa.kappa, e.call_kappa.ci, digits=3) if e.call_kappa else None,
            alpha=e.rating_alpha.alpha if e.rating_alpha else None,
        )
        for e in report.agreement.within_reader
    )


# -- quality, time and realism --------------------------------------------------------------------------------

SCORES = (1, 2, 3, 4, 5)


@dataclass(frozen=True)
class QualityRow:
    """One quality score, real against synthetic (one line on the pages, one line per class in the workbook)."""

    entry: QualityEntry

    SHEET_HEADER: ClassVar = [
        "score",
        "class",
        "n",
        "mean",
        "SD",
        "median",
        "Q1",
        "Q3",
        *(f"count {v:g}" for v in SCORES),
        "Mann-Whitney p (synthetic vs real)",
        "P(synthetic > real)",
        "share synthetic >= real median",
    ]

    @property
    def field(self) -> str:
        return self.entry.field.capitalize()

    @property
    def real(self) -> str:
        return _mean_sd(self.entry.real)

    @property
    def synthetic(self) -> str:
        return _mean_sd(self.entry.synthetic)

    @property
    def n_real(self) -> int:
        return self.entry.real.n

    @property
    def n_synthetic(self) -> int:
        return self.entry.synthetic.n

    @property
    def common_language(self) -> str:
        return number_text(self.entry.synthetic_vs_real.common_language)

    @property
    def p_value_text(self) -> str:
        return p_text(self.entry.synthetic_vs_real.p_value)

    @property
    def share(self) -> str:
        return number_text(100 * self.entry.share_synthetic_at_least_real_median, 0, suffix="%")

    def sheet_rows(self) -> list[list]:
        e, rows = self.entry, []
        for name, d in (("real", e.real), ("synthetic", e.synthetic)):
            counts = dict(zip(d.values, d.counts, strict=True))
            tests = [e.synthetic_vs_real.p_value, e.synthetic_vs_real.common_language]
            tests += [e.share_synthetic_at_least_real_median]
            rows.append(
                [e.field, name, d.n, d.mean, d.sd, d.median, d.q1, d.q3]
                + [counts.get(float(v), 0) for v in SCORES]
                + (tests if name == "synthetic" else [None, None, None])
            )
        return rows


def _mean_sd(d) -> str:
    return f"{d.mean:.2f} ± {d.sd:.2f}" if d.n > 1 else DASH


def quality_rows(report: StudyReport) -> tuple[QualityRow, ...]:
    return tuple(QualityRow(entry) for entry in report.quality)


@dataclass(frozen=True)
class TimeRow:
    """One reader's active reading time (``reader`` None: all readers) for real, synthetic and all cases."""

    reader: str | None
    entries: tuple[TimeEntry, ...]

    SHEET_HEADER: ClassVar = ["reader", "class", "readings", "median seconds", "Q1", "Q3"]

    @property
    def reader_label(self) -> str:
        return self.reader or "All readers"

    def _text(self, truth: str) -> str:
        for t in self.entries:
            if t.truth == truth:
                s = t.summary
                return f"{s.median:.1f} s ({s.q1:.1f}–{s.q3:.1f})" if s.n else DASH
        return ""

    @property
    def real(self) -> str:
        return self._text("real")

    @property
    def synthetic(self) -> str:
        return self._text("synthetic")

    @property
    def all(self) -> str:
        return self._text("all")

    def sheet_rows(self) -> list[list]:
        reader = self.reader or "all readers"
        return [[reader, t.truth, t.summary.n, t.summary.median, t.summary.q1, t.summary.q3] for t in self.entries]


def time_rows(report: StudyReport) -> tuple[TimeRow, ...]:
    """All readers first, then each reader, in the report's order."""
    by_reader: dict[str | None, list[TimeEntry]] = {}
    for t in report.reading_time:
        by_reader.setdefault(t.reader, []).append(t)
    return tuple(TimeRow(reader, tuple(entries)) for reader, entries in by_reader.items())


@dataclass(frozen=True)
class RealismRow:
    """One synthetic image in the realism ranking (most realistic first)."""

    rank: int
    case_id: int
    name: str
    generator: str
    readers: int
    fooled: int
    fooled_share: float
    realism: float
    adjusted: float

    SHEET_HEADER: ClassVar = [
        "rank",
        "case",
        "case name",
        "generator",
        "readers",
        "fooled",
        "fooled share",
        "realism (logit)",
        "ability-adjusted P(fooled)",
    ]

    @property
    def fooled_percent(self) -> int:
        return round(100 * self.fooled_share)

    @property
    def adjusted_percent(self) -> int:
        return round(100 * self.adjusted)

    def sheet_cells(self) -> list:
        return [
            self.rank,
            self.case_id,
            self.name,
            self.generator,
            self.readers,
            self.fooled,
            self.fooled_share,
            self.realism,
            self.adjusted,
        ]


def realism_rows(report: StudyReport, names: dict[int, str]) -> tuple[RealismRow, ...]:
    """The ranked synthetic images, with their case names from ``names`` (case id -> name; "" when missing)."""
    if report.realism is None:
        return ()
    return tuple(
        RealismRow(
            rank=image.rank,
            case_id=int(image.case),
            name=names.get(int(image.case), ""),
            generator=image.generator,
            readers=image.readers,
            fooled=image.fooled,
            fooled_share=image.fooled_share,
            realism=image.realism,
            adjusted=image.adjusted_fooled_probability,
        )
        for image in report.realism.images
    )


ROC_POINTS_HEADER = ["curve", "threshold (rating >=)", "false positive fraction", "true positive fraction"]


def roc_point_rows(report: StudyReport) -> list[list]:
    """Every point of every empirical ROC curve: each reader's, then all readings pooled."""
    curves = [(e.reader, e.curve) for e in report.roc.per_reader]
    curves += [("all readings", e.curve) for e in report.roc.pooled]
    return [
        [name, threshold, fpf, tpf]
        for name, curve in curves
        for threshold, fpf, tpf in zip(
            curve.thresholds, curve.false_positive_fraction, curve.true_positive_fraction, strict=True
        )
    ]

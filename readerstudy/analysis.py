"""A study's statistics from the database: its reading table, its report (cached until a reading changes) and the
rows the dashboard, the report pages and the exports show.

Everything here reads the same analysed readings in the same order as the long CSV export, so the dashboard shows
exactly what ``python -m readerstudy.stats`` prints for that file. Practice readings are never analysed.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from django.core.cache import cache
from django.db.models import Count, Max, QuerySet
from django.utils import timezone

from readerstudy.models import Reading, Study
from readerstudy.stats import ReadingTable, ReadingTableError, StudyReport, build_report
from readerstudy.stats.mrmc import ModalityEstimate, MRMCResult
from readerstudy.stats.proportions import BinaryMetrics, ConfusionMatrix, Interval, Proportion
from readerstudy.stats.roc import AucEstimate

# A study has one reading condition; the MRMC tools still want a modality, so every reading gets this one.
MODALITY = "study"
ALPHA = 0.05
# How long a computed report stays cached. The key changes with every reading, so this only bounds memory.
CACHE_SECONDS = 6 * 60 * 60

# The analysed readings as one values_list row each, in this order (see `analysed_readings`).
READING_FIELDS = (
    "item__session__reader__username",
    "item__case_id",
    "item__case__truth",
    "item__case__generator",
    "call",
    "confidence",
    "anatomy",
    "style",
    "artifacts",
    "active_ms",
    "item__replicate",
)


def analysed_readings(*, study: Study) -> QuerySet[Reading]:
    """The readings that count: main-block items only (never practice), by reader name then stored position.

    This order fixes the order of readers and cases in every statistic, so the export and the dashboard, which
    both use it, give bit-identical numbers.
    """
    return Reading.objects.filter(item__session__study=study, item__is_practice=False).order_by(
        "item__session__reader__username", "item__position"
    )


@dataclass(frozen=True)
class ReadingsVersion:
    """What identifies the current set of analysed readings: a new, changed or removed reading changes it, and so
    does an edited case (its truth or generator)."""

    count: int
    last_change: datetime | None
    cases_changed: datetime | None = None

    @property
    def token(self) -> str:
        stamps = [moment.timestamp() if moment else 0 for moment in (self.last_change, self.cases_changed)]
        return f"{self.count}-{stamps[0]:.6f}-{stamps[1]:.6f}"


def readings_version(*, study: Study) -> ReadingsVersion:
    values = (
        analysed_readings(study=study)
        .order_by()
        .aggregate(count=Count("id"), last=Max("updated_at"), cases_changed=Max("item__case__updated_at"))
    )
    return ReadingsVersion(count=values["count"], last_change=values["last"], cases_changed=values["cases_changed"])


def rating_of(call: str, confidence: int, levels: int) -> int:
    """The combined ordinal score of one reading (``readerstudy.stats.ordinal_score`` for a single pair)."""
    return levels + confidence if call == "synthetic" else levels + 1 - confidence


def study_table(*, study: Study) -> ReadingTable | None:
    """The study's analysed readings as a ReadingTable (None when there are none), from a single query."""
    rows = list(analysed_readings(study=study).values_list(*READING_FIELDS))
    if not rows:
        return None
    reader, case, truth, generator, call, confidence, anatomy, style, artifacts, active_ms, replicate = zip(
        *rows, strict=True
    )
    is_synthetic = np.asarray(truth) == "synthetic"
    return ReadingTable.from_columns(
        reader=reader,
        case=case,
        modality=MODALITY,
        truth=is_synthetic.astype(np.int8),
        label=(np.asarray(call) == "synthetic").astype(np.int8),
        confidence=confidence,
        confidence_levels=study.confidence_levels,
        anatomy=anatomy,
        style=style,
        artifacts=artifacts,
        active_seconds=np.asarray(active_ms, dtype=float) / 1000,
        generator=np.where(is_synthetic, np.asarray(generator, dtype=str), ""),
        replicate=replicate,
    )


@dataclass(frozen=True)
class StudyAnalysis:
    """A study's report at one version of its readings; ``problem`` says why there is no report."""

    study_id: int
    version: ReadingsVersion
    alpha: float
    confidence_levels: int
    report: StudyReport | None
    problem: str
    computed_at: datetime
    seconds: float

    @property
    def cache_key(self) -> str:
        return analysis_cache_key(self.study_id, self.alpha, self.confidence_levels, self.version)


def analysis_cache_key(study_id: int, alpha: float, confidence_levels: int, version: ReadingsVersion) -> str:
    # The confidence scale is part of the key: changing it changes every rating.
    return f"readerstudy:analysis:{study_id}:{alpha}:{confidence_levels}:{version.token}"


def study_analysis(*, study: Study, alpha: float = ALPHA) -> StudyAnalysis:
    """The study's report, computed once per version of its readings and then served from the cache."""
    version = readings_version(study=study)
    key = analysis_cache_key(study.pk, alpha, study.confidence_levels, version)
    cached = cache.get(key)
    if cached is not None:
        return cached
    start = time.perf_counter()
    report, problem = None, ""
    if version.count == 0:
        problem = "No readings yet: statistics appear here as soon as readers answer their first main-block case."
    else:
        try:
            table = study_table(study=study)
        except ReadingTableError as error:
            problem = f"The readings cannot be analysed: {error.problem}."
        else:
            report = build_report(table, alpha=alpha)
    analysis = StudyAnalysis(
        study_id=study.pk,
        version=version,
        alpha=alpha,
        confidence_levels=study.confidence_levels,
        report=report,
        problem=problem,
        computed_at=timezone.now(),
        seconds=time.perf_counter() - start,
    )
    cache.set(key, analysis, CACHE_SECONDS)
    return analysis


# -- rows for people ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReaderRow:
    """One reader's calls and ROC side by side (None where the data cannot support the figure)."""

    reader: str
    readings: int
    metrics: BinaryMetrics | None
    auc: AucEstimate | None

    @property
    def confusion(self) -> ConfusionMatrix | None:
        return self.metrics.confusion if self.metrics else None


def reader_rows(report: StudyReport) -> tuple[ReaderRow, ...]:
    binary = {e.reader: e.metrics for e in report.binary.per_reader} if report.binary else {}
    roc = {e.reader: e.estimate for e in report.roc.per_reader}
    return tuple(
        ReaderRow(
            reader=reader,
            readings=binary[reader].confusion.total if reader in binary else 0,
            metrics=binary.get(reader),
            auc=roc.get(reader),
        )
        for reader in report.design.readers
    )


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
    analysis_label: str
    readers: int
    cases: int
    estimate: ModalityEstimate

    @property
    def figure_label(self) -> str:
        return FIGURE_LABELS[self.figure]


def mrmc_rows(report: StudyReport) -> tuple[MrmcRow, ...]:
    rows = []
    for figure in FIGURE_LABELS:
        for result in getattr(report.mrmc, figure):
            for attribute, label in ANALYSIS_LABELS:
                for estimate in getattr(result, attribute).modalities:
                    rows.append(MrmcRow(figure, attribute, label, len(result.readers), result.n_cases, estimate))
    return tuple(rows)


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
    level = f"{100 * (1 - report.alpha):g}%"
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


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def proportion_text(proportion: Proportion | None, digits: int = 2) -> str:
    """e.g. "0.81 (0.72–0.88)": estimate and Wilson interval, for tables and plots."""
    if proportion is None or not proportion.trials:
        return "–"
    return f"{proportion.estimate:.{digits}f} ({interval_text(proportion.wilson, digits)})"


def interval_text(interval: Interval | None, digits: int = 2) -> str:
    if interval is None or not (_finite(interval.lower) and _finite(interval.upper)):
        return "–"
    separator = " to " if interval.lower < 0 else "–"  # "-0.33–-0.12" would read as a range of minus signs
    return f"{interval.lower:.{digits}f}{separator}{interval.upper:.{digits}f}"


def number_text(value: float | None, digits: int = 2, *, suffix: str = "") -> str:
    """A number for people, or "–" when there is none (None, NaN or infinite)."""
    return f"{value:.{digits}f}{suffix}" if _finite(value) else "–"


def p_text(p: float | None) -> str:
    if p is None or not math.isfinite(p):
        return "–"
    return "< 0.001" if p < 0.001 else f"{p:.3f}"

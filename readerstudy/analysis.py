"""A study's statistics from the database: its reading table and its report, cached until a reading changes (the
rows and labels people see are made from the report in ``readerstudy.report_rows``).

Everything here reads the same analysed readings in the same order as the long CSV export, so the dashboard shows
exactly what ``python -m readerstudy.stats`` prints for that file. Practice readings are never analysed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from django.core.cache import cache
from django.db.models import Count, Max, QuerySet
from django.utils import timezone

from readerstudy.models import Reading, Study
from readerstudy.stats import ReadingTable, ReadingTableError, StudyReport, build_report

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

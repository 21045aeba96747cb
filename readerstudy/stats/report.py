"""The whole study report from one table of readings: the single entry point shared by the website dashboard
and the command line, so both show identical numbers.

``build_report(table)`` returns a :class:`StudyReport` of frozen dataclasses; ``report.to_dict()`` is its
JSON-serialisable form (stable key order = field order, floats as floats, NaN/inf as null) and
:func:`format_text` renders it for people.

One job, and so one module despite its length: assembling the report from the statistics modules.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from itertools import combinations
from typing import Any

import numpy as np
from scipy.special import expit

from readerstudy.stats.agreement import (
    AlphaResult,
    FleissKappaResult,
    IccResult,
    KappaResult,
    cohen_kappa,
    fleiss_kappa,
    intraclass_correlations,
    krippendorff_alpha,
)
from readerstudy.stats.mrmc import FIGURES_OF_MERIT, MRMCResult, crossed_arrays, mrmc_analysis
from readerstudy.stats.proportions import (
    BinaryMetrics,
    Proportion,
    binary_metrics,
    confusion_matrix,
    proportion,
)
from readerstudy.stats.quality import (
    MannWhitneyComparison,
    ScoreDistribution,
    TimeSummary,
    mann_whitney,
    score_distribution,
    share_at_least_median,
    time_summary,
)
from readerstudy.stats.realism import fit_rasch
from readerstudy.stats.roc import (
    AucEstimate,
    PairedAucTest,
    RocCurve,
    auc,
    delong_auc,
    delong_paired_test,
    roc_curve,
)
from readerstudy.stats.table import QUALITY_FIELDS, ReadingTable

SCHEMA = "readerstudy.stats.report/1"
# Agreement statistics on ratings build value x value matrices; beyond this many distinct ratings the scale
# is continuous rather than ordinal and those statistics are skipped.
MAX_ORDINAL_LEVELS = 50
REALISM_METHOD = (
    "penalised Rasch (1-PL logistic) model, logit P(called real) = mu + image + reader, "
    "N(0, 1) penalties on image and reader effects, fitted by Newton-Raphson (readerstudy.stats.realism)"
)


# -- result types ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Design:
    """What was read: counts, identifiers and which optional columns the table has."""

    n_readings: int
    n_repeat_readings: int
    readers: tuple[str, ...]
    modalities: tuple[str, ...]
    n_cases: int
    n_synthetic: int
    n_real: int
    generators: tuple[str, ...]
    has_label: bool
    has_confidence: bool
    quality_fields: tuple[str, ...]
    has_active_time: bool
    fully_crossed: bool


@dataclass(frozen=True)
class BinaryEntry:
    """Binary metrics of one reader (``reader`` None = pooled over readers) in one modality (None = all)."""

    reader: str | None
    modality: str | None
    generator: str | None
    metrics: BinaryMetrics


@dataclass(frozen=True)
class BinarySection:
    """Calls against truth: per reader, pooled over readers per modality, pooled over everything, and per
    generator (that generator's synthetic cases against all real cases). Pooled CIs treat readings as
    independent; the MRMC section gives the reader-population inference."""

    per_reader: tuple[BinaryEntry, ...]
    per_modality: tuple[BinaryEntry, ...]
    pooled: BinaryEntry
    per_generator: tuple[BinaryEntry, ...]


@dataclass(frozen=True)
class RocEntry:
    """ROC curve and DeLong AUC of one reader in one modality."""

    reader: str
    modality: str
    estimate: AucEstimate
    curve: RocCurve


@dataclass(frozen=True)
class PooledRoc:
    """ROC of all readings of a modality pooled over readers (descriptive only)."""

    modality: str
    auc: float
    curve: RocCurve


@dataclass(frozen=True)
class PairedRocEntry:
    """DeLong's paired test of one reader's AUC in two modalities over the cases read in both."""

    reader: str
    modality_a: str
    modality_b: str
    test: PairedAucTest


@dataclass(frozen=True)
class RocSection:
    per_reader: tuple[RocEntry, ...]
    pooled: tuple[PooledRoc, ...]
    paired: tuple[PairedRocEntry, ...]


@dataclass(frozen=True)
class MRMCSection:
    """OR analyses per figure of merit: one result covering all modalities when the design is fully
    crossed, otherwise one per modality (each on its own cases). Empty when not computable."""

    auc: tuple[MRMCResult, ...]
    accuracy: tuple[MRMCResult, ...]
    sensitivity: tuple[MRMCResult, ...]
    specificity: tuple[MRMCResult, ...]


@dataclass(frozen=True)
class GeneratorEntry:
    """One generator in one modality: readers' AUC for its images against all real cases (OR analysis,
    random readers and cases, single modality), and how often its images were called synthetic."""

    generator: str
    modality: str
    n_synthetic: int
    auc: MRMCResult | None
    detection: BinaryEntry | None


@dataclass(frozen=True)
class PairwiseKappa:
    modality: str
    reader_a: str
    reader_b: str
    kappa: KappaResult


@dataclass(frozen=True)
class FleissEntry:
    modality: str
    kappa: FleissKappaResult


@dataclass(frozen=True)
class AlphaEntry:
    """Krippendorff's alpha of one variable (``call``, ``rating`` or a quality field) in one modality."""

    modality: str
    variable: str
    alpha: AlphaResult


@dataclass(frozen=True)
class IccEntry:
    modality: str
    variable: str
    forms: tuple[IccResult, ...]


@dataclass(frozen=True)
class RepeatEntry:
    """Within-reader agreement between a first reading and its hidden repeats (``reader`` None = pooled)."""

    reader: str | None
    pairs: int
    call_agreement: Proportion | None
    call_kappa: KappaResult | None
    rating_alpha: AlphaResult | None


@dataclass(frozen=True)
class AgreementSection:
    pairwise_kappa: tuple[PairwiseKappa, ...]
    fleiss_kappa: tuple[FleissEntry, ...]
    krippendorff_alpha: tuple[AlphaEntry, ...]
    icc: tuple[IccEntry, ...]
    within_reader: tuple[RepeatEntry, ...]


@dataclass(frozen=True)
class GeneratorScores:
    generator: str
    distribution: ScoreDistribution
    versus_real: MannWhitneyComparison


@dataclass(frozen=True)
class QualityEntry:
    """One quality score in one modality: distributions, synthetic-vs-real test (x = synthetic), and the
    share of synthetic images whose mean score reaches the median real image's mean score."""

    field: str
    modality: str
    real: ScoreDistribution
    synthetic: ScoreDistribution
    synthetic_vs_real: MannWhitneyComparison
    share_synthetic_at_least_real_median: float
    per_generator: tuple[GeneratorScores, ...]


@dataclass(frozen=True)
class TimeEntry:
    """Active reading time of one reader (None = all readers) for one class (real, synthetic, all)."""

    reader: str | None
    truth: str
    summary: TimeSummary


@dataclass(frozen=True)
class ImageRealism:
    """One synthetic image (a case in a modality): readers fooled and its ability-adjusted realism."""

    rank: int
    modality: str
    case: str
    generator: str
    readers: int
    fooled: int
    fooled_share: float
    realism: float
    adjusted_fooled_probability: float


@dataclass(frozen=True)
class ReaderCredulity:
    reader: str
    readings: int
    fooled: int
    effect: float


@dataclass(frozen=True)
class RealismSection:
    method: str
    intercept: float
    converged: bool
    images: tuple[ImageRealism, ...]
    readers: tuple[ReaderCredulity, ...]


@dataclass(frozen=True)
class StudyReport:
    """Everything the dashboard and the command line show; sections that the data cannot support are
    None (or empty) and ``notes`` says why."""

    schema: str
    alpha: float
    design: Design
    binary: BinarySection | None
    roc: RocSection
    mrmc: MRMCSection
    generators: tuple[GeneratorEntry, ...]
    agreement: AgreementSection
    quality: tuple[QualityEntry, ...]
    reading_time: tuple[TimeEntry, ...]
    realism: RealismSection | None
    notes: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict: dataclasses become dicts in field order, tuples lists, NaN/inf None."""
        return _plain(self)


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return value


# -- building --------------------------------------------------------------------------------------
class _Readings:
    """Dense (modality, reader, case) views of the first readings."""

    def __init__(self, table: ReadingTable) -> None:
        self.table = table
        self.readers, self.modalities, self.cases = table.readers, table.modalities, table.cases
        shape = (len(self.modalities), len(self.readers), len(self.cases))
        index = (table.modality_index, table.reader_index, table.case_index)
        self.rating = np.full(shape, np.nan)
        self.rating[index] = table.rating
        self.read = ~np.isnan(self.rating)
        self.label = None
        if table.label is not None:
            self.label = np.full(shape, -1, dtype=np.int8)
            self.label[index] = table.label
        self.truth = table.case_truth
        self.generator = table.case_generator

    def column(self, name: str) -> np.ndarray:
        cube = np.full(self.rating.shape, np.nan)
        cube[self.table.modality_index, self.table.reader_index, self.table.case_index] = getattr(self.table, name)
        return cube


def build_report(table: ReadingTable, *, alpha: float = 0.05) -> StudyReport:
    """Build the full study report (all sections of :class:`StudyReport`) at confidence level 1 - alpha."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    notes: list[str] = []
    first = table.first_readings()
    readings = _Readings(first)
    design = _design(table, first, readings)
    if not design.has_label:
        notes.append(
            "no label (call) column: accuracy, sensitivity, specificity, kappa on calls and the realism "
            "ranking need the readers' calls and are omitted; ROC/AUC uses the ratings"
        )
    if design.n_synthetic == 0 or design.n_real == 0:
        notes.append("the study needs both real and synthetic cases for ROC, MRMC and most binary metrics")
    binary = _binary_section(readings, alpha) if design.has_label else None
    roc = _roc_section(readings, alpha)
    mrmc = _mrmc_section(first, design, alpha, notes)
    generators = _generator_section(first, readings, alpha, notes)
    agreement = _agreement_section(table, readings, alpha, notes)
    quality = _quality_section(readings)
    reading_time = _time_section(readings) if design.has_active_time else ()
    realism = _realism_section(readings) if design.has_label and design.n_synthetic else None
    return StudyReport(
        schema=SCHEMA,
        alpha=alpha,
        design=design,
        binary=binary,
        roc=roc,
        mrmc=mrmc,
        generators=generators,
        agreement=agreement,
        quality=quality,
        reading_time=reading_time,
        realism=realism,
        notes=tuple(notes),
    )


def _design(table: ReadingTable, first: ReadingTable, readings: _Readings) -> Design:
    truth = readings.truth
    generators = tuple(sorted({g for g, t in zip(readings.generator, truth, strict=True) if t and g}))
    return Design(
        n_readings=len(table),
        n_repeat_readings=int(np.count_nonzero(table.replicate)),
        readers=readings.readers,
        modalities=readings.modalities,
        n_cases=len(readings.cases),
        n_synthetic=int(truth.sum()),
        n_real=int((truth == 0).sum()),
        generators=generators,
        has_label=first.has_label,
        has_confidence=first.confidence is not None,
        quality_fields=tuple(f for f in QUALITY_FIELDS if getattr(first, f) is not None),
        has_active_time=first.active_seconds is not None,
        fully_crossed=bool(readings.read.all()),
    )


def _binary_section(readings: _Readings, alpha: float) -> BinarySection:
    label, read, truth = readings.label, readings.read, readings.truth

    def entry(reader, modality, generator, mask) -> BinaryEntry:
        t = np.broadcast_to(truth, mask.shape)[mask]
        return BinaryEntry(reader, modality, generator, binary_metrics(confusion_matrix(t, label[mask]), alpha=alpha))

    per_reader, per_modality, per_generator = [], [], []
    for i, modality in enumerate(readings.modalities):
        for j, reader in enumerate(readings.readers):
            mask = np.zeros_like(read)
            mask[i, j] = read[i, j]
            if mask.any():
                per_reader.append(entry(reader, modality, None, mask))
        mask = np.zeros_like(read)
        mask[i] = read[i]
        per_modality.append(entry(None, modality, None, mask))
    for generator in _generators(readings):
        cases = (readings.generator == generator) & (truth == 1) | (truth == 0)
        for i, modality in enumerate(readings.modalities):
            mask = np.zeros_like(read)
            mask[i] = read[i] & cases
            if (mask & (truth == 1)).any():
                per_generator.append(entry(None, modality, generator, mask))
    return BinarySection(tuple(per_reader), tuple(per_modality), entry(None, None, None, read), tuple(per_generator))


def _generators(readings: _Readings) -> tuple[str, ...]:
    return tuple(sorted({g for g, t in zip(readings.generator, readings.truth, strict=True) if t and g}))


def _roc_section(readings: _Readings, alpha: float) -> RocSection:
    truth = readings.truth
    per_reader, pooled, paired = [], [], []
    if not (truth.any() and (truth == 0).any()):
        return RocSection((), (), ())
    for i, modality in enumerate(readings.modalities):
        for j, reader in enumerate(readings.readers):
            read = readings.read[i, j]
            t = truth[read]
            if t.all() or not t.any():
                continue
            ratings = readings.rating[i, j, read]
            per_reader.append(RocEntry(reader, modality, delong_auc(t, ratings, alpha=alpha), roc_curve(t, ratings)))
        read = readings.read[i]
        t = np.broadcast_to(truth, read.shape)[read]
        if t.any() and not t.all():
            ratings = readings.rating[i][read]
            pooled.append(PooledRoc(modality, auc(t, ratings), roc_curve(t, ratings)))
    for j, reader in enumerate(readings.readers):
        for a, b in combinations(range(len(readings.modalities)), 2):
            both = readings.read[a, j] & readings.read[b, j]
            t = truth[both]
            if t.sum() < 2 or (t == 0).sum() < 2:
                continue
            test = delong_paired_test(t, readings.rating[a, j, both], readings.rating[b, j, both], alpha=alpha)
            paired.append(PairedRocEntry(reader, readings.modalities[a], readings.modalities[b], test))
    return RocSection(tuple(per_reader), tuple(pooled), tuple(paired))


def _mrmc_section(first: ReadingTable, design: Design, alpha: float, notes: list[str]) -> MRMCSection:
    results: dict[str, tuple[MRMCResult, ...]] = {}
    crossed_ok = _enough_cases(first)
    for figure in FIGURES_OF_MERIT:
        if figure != "auc" and not design.has_label:
            results[figure] = ()
            continue
        tables = [first] if crossed_ok else [first.select(first.modality == m) for m in first.modalities]
        analyses = []
        for part in tables:
            try:
                analyses.append(mrmc_analysis(part, figure, alpha=alpha))
            except ValueError as error:
                notes.append(f"MRMC {figure}: {error}")
        results[figure] = tuple(analyses)
    if not crossed_ok and len(first.modalities) > 1:
        notes.append(
            "too few cases were read by every reader in every modality for a joint MRMC analysis: "
            "each modality is analysed on its own cases and modalities are not compared"
        )
    return MRMCSection(**results)


def _enough_cases(first: ReadingTable) -> bool:
    _, _, truth, _, _, _ = crossed_arrays(first)
    return int(truth.sum()) >= 2 and int((truth == 0).sum()) >= 2


def _generator_section(
    first: ReadingTable, readings: _Readings, alpha: float, notes: list[str]
) -> tuple[GeneratorEntry, ...]:
    entries = []
    for generator in _generators(readings):
        case_in_group = (first.case_truth == 0) | (first.case_generator == generator)
        in_group = case_in_group[first.case_index]
        for modality in readings.modalities:
            part = first.select(in_group & (first.modality == modality))
            n_synthetic = int(part.case_truth.sum())
            try:
                analysis = mrmc_analysis(part, "auc", alpha=alpha)
            except ValueError as error:
                analysis = None
                notes.append(f"generator {generator!r}, modality {modality!r}: {error}")
            detection = None
            if part.label is not None:
                confusion = confusion_matrix(part.truth, part.label)
                detection = BinaryEntry(None, modality, generator, binary_metrics(confusion, alpha=alpha))
            entries.append(GeneratorEntry(generator, modality, n_synthetic, analysis, detection))
    return tuple(entries)


def _agreement_section(table: ReadingTable, readings: _Readings, alpha: float, notes: list[str]) -> AgreementSection:
    pairwise, fleiss, alphas, iccs = [], [], [], []
    n_levels = np.unique(readings.rating[readings.read]).size
    ordinal_ratings = n_levels <= MAX_ORDINAL_LEVELS
    if not ordinal_ratings:
        notes.append(
            f"ratings take {n_levels} distinct values (more than {MAX_ORDINAL_LEVELS}): Krippendorff's "
            "alpha on ratings is omitted as the scale is not ordinal"
        )
    for i, modality in enumerate(readings.modalities):
        if readings.label is not None:
            calls = np.where(readings.read[i], readings.label[i].astype(float), np.nan)  # readers x cases
            for a, b in combinations(range(len(readings.readers)), 2):
                kappa = cohen_kappa(calls[a], calls[b], alpha=alpha)
                if kappa.n:
                    pairwise.append(PairwiseKappa(modality, readings.readers[a], readings.readers[b], kappa))
            if len(readings.readers) > 1:
                fleiss.append(FleissEntry(modality, fleiss_kappa(calls.T, alpha=alpha)))
                alphas.append(AlphaEntry(modality, "call", krippendorff_alpha(calls, level="nominal")))
        if ordinal_ratings and len(readings.readers) > 1:
            ratings = np.where(readings.read[i], readings.rating[i], np.nan)
            alphas.append(AlphaEntry(modality, "rating", krippendorff_alpha(ratings, level="ordinal")))
        for field in QUALITY_FIELDS:
            if getattr(readings.table, field) is None or len(readings.readers) < 2:
                continue
            scores = readings.column(field)[i]
            for level in ("ordinal", "nominal", "interval"):
                alphas.append(AlphaEntry(modality, f"{field}:{level}", krippendorff_alpha(scores, level=level)))
            forms = intraclass_correlations(scores.T, alpha=alpha)
            if forms:
                iccs.append(IccEntry(modality, field, forms))
    return AgreementSection(tuple(pairwise), tuple(fleiss), tuple(alphas), tuple(iccs), _repeats(table, alpha))


def _repeats(table: ReadingTable, alpha: float) -> tuple[RepeatEntry, ...]:
    if not table.has_repeats:
        return ()
    key = np.stack([table.reader_index, table.modality_index, table.case_index], axis=1)
    first_rows = np.flatnonzero(table.replicate == 0)
    lookup = {tuple(key[i]): i for i in first_rows}
    pairs = [(lookup[tuple(key[i])], i) for i in np.flatnonzero(table.replicate > 0) if tuple(key[i]) in lookup]
    if not pairs:
        return ()
    first_index = np.array([p[0] for p in pairs])
    repeat_index = np.array([p[1] for p in pairs])
    reader_of_pair = table.reader_index[first_index]

    def entry(reader: str | None, mask: np.ndarray) -> RepeatEntry:
        a, b = first_index[mask], repeat_index[mask]
        call_agreement = call_kappa = None
        if table.label is not None:
            call_agreement = proportion(int(np.sum(table.label[a] == table.label[b])), int(a.size), alpha=alpha)
            call_kappa = cohen_kappa(table.label[a], table.label[b], alpha=alpha)
        rating_alpha = None
        if np.unique(table.rating).size <= MAX_ORDINAL_LEVELS:
            rating_alpha = krippendorff_alpha(np.stack([table.rating[a], table.rating[b]]), level="ordinal")
        return RepeatEntry(reader, int(a.size), call_agreement, call_kappa, rating_alpha)

    entries = [entry(None, np.ones(len(pairs), dtype=bool))]
    for j, reader in enumerate(table.readers):
        mask = reader_of_pair == j
        if mask.any():
            entries.append(entry(reader, mask))
    return tuple(entries)


def _quality_section(readings: _Readings) -> tuple[QualityEntry, ...]:
    entries = []
    truth = readings.truth
    for field in QUALITY_FIELDS:
        if getattr(readings.table, field) is None:
            continue
        cube = readings.column(field)
        observed = cube[~np.isnan(cube)]
        levels = (1.0, 2.0, 3.0, 4.0, 5.0) if np.isin(observed, (1, 2, 3, 4, 5)).all() else None
        for i, modality in enumerate(readings.modalities):
            scores = cube[i]  # readers x cases
            real, synthetic = scores[:, truth == 0].ravel(), scores[:, truth == 1].ravel()
            scored = (~np.isnan(scores)).sum(axis=0)
            totals = np.nansum(scores, axis=0)
            image_means = np.divide(totals, scored, out=np.full(totals.shape, np.nan), where=scored > 0)
            per_generator = []
            for generator in _generators(readings):
                group = scores[:, (truth == 1) & (readings.generator == generator)].ravel()
                per_generator.append(
                    GeneratorScores(generator, score_distribution(group, levels=levels), mann_whitney(group, real))
                )
            entries.append(
                QualityEntry(
                    field=field,
                    modality=modality,
                    real=score_distribution(real, levels=levels),
                    synthetic=score_distribution(synthetic, levels=levels),
                    synthetic_vs_real=mann_whitney(synthetic, real),
                    share_synthetic_at_least_real_median=share_at_least_median(
                        image_means[truth == 1], image_means[truth == 0]
                    ),
                    per_generator=tuple(per_generator),
                )
            )
    return tuple(entries)


def _time_section(readings: _Readings) -> tuple[TimeEntry, ...]:
    cube = readings.column("active_seconds")
    truth = readings.truth
    classes = (("real", truth == 0), ("synthetic", truth == 1), ("all", np.ones_like(truth, dtype=bool)))
    entries = []
    for name, cases in classes:
        entries.append(TimeEntry(None, name, time_summary(cube[:, :, cases])))
    for j, reader in enumerate(readings.readers):
        for name, cases in classes:
            entries.append(TimeEntry(reader, name, time_summary(cube[:, j][:, cases])))
    return tuple(entries)


def _realism_section(readings: _Readings) -> RealismSection:
    synthetic = readings.truth == 1
    m_index, r_index, c_index = np.nonzero(readings.read & synthetic[None, None, :])
    called_real = (readings.label[m_index, r_index, c_index] == 0).astype(float)
    n_cases = len(readings.cases)
    image_code = m_index * n_cases + c_index
    images, image_index = np.unique(image_code, return_inverse=True)
    fit = fit_rasch(image_index, r_index, called_real, n_images=images.size, n_readers=len(readings.readers))
    fooled = np.bincount(image_index, called_real, images.size)
    counts = np.bincount(image_index, minlength=images.size)
    order = np.argsort(-fit.image_effects, kind="stable")
    image_entries = []
    for rank, k in enumerate(order, start=1):
        modality, case = divmod(int(images[k]), n_cases)
        image_entries.append(
            ImageRealism(
                rank=rank,
                modality=readings.modalities[modality],
                case=readings.cases[case],
                generator=str(readings.generator[case]),
                readers=int(counts[k]),
                fooled=int(fooled[k]),
                fooled_share=float(fooled[k] / counts[k]),
                realism=float(fit.image_effects[k]),
                adjusted_fooled_probability=float(expit(fit.intercept + fit.image_effects[k])),
            )
        )
    reader_fooled = np.bincount(r_index, called_real, len(readings.readers))
    reader_counts = np.bincount(r_index, minlength=len(readings.readers))
    reader_entries = tuple(
        ReaderCredulity(reader, int(reader_counts[j]), int(reader_fooled[j]), float(fit.reader_effects[j]))
        for j, reader in enumerate(readings.readers)
        if reader_counts[j]
    )
    return RealismSection(REALISM_METHOD, fit.intercept, fit.converged, tuple(image_entries), reader_entries)

"""Plain-text rendering of a :class:`~readerstudy.stats.report.StudyReport` for people (terminal, e-mail)."""

from __future__ import annotations

import math

from readerstudy.stats.mrmc import MRMCResult, ORAnalysis
from readerstudy.stats.proportions import Interval, Proportion
from readerstudy.stats.report import StudyReport

_ANALYSES = (
    ("random_readers_random_cases", "Random readers and random cases"),
    ("fixed_readers_random_cases", "Fixed readers, random cases"),
    ("random_readers_fixed_cases", "Random readers, fixed cases"),
)


def _num(value: float | None, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def _p(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{value:.2e}" if value < 1e-4 else f"{value:.4f}"


def _ci(interval: Interval, digits: int = 4) -> str:
    return f"({_num(interval.lower, digits)}, {_num(interval.upper, digits)})"


def _proportion(p: Proportion) -> str:
    return f"{_num(p.estimate, 3)} [{p.successes}/{p.trials}] Wilson {_ci(p.wilson, 3)}"


def format_text(report: StudyReport) -> str:
    """The report as aligned plain text, section by section (same numbers as ``report.to_dict()``)."""
    d = report.design
    level = f"{100 * (1 - report.alpha):g}%"
    out = [
        "READER STUDY REPORT",
        f"{d.n_readings} readings ({d.n_repeat_readings} hidden repeats), {len(d.readers)} readers, "
        f"{len(d.modalities)} modalities, {d.n_cases} cases ({d.n_synthetic} synthetic, {d.n_real} real); "
        f"{level} confidence intervals",
        f"modalities: {', '.join(d.modalities)}",
    ]
    if d.generators:
        out.append(f"generators: {', '.join(d.generators)}")
    if report.binary is not None:
        out += ["", "CALLS (synthetic = positive)"]
        out.append(f"{'reader':<14}{'modality':<14}{'accuracy':<44}{'sensitivity':<22}{'specificity':<22}p(acc=0.5)")
        for e in (*report.binary.per_reader, *report.binary.per_modality, report.binary.pooled):
            m = e.metrics
            out.append(
                f"{e.reader or 'pooled':<14}{e.modality or 'all':<14}{_proportion(m.accuracy):<44}"
                f"{_num(m.sensitivity.estimate, 3):<22}{_num(m.specificity.estimate, 3):<22}"
                f"{_p(m.accuracy_vs_chance.p_value)}"
            )
    if report.roc.per_reader:
        out += ["", "ROC (trapezoidal AUC, DeLong SE)"]
        for e in report.roc.per_reader:
            a = e.estimate
            out.append(
                f"  reader {e.reader:<10} modality {e.modality:<10} AUC {_num(a.auc, 8)}  SE {_num(a.se)}  "
                f"CI {_ci(a.ci)}  p(AUC=0.5) {_p(a.p_vs_chance)}"
            )
        for e in report.roc.paired:
            t = e.test
            out.append(
                f"  reader {e.reader:<10} {e.modality_a} - {e.modality_b}: {_num(t.difference)} "
                f"CI {_ci(t.ci)}  z {_num(t.z, 3)}  p {_p(t.p_value)}"
            )
    for figure in ("auc", "accuracy", "sensitivity", "specificity"):
        for result in getattr(report.mrmc, figure):
            out += ["", *_mrmc_text(result)]
    for g in report.generators:
        if g.auc is not None:
            estimate = g.auc.random_readers_random_cases.modalities[0]
            out.append(
                f"generator {g.generator} ({g.modality}, {g.n_synthetic} images): reader-mean AUC "
                f"{_num(estimate.estimate)} CI {_ci(estimate.ci)} p(AUC=0.5) {_p(estimate.p_value)}"
            )
    agreement = report.agreement
    if agreement.fleiss_kappa or agreement.krippendorff_alpha or agreement.within_reader:
        out += ["", "AGREEMENT"]
        for f in agreement.fleiss_kappa:
            k = f.kappa
            out.append(f"  Fleiss' kappa on calls, {f.modality}: {_num(k.kappa)} CI {_ci(k.ci)} (z {_num(k.z, 2)})")
        for a in agreement.krippendorff_alpha:
            out.append(f"  Krippendorff's alpha, {a.variable}, {a.modality}: {_num(a.alpha.alpha)}")
        for i in agreement.icc:
            icc2 = next(form for form in i.forms if form.form == "ICC(2,1)")
            out.append(f"  ICC(2,1) {i.variable}, {i.modality}: {_num(icc2.icc)} CI {_ci(icc2.ci)}")
        for r in agreement.within_reader:
            kappa = _num(r.call_kappa.kappa) if r.call_kappa else "n/a"
            out.append(f"  within reader {r.reader or 'pooled'}: {r.pairs} repeated cases, kappa on calls {kappa}")
    if report.quality:
        out += ["", "QUALITY (higher = better; synthetic vs real)"]
        for q in report.quality:
            out.append(
                f"  {q.field:<10} {q.modality:<10} real mean {_num(q.real.mean, 2)} synthetic mean "
                f"{_num(q.synthetic.mean, 2)}  P(syn > real) {_num(q.synthetic_vs_real.common_language, 3)}  "
                f"p {_p(q.synthetic_vs_real.p_value)}  share of synthetic >= real median "
                f"{_num(q.share_synthetic_at_least_real_median, 3)}"
            )
    if report.reading_time:
        out += ["", "READING TIME (seconds, median [IQR])"]
        for t in report.reading_time:
            s = t.summary
            out.append(
                f"  {t.reader or 'all readers':<14}{t.truth:<10} {_num(s.median, 1)} "
                f"[{_num(s.q1, 1)}, {_num(s.q3, 1)}] n={s.n}"
            )
    if report.realism is not None:
        out += ["", "MOST REALISTIC SYNTHETIC IMAGES (ability-adjusted)"]
        for image in report.realism.images[:10]:
            out.append(
                f"  {image.rank:>3}. {image.case} ({image.modality}, {image.generator or '-'}): fooled "
                f"{image.fooled}/{image.readers}, realism {_num(image.realism, 3)}"
            )
    if report.notes:
        out += ["", "NOTES", *(f"  - {note}" for note in report.notes)]
    return "\n".join(out) + "\n"


def _mrmc_text(result: MRMCResult) -> list[str]:
    lines = [
        f"MRMC {result.figure_of_merit.upper()} (Obuchowski-Rockette, jackknife covariances, Hillis df): "
        f"{len(result.readers)} readers, {', '.join(result.modalities)}, {result.n_cases} cases"
    ]
    for modality_position, modality in enumerate(result.modalities):
        values = [f.value for f in result.reader_figures if f.modality == modality]
        lines.append(
            f"  {modality}: readers {' '.join(_num(v, 8) for v in values)}  mean "
            f"{_num(result.modality_means[modality_position], 8)}"
        )
    for attribute, title in _ANALYSES:
        lines += _analysis_text(getattr(result, attribute), title)
    return lines


def _analysis_text(analysis: ORAnalysis, title: str) -> list[str]:
    lines = [f"  {title}:"]
    if analysis.test is not None:
        t = analysis.test
        df = f"{_num(t.df_numerator, 0)}, {_num(t.df_denominator, 4)}" if t.df_denominator else _num(t.df_numerator, 0)
        lines.append(f"    {t.statistic_name}({df}) = {_num(t.statistic, 6)}, p = {_num(t.p_value, 6)}")
    for d in analysis.differences:
        df = f" df {_num(d.df, 4)}" if d.df is not None else ""
        lines.append(
            f"    {d.modality_a} - {d.modality_b}: {_num(d.difference, 8)} SE {_num(d.se, 8)}{df} "
            f"CI {_ci(d.ci, 8)} p {_num(d.p_value, 6)}"
        )
    for m in analysis.modalities:
        df = f" df {_num(m.df, 4)}" if m.df is not None else ""
        test = f" p(vs {m.null_value}) {_p(m.p_value)}" if m.null_value is not None else ""
        lines.append(f"    {m.modality}: {_num(m.estimate, 8)} SE {_num(m.se, 8)}{df} CI {_ci(m.ci, 8)}{test}")
    return lines

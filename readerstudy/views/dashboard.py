"""The coordinator's statistics: the live dashboard of a study, the same report as a printable page, and the
exports. Readers never reach any of it."""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass

from django.contrib.staticfiles import finders
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_GET

from readerstudy.analysis import (
    StudyAnalysis,
    headline,
    interval_text,
    mrmc_rows,
    number_text,
    p_text,
    proportion_text,
    reader_rows,
    study_analysis,
)
from readerstudy.blinding import study_opening_record
from readerstudy.exports import EXPORT_FORMATS, ExportFile, ExportUnavailable, case_thumbnails, export_file
from readerstudy.models import Study
from readerstudy.plots import dashboard_figures
from readerstudy.roles import coordinator_required
from readerstudy.selectors import study_case_counts, study_reader_progress

MOST_REALISTIC = 12
LEAST_REALISTIC = 6


@coordinator_required
@require_GET
def study_dashboard(request: HttpRequest, study_pk: int) -> HttpResponse:
    study = get_object_or_404(Study, pk=study_pk)
    return render(request, "readerstudy/dashboard.html", report_context(study, standalone=False))


@coordinator_required
@require_GET
def study_report(request: HttpRequest, study_pk: int) -> HttpResponse:
    """The whole report as one self-contained, printable page (styles, figures and thumbnails inline)."""
    study = get_object_or_404(Study, pk=study_pk)
    response = render(request, "readerstudy/report.html", report_context(study, standalone=True))
    if request.GET.get("download"):
        response["Content-Disposition"] = f'attachment; filename="study-{study.pk}-report.html"'
    return response


@coordinator_required
@require_GET
def study_export(request: HttpRequest, study_pk: int, slug: str) -> HttpResponseBase:
    study = get_object_or_404(Study, pk=study_pk)
    if slug not in EXPORT_FORMATS:
        raise Http404
    try:
        exported = export_file(study=study, slug=slug)
    except ExportUnavailable as exc:
        return HttpResponse(str(exc), status=409, content_type="text/plain; charset=utf-8")
    return export_response(exported)


def export_response(exported: ExportFile) -> HttpResponseBase:
    """A download: streamed when the content is an iterator, with the file name and no caching."""
    if isinstance(exported.content, bytes):
        response = HttpResponse(exported.content, content_type=exported.content_type)
    else:
        response = StreamingHttpResponse(exported.content, content_type=exported.content_type)
    response["Content-Disposition"] = f'attachment; filename="{exported.filename}"'
    response["Cache-Control"] = "private, no-store"
    response["X-Content-Type-Options"] = "nosniff"
    return response


# -- the context shared by the dashboard and the printable report ---------------------------------------------


@dataclass(frozen=True)
class RealismCard:
    rank: int
    case_id: int
    name: str
    generator: str
    fooled: int
    readers: int
    fooled_percent: int
    adjusted_percent: int
    image_url: str


def report_context(study: Study, *, standalone: bool) -> dict:
    analysis = study_analysis(study=study)
    report = analysis.report
    progress = study_reader_progress(study=study)
    counts = study_case_counts(study=study)
    main_total = counts["real"] + counts["synthetic"]
    expected = main_total * len(progress)
    context = {
        "study": study,
        "standalone": standalone,
        "analysis": analysis,
        "report": report,
        "headline": headline(report),
        "figures": dashboard_figures(analysis),
        "progress": progress,
        "counts": counts,
        "expected_readings": expected,
        "percent_read": round(100 * analysis.version.count / expected) if expected else 0,
        "readers_done": sum(1 for row in progress if row.session.completed_at is not None),
        "opening": study_opening_record(study=study),
        "exports": [
            (f, reverse("study_export", args=[study.pk, f.slug]), f.filename(study)) for f in EXPORT_FORMATS.values()
        ],
    }
    if standalone:
        context["inline_css"] = _inline_css()
    if report is None:
        return context
    context.update(
        {
            "reader_rows": [_reader_row(row) for row in reader_rows(report)],
            "pooled": _binary_row(report.binary.pooled.metrics) if report.binary else None,
            "generator_rows": _generator_rows(report),
            "mrmc_rows": [_mrmc_row(row) for row in mrmc_rows(report)],
            "quality_rows": _quality_rows(report),
            "time_rows": _time_rows(report),
            "agreement_rows": _agreement_rows(report),
            "repeat_rows": _repeat_rows(report),
            "realism": _realism_cards(study, analysis, standalone=standalone),
            "level": f"{100 * (1 - report.alpha):g}%",
        }
    )
    return context


def _inline_css() -> str:
    path = finders.find("css/report.css")
    with open(path, encoding="utf-8") as handle:
        return handle.read()


def _binary_row(metrics) -> dict:
    c = metrics.confusion
    return {
        "readings": c.total,
        "confusion": c,
        "accuracy": proportion_text(metrics.accuracy),
        "sensitivity": proportion_text(metrics.sensitivity),
        "specificity": proportion_text(metrics.specificity),
        "accuracy_p": p_text(metrics.accuracy_vs_chance.p_value),
    }


def _reader_row(row) -> dict:
    values = {"reader": row.reader, "readings": row.readings}
    if row.metrics is not None:
        values.update(_binary_row(row.metrics))
    if row.auc is not None:
        values.update(
            auc=number_text(row.auc.auc),
            auc_ci=interval_text(row.auc.ci),
            auc_p=p_text(row.auc.p_vs_chance),
            has_auc=True,
        )
    return values


def _mrmc_row(row) -> dict:
    e = row.estimate
    return {
        "figure": row.figure_label,
        "analysis": row.analysis_label,
        "headline": row.figure == "auc" and row.analysis == "random_readers_random_cases",
        "estimate": number_text(e.estimate, 3),
        "se": number_text(e.se, 3),
        "df": "∞" if e.df is None else number_text(e.df, 1),  # None: a normal (z) reference distribution
        "ci": interval_text(e.ci, 3),
        "p": p_text(e.p_value) if e.null_value is not None else "",
        "null": e.null_value,
        "readers": row.readers,
        "cases": row.cases,
    }


def _generator_rows(report) -> list[dict]:
    rows = []
    for g in report.generators:
        estimate = g.auc.random_readers_random_cases.modalities[0] if g.auc else None
        rows.append(
            {
                "generator": g.generator,
                "images": g.n_synthetic,
                "auc": number_text(estimate.estimate) if estimate else "–",
                "auc_ci": interval_text(estimate.ci) if estimate else "–",
                "auc_p": p_text(estimate.p_value) if estimate else "–",
                "sensitivity": proportion_text(g.detection.metrics.sensitivity) if g.detection else "–",
            }
        )
    return rows


def _quality_rows(report) -> list[dict]:
    return [
        {
            "field": q.field.capitalize(),
            "real": f"{q.real.mean:.2f} ± {q.real.sd:.2f}" if q.real.n > 1 else "–",
            "synthetic": f"{q.synthetic.mean:.2f} ± {q.synthetic.sd:.2f}" if q.synthetic.n > 1 else "–",
            "n_real": q.real.n,
            "n_synthetic": q.synthetic.n,
            "common_language": number_text(q.synthetic_vs_real.common_language),
            "p": p_text(q.synthetic_vs_real.p_value),
            "share": number_text(100 * q.share_synthetic_at_least_real_median, 0, suffix="%"),
        }
        for q in report.quality
    ]


def _time_rows(report) -> list[dict]:
    by_reader: dict[str | None, dict] = {}
    for t in report.reading_time:
        s = t.summary
        text = f"{s.median:.1f} s ({s.q1:.1f}–{s.q3:.1f})" if s.n else "–"
        by_reader.setdefault(t.reader, {"reader": t.reader or "All readers"})[t.truth] = text
    return list(by_reader.values())


def _agreement_rows(report) -> list[dict]:
    agreement = report.agreement
    rows = [
        {
            "statistic": "Fleiss' kappa on calls",
            "value": number_text(f.kappa.kappa, 3),
            "ci": interval_text(f.kappa.ci, 3),
            "note": f"{f.kappa.raters} readers, {f.kappa.subjects} cases read by all",
        }
        for f in agreement.fleiss_kappa
        if math.isfinite(f.kappa.kappa)
    ]
    wanted = {"call": "calls (nominal)", "rating": "combined score (ordinal)"}
    wanted |= {f"{field}:ordinal": f"{field} score (ordinal)" for field in ("anatomy", "style", "artifacts")}
    rows += [
        {
            "statistic": f"Krippendorff's alpha, {wanted[a.variable]}",
            "value": number_text(a.alpha.alpha, 3),
            "ci": "",
            "note": f"{a.alpha.units} cases",
        }
        for a in agreement.krippendorff_alpha
        if a.variable in wanted and math.isfinite(a.alpha.alpha)
    ]
    return rows


def _repeat_rows(report) -> list[dict]:
    """Within-reader agreement on hidden repeats: all readers first, then each reader."""
    return [
        {
            "reader": entry.reader or "All readers",
            "pairs": str(entry.pairs),
            "agreement": proportion_text(entry.call_agreement),
            "kappa": number_text(entry.call_kappa.kappa, 3) if entry.call_kappa else "–",
            "kappa_ci": interval_text(entry.call_kappa.ci, 3) if entry.call_kappa else "–",
            "alpha": number_text(entry.rating_alpha.alpha, 3) if entry.rating_alpha else "–",
        }
        for entry in report.agreement.within_reader
    ]


def _realism_cards(study: Study, analysis: StudyAnalysis, *, standalone: bool) -> dict | None:
    realism = analysis.report.realism
    if realism is None or not realism.images:
        return None
    images = realism.images
    top = images[:MOST_REALISTIC]
    bottom = images[max(len(top), len(images) - LEAST_REALISTIC) :]
    shown = [int(image.case) for image in (*top, *bottom)]
    names = dict(study.cases.filter(pk__in=shown).values_list("pk", "label"))
    inline = case_thumbnails(study, shown) if standalone else {}

    def card(image) -> RealismCard:
        case_id = int(image.case)
        if standalone:
            url = "data:image/png;base64," + base64.b64encode(inline[case_id]).decode() if case_id in inline else ""
        else:
            url = reverse("case_image", args=[study.pk, case_id])
        return RealismCard(
            rank=image.rank,
            case_id=case_id,
            name=names.get(case_id, ""),
            generator=image.generator,
            fooled=image.fooled,
            readers=image.readers,
            fooled_percent=round(100 * image.fooled_share),
            adjusted_percent=round(100 * image.adjusted_fooled_probability),
            image_url=url,
        )

    return {
        "most": [card(image) for image in top],
        "least": [card(image) for image in bottom],
        "total": len(images),
        "fooled_any": sum(1 for image in images if image.fooled),
    }

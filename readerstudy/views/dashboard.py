"""The coordinator's statistics: the live dashboard of a study, the same report as a printable page, and the
exports. Readers never reach any of it."""

from __future__ import annotations

import base64
from dataclasses import dataclass

from django.contrib.staticfiles import finders
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_GET

from readerstudy.analysis import StudyAnalysis, study_analysis
from readerstudy.blinding import study_opening_record
from readerstudy.exports import EXPORT_FORMATS, ExportFile, ExportUnavailable, case_thumbnails, export_file
from readerstudy.models import Study
from readerstudy.plots import dashboard_figures
from readerstudy.report_rows import (
    RealismRow,
    agreement_rows,
    generator_rows,
    headline,
    level_text,
    mrmc_rows,
    pooled_rows,
    quality_rows,
    reader_rows,
    realism_rows,
    repeat_rows,
    time_rows,
)
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
    """A ranked synthetic image and where the page finds its picture ("" when it has none)."""

    row: RealismRow
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
            "reader_rows": reader_rows(report),
            "pooled": next(iter(pooled_rows(report)), None),  # all readings pooled
            "generator_rows": generator_rows(report),
            "mrmc_rows": mrmc_rows(report),
            "quality_rows": quality_rows(report),
            "time_rows": time_rows(report),
            "agreement_rows": agreement_rows(report, on_page=True),
            "repeat_rows": repeat_rows(report),
            "realism": _realism_cards(study, analysis, standalone=standalone),
            "level": level_text(report.alpha),
        }
    )
    return context


def _inline_css() -> str:
    path = finders.find("css/report.css")
    with open(path, encoding="utf-8") as handle:
        return handle.read()


def _realism_cards(study: Study, analysis: StudyAnalysis, *, standalone: bool) -> dict | None:
    report = analysis.report
    if report.realism is None or not report.realism.images:
        return None
    images = report.realism.images
    top = images[:MOST_REALISTIC]
    bottom = images[max(len(top), len(images) - LEAST_REALISTIC) :]
    shown = {int(image.case) for image in (*top, *bottom)}
    rows = realism_rows(report, dict(study.cases.filter(pk__in=shown).values_list("pk", "label")))
    inline = case_thumbnails(study, shown) if standalone else {}

    def card(row: RealismRow) -> RealismCard:
        if standalone:
            data = inline.get(row.case_id)
            url = "data:image/png;base64," + base64.b64encode(data).decode() if data else ""
        else:
            url = reverse("case_image", args=[study.pk, row.case_id])
        return RealismCard(row, url)

    return {
        "most": [card(row) for row in rows[: len(top)]],
        "least": [card(row) for row in rows[len(images) - len(bottom) :]],
        "total": len(images),
        "fooled_any": sum(1 for image in images if image.fooled),
    }

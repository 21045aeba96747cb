"""The reader's pages: their studies, the reading screen (htmx), and blinded image delivery.

Nothing rendered here may reveal truth, provenance, file names, case ids or other readers' answers; a reader
reaches images only through the per-reader item tokens of their own session.
"""

from __future__ import annotations

import uuid

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from readerstudy.forms import ReadingForm
from readerstudy.models import QUALITY_ANCHORS, QualityFlag, ReaderSession, SessionItem, Study
from readerstudy.readings import ReadingRejected, reading_submit
from readerstudy.roles import is_coordinator
from readerstudy.selectors import (
    Progress,
    session_current_item,
    session_item_at,
    session_list_for_reader,
    session_progress,
)
from readerstudy.serving import blinded_png_response

WINDOW_PRESETS = [
    # (key, label, window width, window level) on the served 0-1 display scale; "default" shows it as encoded.
    # Strings, like every number this page renders: Django's localised number formatting is the slowest part of
    # rendering a case, and these are attribute values, not quantities for people.
    ("d", "Default", "1.0", "0.5"),
    ("l", "Lung", "0.7", "0.35"),
    ("t", "Soft tissue", "0.5", "0.55"),
    ("b", "Bone", "0.45", "0.75"),
]
SCORES = tuple(str(n) for n in range(1, 6))


@login_required
def home(request: HttpRequest) -> HttpResponse:
    if is_coordinator(request.user):
        return redirect("study_list")
    sessions = session_list_for_reader(reader=request.user)
    return render(request, "readerstudy/reader_home.html", {"sessions": sessions})


def _reader_session(request: HttpRequest, session_pk: int) -> ReaderSession:
    """The reader's own session in a visible study; anyone else's is a 404, never a hint that it exists."""
    session = get_object_or_404(ReaderSession.objects.select_related("study"), pk=session_pk, reader=request.user)
    if session.study.status == Study.Status.DRAFT:
        raise Http404
    return session


@login_required
@require_GET
def reading_page(request: HttpRequest, session_pk: int) -> HttpResponse:
    session = _reader_session(request, session_pk)
    item = _item_to_show(session, request.GET.get("position"))
    context = _case_context(session, item)
    if request.headers.get("HX-Request"):
        return render(request, "readerstudy/reading.html#case", context)
    return render(request, "readerstudy/reading.html", context)


@login_required
@require_POST
def reading_submit_view(request: HttpRequest, session_pk: int) -> HttpResponse:
    session = _reader_session(request, session_pk)
    form = ReadingForm(request.POST)
    is_htmx = bool(request.headers.get("HX-Request"))
    if form.is_valid():
        try:
            result = reading_submit(session=session, item_token=form.cleaned_data["item"], answer=form.answer())
        except ReadingRejected as exc:
            for field, message in exc.field_errors.items():
                form.add_error(field if field in form.fields else None, message)
            if not exc.field_errors:
                form.add_error(None, exc.message)
        else:
            feedback = _practice_feedback(session, result.reading.item) if result.outcome != "locked" else None
            notice = (
                "That case was already answered; answers cannot be changed in this study."
                if result.outcome == "locked"
                else ""
            )
            next_item, following = _items_after(session, result.reading.item)
            if not is_htmx:
                position = "" if next_item is None else f"?position={next_item.position}"
                return redirect(f"{request.path.rsplit('submit/', 1)[0]}{position}")
            context = _case_context(
                session, next_item, following=following, progress=result.progress, feedback=feedback, notice=notice
            )
            return render(request, "readerstudy/reading.html#case", context)
    item = _with_case(session.items.filter(token=request.POST.get("item", ""))).first()
    item = item or session_current_item(session=session)
    context = _case_context(session, item, form=form)
    template = "readerstudy/reading.html#case" if is_htmx else "readerstudy/reading.html"
    return render(request, template, context, status=200 if is_htmx else 422)


@login_required
@require_GET
def reading_image(request: HttpRequest, token: str) -> HttpResponse:
    """The served image of one of the reader's own items. Same headers for every image, whatever its class."""
    item = (
        SessionItem.objects.filter(token=token, session__reader=request.user)
        .exclude(session__study__status=Study.Status.DRAFT)
        .select_related("case")
        .first()
    )
    if item is None:
        raise Http404
    return blinded_png_response(item.case.image)


def _item_to_show(session: ReaderSession, position: str | None) -> SessionItem | None:
    current = session_current_item(session=session)
    if position is None or not position.isdigit():
        return current
    requested = int(position)
    limit = current.position if current is not None else None
    if limit is not None and requested > limit:
        return current
    if limit is not None and requested == limit:
        return current
    if not session.study.allow_revisit:
        return current
    return session_item_at(session=session, position=requested) or current


def _with_case(items):
    return items.select_related("case", "reading")


def _items_after(session: ReaderSession, item: SessionItem) -> tuple[SessionItem | None, SessionItem | None]:
    """The item after `item` (the next to show) and the one after that (to prefetch), in one query.

    Answers always form a prefix of the order, so the next position is either the first unanswered case or, when
    going back is allowed, an answered one the reader may review.
    """
    following = list(_with_case(session.items.filter(position__gt=item.position)).order_by("position")[:2])
    following += [None, None]
    return following[0], following[1]


def _practice_feedback(session: ReaderSession, item: SessionItem) -> dict | None:
    if not (item.is_practice and session.study.practice_feedback):
        return None
    reading = item.reading
    return {
        "truth": item.case.get_truth_display().lower(),
        "call": reading.get_call_display().lower(),
        "correct": reading.call == item.case.truth,
    }


def _case_context(
    session: ReaderSession,
    item: SessionItem | None,
    *,
    following: SessionItem | bool | None = False,
    progress: Progress | None = None,
    form: ReadingForm | None = None,
    feedback: dict | None = None,
    notice: str = "",
) -> dict:
    study = session.study
    progress = progress or session_progress(session=session)
    context = {
        "session": session,
        "study": study,
        "progress": progress,
        "feedback": feedback,
        "notice": notice,
        "presets": WINDOW_PRESETS,
        "confidence_range": SCORES[: study.confidence_levels],
        "score_range": SCORES,
        "quality_anchors": QUALITY_ANCHORS,
        "quality_flags": QualityFlag.choices,
        "is_phantom_study": study.uses_phantoms(),
    }
    if item is None:
        context["item"] = None
        return context
    reading = getattr(item, "reading", None) if hasattr(item, "reading") else None
    values = reading.values() if reading is not None else {}
    if form is not None and form.is_bound:
        values = {key: form.data.get(key) for key in ("call", "confidence", "anatomy", "style", "artifacts")}
        values["flags"] = form.data.getlist("flags") if hasattr(form.data, "getlist") else []
        values["comment"] = form.data.get("comment", "")
    for score in ("confidence", "anatomy", "style", "artifacts"):  # compared with the string choices
        if values.get(score) is not None:
            values[score] = str(values[score])
    if following is False:  # not looked up by the caller
        following = session_item_at(session=session, position=item.position + 1)
    practice_total = progress.practice_total
    context.update(
        {
            "item": item,
            "form": form,
            "values": values,
            "editing": reading is not None,
            "read_only": reading is not None and not study.allow_revisit,
            "asks_quality": study.asks_quality_for(item.case),
            "submission_id": form.data.get("submission_id") if form is not None and form.is_bound else uuid.uuid4(),
            "next_image_token": following.token if following is not None else "",
            "can_go_back": study.allow_revisit and item.position > 0,
            "display_number": str(item.position + 1 - (0 if item.is_practice else practice_total)),
            "display_total": str(practice_total if item.is_practice else progress.main_total),
        }
    )
    return context

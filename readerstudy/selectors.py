"""Reads in the study domain: what a reader sees next, progress, and what each role may list."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Count, Q, QuerySet, Sum

from readerstudy.models import ReaderSession, Reading, SessionItem, Study
from readerstudy.roles import is_coordinator


@dataclass(frozen=True)
class Progress:
    answered: int
    total: int
    practice_total: int

    @property
    def main_total(self) -> int:
        return self.total - self.practice_total

    @property
    def done(self) -> bool:
        return self.answered >= self.total

    @property
    def percent(self) -> int:
        return round(100 * self.answered / self.total) if self.total else 0


def session_progress(*, session: ReaderSession) -> Progress:
    counts = session.items.aggregate(
        total=Count("id"),
        practice=Count("id", filter=Q(is_practice=True)),
        answered=Count("reading"),
    )
    return Progress(answered=counts["answered"], total=counts["total"], practice_total=counts["practice"])


def session_current_item(*, session: ReaderSession) -> SessionItem | None:
    """The first unanswered item: where a reader resumes after closing the browser."""
    return session.items.filter(reading__isnull=True).select_related("case").order_by("position").first()


def session_item_at(*, session: ReaderSession, position: int) -> SessionItem | None:
    return session.items.filter(position=position).select_related("case", "reading").first()


def session_list_for_reader(*, reader) -> QuerySet[ReaderSession]:
    """A reader's own sessions in studies that are open or closed (drafts are invisible to readers)."""
    return (
        ReaderSession.objects.filter(reader=reader)
        .exclude(study__status=Study.Status.DRAFT)
        .select_related("study")
        .annotate(total=Count("items"), answered=Count("items__reading"))
        .order_by("-study__created_at")
    )


def study_list_for(*, user) -> QuerySet[Study]:
    if is_coordinator(user):
        return Study.objects.all()
    return Study.objects.filter(sessions__reader=user).exclude(status=Study.Status.DRAFT).distinct()


@dataclass(frozen=True)
class ReaderProgress:
    session: ReaderSession
    answered: int
    total: int
    practice_answered: int
    active_seconds: float

    @property
    def percent(self) -> int:
        return round(100 * self.answered / self.total) if self.total else 0


def study_reader_progress(*, study: Study) -> list[ReaderProgress]:
    sessions = (
        study.sessions.select_related("reader")
        .annotate(
            total=Count("items", distinct=True),
            answered=Count("items__reading", distinct=True),
            practice_answered=Count("items__reading", filter=Q(items__is_practice=True), distinct=True),
        )
        .order_by("reader__username")
    )
    active = {
        row["item__session"]: row["ms"]
        for row in Reading.objects.filter(item__session__study=study)
        .values("item__session")
        .annotate(ms=Sum("active_ms"))
    }
    return [
        ReaderProgress(
            session=session,
            answered=session.answered,
            total=session.total,
            practice_answered=session.practice_answered,
            active_seconds=(active.get(session.pk) or 0) / 1000,
        )
        for session in sessions
    ]


def study_case_counts(*, study: Study) -> dict[str, int]:
    counts = study.cases.aggregate(
        real=Count("id", filter=Q(truth="real", is_practice=False)),
        synthetic=Count("id", filter=Q(truth="synthetic", is_practice=False)),
        practice=Count("id", filter=Q(is_practice=True)),
    )
    return {key: value or 0 for key, value in counts.items()}

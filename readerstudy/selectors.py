"""Reads in the study domain: what a reader sees next, progress, and what each role may list."""

from __future__ import annotations

import math
from dataclasses import dataclass

from django.db.models import Count, Q, QuerySet, Sum

from readerstudy.models import ReaderSession, Reading, SessionItem, Study
from readerstudy.roles import is_coordinator
from readerstudy.stats.blinding import BlindingAudit, blinding_audit


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


FEATURE_LABELS = {
    "size_bytes": "served file size (bytes)",
    "bits_per_pixel": "served file compression (bits per pixel)",
    "mean": "mean brightness",
    "std": "contrast (standard deviation)",
    "p1": "darkest 1% level",
    "p99": "brightest 1% level",
    "black_border_fraction": "black border (share of the canvas)",
    "content_width": "image width inside the border",
    "content_height": "image height inside the border",
    "sharpness": "sharpness (upscaled images are smoother)",
    "original_width": "original width",
    "original_height": "original height",
    "original_aspect_ratio": "original aspect ratio",
    "original_bits": "original bit depth",
    "original_is_dicom": "original was DICOM",
    "original_is_jpeg": "original was JPEG",
    "original_was_colour": "original was colour",
}


@dataclass(frozen=True)
class StudyAudit:
    """What readers see (`served`: a separation here confounds the study) and where the images came from
    (`sources`: differences readers never see directly, but a sign the classes come from different datasets)."""

    served: BlindingAudit
    sources: BlindingAudit


SOURCE_PREFIX = "original_"


def study_blinding_audit(*, study: Study) -> StudyAudit:
    """Could file properties alone tell this study's classes apart? (Analysed cases only, not practice.)"""
    rows = list(study.cases.filter(is_practice=False).values_list("truth", "served_features"))
    names = sorted({name for _, features in rows for name in features})
    columns = {name: [features.get(name, math.nan) for _, features in rows] for name in names}
    truth = [int(value == "synthetic") for value, _ in rows]
    served = {name: values for name, values in columns.items() if not name.startswith(SOURCE_PREFIX)}
    sources = {name: values for name, values in columns.items() if name.startswith(SOURCE_PREFIX)}
    return StudyAudit(served=blinding_audit(served, truth), sources=blinding_audit(sources, truth))

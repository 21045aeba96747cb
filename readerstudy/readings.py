"""Recording readings: a reader's answer is stored exactly once (retries with the same submission id are
recognised), in order, and every change appends to the reading's hash-chained, append-only history.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.db.models import Count, Q
from django.utils import timezone

from readerstudy.models import (
    Case,
    QualityFlag,
    ReaderSession,
    Reading,
    ReadingEvent,
    SessionItem,
    Study,
)
from readerstudy.selectors import Progress

# --- Readings ----------------------------------------------------------------------------------------------------


class ReadingRejected(Exception):
    """A submission that cannot be recorded; the message says why in the reader's words."""

    def __init__(self, message: str, *, field_errors: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field_errors = field_errors or {}


@dataclass(frozen=True)
class Answer:
    call: str
    confidence: int
    submission_id: uuid.UUID
    anatomy: int | None = None
    style: int | None = None
    artifacts: int | None = None
    flags: tuple[str, ...] = ()
    comment: str = ""
    active_ms: int = 0

    @classmethod
    def from_data(cls, data: dict) -> Answer:
        """An answer from validated form or API data (missing optional values become their defaults)."""
        return cls(
            call=data["call"],
            confidence=data["confidence"],
            submission_id=data["submission_id"],
            anatomy=data.get("anatomy"),
            style=data.get("style"),
            artifacts=data.get("artifacts"),
            flags=tuple(data.get("flags") or ()),
            comment=(data.get("comment") or "").strip(),
            active_ms=data.get("active_ms") or 0,
        )


@dataclass(frozen=True)
class SubmitResult:
    reading: Reading
    outcome: str  # "created" | "changed" | "unchanged" | "duplicate" | "locked"
    progress: Progress | None = None  # the session's progress after this submission, when it was counted


def reading_submit(*, session: ReaderSession, item_token: str, answer: Answer) -> SubmitResult:
    """Record a reader's answer for one item, exactly once, before anything else is shown.

    Resubmitting the same `submission_id` (double click, retry after a network error) returns the recorded reading
    unchanged. An answered item changes only if the study allows going back, and every change appends to the
    reading's hash-chained history.
    """
    try:
        with transaction.atomic():
            return _reading_submit_locked(session=session, item_token=item_token, answer=answer)
    except IntegrityError as exc:
        # Two different items sent with one submission token: a client bug, never recorded twice.
        raise ReadingRejected("This answer was already used for another case. Reload the page.") from exc


def _reading_submit_locked(*, session: ReaderSession, item_token: str, answer: Answer) -> SubmitResult:
    # Serialise one reader's submissions; different readers never wait for each other.
    session = ReaderSession.objects.select_for_update().select_related("study").get(pk=session.pk)
    study = session.study
    item = SessionItem.objects.filter(session=session, token=item_token).select_related("case", "reading").first()
    if item is None:
        raise ReadingRejected("This case is not part of your reading list.")

    existing = getattr(item, "reading", None) if hasattr(item, "reading") else None
    if existing is not None and (
        existing.submission_id == answer.submission_id
        or ReadingEvent.objects.filter(reading=existing, submission_id=answer.submission_id).exists()
    ):
        return SubmitResult(existing, "duplicate")
    if study.status != Study.Status.OPEN:
        raise ReadingRejected("This study is not open for reading.")
    if existing is not None and not study.allow_revisit:
        return SubmitResult(existing, "locked")

    counts = session.items.aggregate(
        total=Count("id"), answered=Count("reading"), practice=Count("id", filter=Q(is_practice=True))
    )
    answered, total = counts["answered"], counts["total"]
    if existing is None and item.position != answered:
        raise ReadingRejected("Please answer the cases in order.")
    _validate_answer(study=study, case=item.case, answer=answer)

    now = timezone.now()
    if existing is None:
        reading = Reading(item=item, revision=1)
        outcome = "created"
    else:
        reading = existing
        outcome = "changed"
    previous_values = None if existing is None else existing.values()
    reading.call = answer.call
    reading.confidence = answer.confidence
    reading.anatomy = answer.anatomy
    reading.style = answer.style
    reading.artifacts = answer.artifacts
    reading.flags = sorted(set(answer.flags))
    reading.comment = answer.comment
    if previous_values is not None and reading.values() == previous_values:
        return SubmitResult(existing, "unchanged")
    reading.active_ms = (existing.active_ms if existing else 0) + max(0, answer.active_ms)
    reading.submission_id = answer.submission_id
    if existing is not None:
        reading.revision = existing.revision + 1
    reading.save()
    _append_event(reading=reading, answer=answer, at=now, first=existing is None)

    if session.started_at is None:
        session.started_at = now
        session.save(update_fields=["started_at"])
    if existing is None and session.completed_at is None and answered + 1 == total:
        session.completed_at = now
        session.save(update_fields=["completed_at"])
    progress = Progress(answered=answered + (existing is None), total=total, practice_total=counts["practice"])
    return SubmitResult(reading, outcome, progress)


def _append_event(*, reading: Reading, answer: Answer, at, first: bool) -> ReadingEvent:
    previous = "" if first else reading.events.order_by("-revision").values_list("hash", flat=True).first()
    event = ReadingEvent(
        reading=reading,
        revision=reading.revision,
        values=reading.values(),
        active_ms=max(0, answer.active_ms),
        submission_id=answer.submission_id,
        created_at=at,
        previous_hash=previous,
    )
    event.hash = event.compute_hash()
    event.save()
    return event


def _validate_answer(*, study: Study, case: Case, answer: Answer) -> None:
    errors: dict[str, str] = {}
    if answer.call not in Reading.Call.values:
        errors["call"] = "Choose real (R) or synthetic (S)."
    if not isinstance(answer.confidence, int) or not 1 <= answer.confidence <= study.confidence_levels:
        errors["confidence"] = f"Choose a confidence from 1 to {study.confidence_levels}."
    if study.asks_quality_for(case):
        for name in ("anatomy", "style", "artifacts"):
            value = getattr(answer, name)
            if value is None or not 1 <= value <= 5:
                errors[name] = f"Score {name} from 1 to 5."
    else:
        for name in ("anatomy", "style", "artifacts"):
            if getattr(answer, name) is not None:
                errors[name] = "Quality is not scored for this case."
    unknown = set(answer.flags) - set(QualityFlag.values)
    if unknown:
        errors["flags"] = f"Unknown artifact flags: {', '.join(sorted(unknown))}."
    if len(answer.comment) > 2000:
        errors["comment"] = "Keep the comment under 2,000 characters."
    if errors:
        raise ReadingRejected("Please complete the answer.", field_errors=errors)


def history_verify(*, reading: Reading) -> bool:
    """Check a reading's hash chain: False if any event was altered, removed or reordered."""
    previous = ""
    for event in reading.events.order_by("revision"):
        if event.previous_hash != previous or event.compute_hash() != event.hash:
            return False
        previous = event.hash
    return True

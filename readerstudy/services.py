"""Writes in the study domain: studies, case import, reader assignment, reading submission.

Every function here is keyword-only and atomic where it writes. Views, API endpoints, admin actions and tasks call
these; they never write models themselves.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction
from django.db.models import Count, Q
from django.utils import timezone

from imaging.errors import ImageImportError
from imaging.normalise import describe_served, normalise_for_serving
from imaging.read import read_image, sha256_hex
from readerstudy.blinding import FILE_FEATURES, MIN_REASON_LENGTH, audit_snapshot, study_open_check
from readerstudy.models import (
    Case,
    ImportJob,
    QualityFlag,
    ReaderSession,
    Reading,
    ReadingEvent,
    SessionItem,
    Study,
    StudyOpening,
)
from readerstudy.ordering import balanced_order, with_hidden_repeats
from readerstudy.selectors import Progress

logger = logging.getLogger(__name__)
User = get_user_model()


# --- Studies -----------------------------------------------------------------------------------------------------


# How served images are rendered: fixed once a study has cases, since every case was encoded with them.
SERVING_FIELDS = ("display_size", "crop_to_square", "working_resolution")


def _check_setting_names(settings_values: dict) -> None:
    unknown = set(settings_values) - set(Study.SETTING_FIELDS)
    if unknown:
        raise ValidationError(f"Unknown study settings: {', '.join(sorted(unknown))}.")


@transaction.atomic
def study_create(*, created_by: User, name: str, **settings_values) -> Study:
    """Create a study, as a draft: it opens for reading through the blinding gate (`study_update`) once its cases
    are in, so that no study reaches readers without its audit being judged."""
    _check_setting_names(settings_values)
    if settings_values.get("status", Study.Status.DRAFT) == Study.Status.OPEN:
        raise ValidationError(
            {"status": "A new study starts as a draft: add its cases, then open it through the blinding gate."}
        )
    study = Study(created_by=created_by, name=name, **settings_values)
    study.full_clean()
    study.save()
    return study


class BlindingGateClosed(ValidationError):
    """Opening refused: the blinding audit flags something and no acknowledgement with a reason was given."""


@transaction.atomic
def study_update(
    *,
    study: Study,
    changed_by: User | None = None,
    blinding_acknowledged: bool = False,
    blinding_reason: str = "",
    **settings_values,
) -> Study:
    """Change a study's settings. Opening it for reading passes the blinding gate: when the audit flags any
    channel, the treatment check warns, or the classes are more unequal than 1:3, the study opens only with
    `blinding_acknowledged` and a written `blinding_reason`; every opening is stored with the audit as it stood
    (`StudyOpening`). Refused openings change nothing."""
    _check_setting_names(settings_values)
    opening = settings_values.get("status") == Study.Status.OPEN and (
        Study.objects.filter(pk=study.pk).values_list("status", flat=True).first() != Study.Status.OPEN
    )
    if opening:
        if changed_by is None:
            raise ValidationError("Opening a study for reading needs the coordinator who opens it.")
        audit = _blinding_gate(study=study, acknowledged=blinding_acknowledged, reason=blinding_reason)
    changed = [
        name for name in SERVING_FIELDS if name in settings_values and settings_values[name] != getattr(study, name)
    ]
    if changed and study.cases.exists():
        raise ValidationError(
            {name: "This cannot change once cases are imported: every case was encoded with it." for name in changed}
        )
    for name, value in settings_values.items():
        setattr(study, name, value)
    study.full_clean()
    study.save()
    if opening:
        _record_opening(study=study, opened_by=changed_by, reason=blinding_reason.strip(), audit=audit)
    return study


def _blinding_gate(*, study: Study, acknowledged: bool, reason: str):
    audit = study_open_check(study=study)
    if not audit.flags:
        return audit
    errors: dict[str, list[str]] = {}
    if not acknowledged:
        flags = " ".join(f"{flag.rstrip('.')}." for flag in audit.flags)
        errors["blinding_acknowledged"] = [
            f"The blinding audit flags: {flags} Tick the acknowledgement to open the study anyway."
        ]
    if len(reason.strip()) < MIN_REASON_LENGTH:
        errors["blinding_reason"] = [
            f"Write why the study should open despite the audit (at least {MIN_REASON_LENGTH} characters)."
        ]
    if errors:
        raise BlindingGateClosed(errors)
    return audit


def _record_opening(*, study: Study, opened_by: User, reason: str, audit) -> StudyOpening:
    return StudyOpening.objects.create(
        study=study,
        opened_by=opened_by,
        needed_acknowledgement=bool(audit.flags),
        reason=reason,
        audit=audit_snapshot(audit),
    )


# --- Case import -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IncomingFile:
    """A file offered for import: its name is kept for the coordinator only, never shown to readers."""

    name: str
    data: bytes


@dataclass(frozen=True)
class ImportRow:
    name: str
    status: str  # "imported" | "duplicate" | "error"
    message: str = ""
    case_id: int | None = None
    notes: tuple[str, ...] = ()
    flagged: bool = False


@dataclass
class ImportReport:
    rows: list[ImportRow] = field(default_factory=list)

    @property
    def imported(self) -> list[ImportRow]:
        return [row for row in self.rows if row.status == "imported"]

    @property
    def errors(self) -> list[ImportRow]:
        return [row for row in self.rows if row.status == "error"]

    @property
    def duplicates(self) -> list[ImportRow]:
        return [row for row in self.rows if row.status == "duplicate"]

    @property
    def flagged(self) -> list[ImportRow]:
        return [row for row in self.rows if row.flagged]

    def summary(self) -> str:
        parts = [f"{len(self.imported)} imported"]
        if self.duplicates:
            parts.append(f"{len(self.duplicates)} duplicate")
        if self.errors:
            parts.append(f"{len(self.errors)} refused")
        if self.flagged:
            parts.append(f"{len(self.flagged)} converted from colour")
        return ", ".join(parts)

    def to_dict(self) -> dict:
        return {
            "summary": self.summary(),
            "rows": [import_row_dict(row) for row in self.rows],
        }


def cases_import(
    *,
    study: Study,
    files: Iterable[IncomingFile],
    truth: str,
    source: str = Case.Source.UPLOAD,
    is_practice: bool = False,
    generator: str = "",
    provenance: dict | None = None,
    extend_sessions: bool = True,
) -> ImportReport:
    """Import image files as cases of one class. Each file is all-or-nothing; a bad file does not stop the batch.

    Existing readers get the new cases appended to their stored orders (never reordered); a caller importing file
    by file passes `extend_sessions=False` and calls `sessions_extend` once at the end.
    """
    if truth not in Case.Truth.values:
        raise ValidationError(f"Unknown truth {truth!r}: use 'real' or 'synthetic'.")
    report = ImportReport()
    for incoming in files:
        report.rows.append(
            _import_one(
                study=study,
                incoming=incoming,
                truth=truth,
                source=source,
                is_practice=is_practice,
                generator=generator,
                provenance=provenance or {},
            )
        )
    if report.imported and extend_sessions:
        sessions_extend(study=study)
    return report


def import_row_dict(row: ImportRow) -> dict:
    return {
        "name": row.name,
        "status": row.status,
        "message": row.message,
        "case_id": row.case_id,
        "notes": list(row.notes),
        "flagged": row.flagged,
    }


def _import_one(
    *,
    study: Study,
    incoming: IncomingFile,
    truth: str,
    source: str,
    is_practice: bool,
    generator: str,
    provenance: dict,
) -> ImportRow:
    name = incoming.name
    if len(incoming.data) > settings.IMPORT_MAX_FILE_BYTES:
        limit_mb = settings.IMPORT_MAX_FILE_BYTES // (1024 * 1024)
        return ImportRow(name, "error", f"The file is larger than the {limit_mb} MB limit.")
    sha256 = sha256_hex(incoming.data)
    if Case.objects.filter(study=study, original_sha256=sha256).exists():
        return ImportRow(name, "duplicate", "This file is already a case in this study.")
    try:
        decoded = read_image(incoming.data)
        served = _render_served(study, decoded.pixels)
    except ImageImportError as exc:
        return ImportRow(name, "error", exc.message)
    except Exception:  # a decoder bug must not abort the batch; the file is refused and logged
        logger.exception("Unexpected failure decoding %s", name)
        return ImportRow(name, "error", "The file could not be decoded as an image.")

    case = Case(
        study=study,
        truth=truth,
        is_practice=is_practice,
        source=source,
        label=name[:255],
        generator=generator[:120],
        provenance=provenance,
        original_sha256=sha256,
        original_format=decoded.source_format,
        image_sha256=sha256_hex(served),
        width=decoded.width,
        height=decoded.height,
        was_colour=decoded.was_colour,
        import_notes=list(decoded.notes),
        served_features=case_features(decoded, served, unharmonised=_render_unharmonised(study, decoded.pixels)),
    )
    try:
        with _files_removed_on_failure(case), transaction.atomic():
            case.original.save("original", ContentFile(incoming.data), save=False)
            case.image.save("image.png", ContentFile(served), save=False)
            case.save()
    except IntegrityError:
        return ImportRow(name, "duplicate", "This file is already a case in this study.")
    return ImportRow(name, "imported", case_id=case.pk, notes=tuple(decoded.notes), flagged=decoded.was_colour)


def served_features(served: bytes, *, unharmonised: bytes | None = None) -> dict[str, float]:
    """The served image's properties, and with harmonisation on, its content properties before it."""
    features = describe_served(served).features()
    if unharmonised is not None:
        features.update(
            {
                f"unharmonised_{name}": value
                for name, value in describe_served(unharmonised).features().items()
                if name not in FILE_FEATURES  # file properties do not change with it
            }
        )
    return features


def case_features(decoded, served: bytes, *, unharmonised: bytes | None = None) -> dict[str, float]:
    """What a trivial classifier could use instead of anatomy: served-file and original-file properties, and with
    intensity harmonisation on, the served image's content properties before it (`unharmonised_*`)."""
    features = served_features(served, unharmonised=unharmonised)
    features.update(
        {
            "original_width": float(decoded.width),
            "original_height": float(decoded.height),
            "original_aspect_ratio": decoded.width / decoded.height,
            "original_bits": float(decoded.bits_stored),
            "original_is_dicom": float(decoded.source_format == "dicom"),
            "original_is_jpeg": float(decoded.source_format == "jpeg"),
            "original_was_colour": float(decoded.was_colour),
        }
    )
    return features


class _files_removed_on_failure:
    """Deletes the files a failed case import wrote, so a failure leaves neither rows nor files behind."""

    def __init__(self, case: Case) -> None:
        self.case = case

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is not None:
            for stored in (self.case.original, self.case.image):
                if stored and stored.name:
                    stored.storage.delete(stored.name)
        return False


# --- Cleaned images ----------------------------------------------------------------------------------------------


def case_apply_cleanup(
    *, case: Case, cleaned_pixels: np.ndarray | None, record: dict, text_regions: int | None = None
) -> Case:
    """Serve a cleaned version of a case's original and record the cleanup in `provenance["cleanup"]`.

    `cleaned_pixels` is the cleaned original at native resolution (2-D float in [0, 1]), rendered with the study's
    serving settings like every other case; None means the cleanup found nothing to change, and the case serves its
    original's rendering. `text_regions` is the number of text regions found on the new served image. The original
    file is never touched. Refused (ValidationError, nothing changed) when the served image would change while the
    case has readings: an image must not change under readers.
    """
    with transaction.atomic():
        case = Case.objects.select_for_update().select_related("study").get(pk=case.pk)
        previous = case.provenance.get("cleanup") or {}
        if cleaned_pixels is not None or previous.get("changed"):  # else it already serves the original's rendering
            if cleaned_pixels is None:
                cleaned_pixels = read_image(_stored_bytes(case.original)).pixels
            if cleaned_pixels.shape != (case.height, case.width):
                raise ValidationError(
                    f"The cleaned image is {cleaned_pixels.shape[1]}x{cleaned_pixels.shape[0]} pixels, but the "
                    f"original of case {case.pk} is {case.width}x{case.height}."
                )
            _refuse_if_read(case)
        case.provenance = {**case.provenance, "cleanup": record}
        return _case_serve(case, cleaned_pixels, text_regions=text_regions)


def case_remove_cleanup(*, case: Case) -> Case:
    """Undo `case_apply_cleanup`: serve the original's rendering again and drop `provenance["cleanup"]`. Refused
    (ValidationError) when that changes the served image of a case with readings."""
    with transaction.atomic():
        case = Case.objects.select_for_update().select_related("study").get(pk=case.pk)
        previous = case.provenance.get("cleanup")
        if previous is None:
            return case
        pixels = None
        if previous.get("changed"):
            _refuse_if_read(case)
            pixels = read_image(_stored_bytes(case.original)).pixels
        case.provenance = {key: value for key, value in case.provenance.items() if key != "cleanup"}
        # The text count described the cleaned image; it is unknown for the original's until it is checked again.
        return _case_serve(case, pixels, text_regions=None, keep_text_regions=pixels is None)


def case_text_regions_record(*, case: Case, text_regions: int, image_sha256: str) -> bool:
    """Record the number of burned-in text regions found on a case's served image (for the blinding audit), if the
    served image is still the one that was checked (`image_sha256`); False when it changed meanwhile."""
    with transaction.atomic():
        case = Case.objects.select_for_update().get(pk=case.pk)
        if case.image_sha256 != image_sha256:
            return False
        case.served_features = {**case.served_features, "text_regions": float(text_regions)}
        case.save(update_fields=["served_features", "updated_at"])
        return True


def _refuse_if_read(case: Case) -> None:
    """An image may not change once any reader has answered it, is looking at it, or has it prefetched (it is
    the case after their current one): they would have seen a different image than the one analysed."""
    readings = Reading.objects.filter(item__case=case).count()
    if readings:
        raise ValidationError(
            f"Case {case.pk} already has {readings} reading{'s' if readings != 1 else ''}: its image cannot change "
            "under readers. Clean images before readers start."
        )
    items = SessionItem.objects.filter(case=case).annotate(answered=Count("session__items__reading"))
    seen = [item for item in items if item.position <= item.answered + 1]
    if seen and case.study.status != Study.Status.DRAFT:
        raise ValidationError(
            f"Case {case.pk} is on screen or already loaded for {len(seen)} reader{'s' if len(seen) != 1 else ''}: "
            "its image cannot change under readers. Clean images while the study is a draft."
        )


def _render_served(study: Study, pixels: np.ndarray) -> bytes:
    return normalise_for_serving(pixels, **study.serving_options())


def _render_unharmonised(study: Study, pixels: np.ndarray) -> bytes | None:
    """The served image as it would be without intensity harmonisation (for the audit's "before"), or None."""
    if not study.harmonise_intensity:
        return None
    return normalise_for_serving(pixels, **{**study.serving_options(), "harmonise": False})


def _stored_bytes(stored) -> bytes:
    with stored.open("rb") as handle:
        return handle.read()


def _case_serve(
    case: Case, pixels: np.ndarray | None, *, text_regions: int | None, keep_text_regions: bool = False
) -> Case:
    """Save `case` serving `pixels` rendered with the study's settings (None: keep the current served image), with
    its served-file features. The old file is deleted once the change commits."""
    features = dict(case.served_features)
    served = None
    if pixels is not None:
        served = _render_served(case.study, pixels)
        features.update(served_features(served, unharmonised=_render_unharmonised(case.study, pixels)))
    if text_regions is not None:
        features["text_regions"] = float(text_regions)
    elif not keep_text_regions:
        features.pop("text_regions", None)
    case.served_features = features
    fields = ["provenance", "served_features", "updated_at"]
    if served is not None:
        old_name = case.image.name
        case.image.save("image.png", ContentFile(served), save=False)
        case.image_sha256 = sha256_hex(served)
        fields += ["image", "image_sha256"]
        storage = case.image.storage
        transaction.on_commit(lambda: storage.delete(old_name))
    case.save(update_fields=fields)
    return case


# --- Readers and orders ------------------------------------------------------------------------------------------


@transaction.atomic
def reader_assign(*, study: Study, reader: User) -> ReaderSession:
    """Assign a reader to a study and store their shuffled order. Assigning twice returns the same session."""
    session, created = ReaderSession.objects.get_or_create(study=study, reader=reader)
    if created:
        _append_items(session=session, cases=list(study.cases.order_by("id")))
    return session


@transaction.atomic
def reader_unassign(*, session: ReaderSession) -> None:
    if Reading.objects.filter(item__session=session).exists():
        raise ValidationError("This reader has already recorded readings; their session cannot be removed.")
    session.items.all().delete()
    session.delete()


def sessions_extend(*, study: Study) -> None:
    """Append cases added since each reader's order was stored, keeping every existing position."""
    for session_pk in study.sessions.values_list("pk", flat=True):
        with transaction.atomic():
            session = ReaderSession.objects.select_for_update().get(pk=session_pk)
            present = set(session.items.values_list("case_id", flat=True))
            new_cases = [case for case in study.cases.order_by("id") if case.pk not in present]
            if new_cases:
                _append_items(session=session, cases=new_cases)


def _append_items(*, session: ReaderSession, cases: Sequence[Case]) -> None:
    """Append `cases` to a session's stored order: practice cases first, then the main block, each balanced.

    A session that already has items gets only main cases: practice belongs in front, and putting it there would
    move cases the reader may already have seen. Hidden repeats (`Study.repeat_cases`) are placed in the first main
    block only, when the reader is assigned; cases added later are shown once.
    """
    existing = list(session.items.select_related("case").order_by("position"))
    practice = [case for case in cases if case.is_practice and not existing]
    main = [case for case in cases if not case.is_practice]
    max_run = session.study.max_run_length
    new_items: list[tuple[Case, bool, int]] = []
    if practice:
        order = balanced_order(
            [case.truth for case in practice], seed=_order_seed(session, "practice", 0), max_run=max_run
        )
        new_items += [(practice[i], True, 0) for i in order]
    if main:
        preceding = [item.case.truth for item in existing if not item.is_practice]
        order = balanced_order(
            [case.truth for case in main],
            seed=_order_seed(session, "main", len(preceding)),
            max_run=max_run,
            preceding=preceding,
        )
        ordered = [main[i] for i in order]
        block = [(i, 0) for i in range(len(ordered))]
        if not existing and session.study.repeat_cases:
            block = with_hidden_repeats(
                [case.truth for case in ordered],
                count=session.study.repeat_cases,
                seed=_order_seed(session, "repeats", 0),
                max_run=max_run,
            )
        new_items += [(ordered[i], False, replicate) for i, replicate in block]
    start = existing[-1].position + 1 if existing else 0
    SessionItem.objects.bulk_create(
        [
            SessionItem(
                session=session, case=case, position=start + index, is_practice=is_practice, replicate=replicate
            )
            for index, (case, is_practice, replicate) in enumerate(new_items)
        ]
    )
    if new_items and session.completed_at is not None:
        session.completed_at = None
        session.save(update_fields=["completed_at"])


def _order_seed(session: ReaderSession, block: str, already_placed: int) -> str:
    # Each extension draws from its own reproducible stream: the stored seed, the block and where it starts.
    return f"{session.seed}:{block}:{already_placed}"


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


# --- Folder import jobs ------------------------------------------------------------------------------------------

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".dcm", ".dicom", ""}


def folder_image_paths(folder: Path) -> list[Path]:
    """Image-like files under `folder`, recursively, in a stable order."""
    return [
        path
        for path in sorted(folder.rglob("*"))
        if path.is_file() and not path.name.startswith(".") and path.suffix.lower() in IMAGE_SUFFIXES
    ]


def folder_files(folder: Path) -> Iterator[IncomingFile]:
    """The folder's image files, read one at a time, named by their path inside the folder."""
    for path in folder_image_paths(folder):
        yield IncomingFile(name=str(path.relative_to(folder)), data=path.read_bytes())


@transaction.atomic
def import_job_start(
    *, study: Study, created_by: User, folder: Path, truth: str, generator: str = "", is_practice: bool = False
) -> ImportJob:
    """Queue a folder import for a worker; it starts once this transaction commits."""
    from readerstudy.tasks import import_folder

    job = ImportJob.objects.create(
        study=study,
        created_by=created_by,
        folder=str(folder),
        truth=truth,
        generator=generator,
        is_practice=is_practice,
        total=len(folder_image_paths(folder)),
    )
    transaction.on_commit(lambda: import_folder.delay(job_pk=job.pk))
    return job


def import_job_run(*, job_pk: int) -> ImportJob:
    """Import a job's folder file by file, recording each result as it goes.

    Safe to run again after a crash: files already in the report are skipped, and a file imported just before a
    crash but not yet reported is recognised by its hash and reported as imported.
    """
    job = ImportJob.objects.select_related("study").get(pk=job_pk)
    if job.status in {ImportJob.Status.DONE, ImportJob.Status.FAILED}:
        return job
    folder = Path(job.folder)
    if not folder.is_dir():
        job.status, job.error, job.finished_at = (
            ImportJob.Status.FAILED,
            f"There is no folder {folder}.",
            timezone.now(),
        )
        job.save(update_fields=["status", "error", "finished_at"])
        return job
    paths = folder_image_paths(folder)
    job.status, job.total = ImportJob.Status.RUNNING, len(paths)
    job.started_at = job.started_at or timezone.now()
    job.save(update_fields=["status", "total", "started_at"])
    done = {row["name"] for row in job.report}
    for path in paths:
        name = str(path.relative_to(folder))
        if name in done:
            continue
        data = path.read_bytes()
        existing = Case.objects.filter(study=job.study, original_sha256=sha256_hex(data)).first()
        if existing is not None and existing.created_at >= job.created_at and existing.label == name[:255]:
            row = ImportRow(name, "imported", case_id=existing.pk, notes=tuple(existing.import_notes))
        else:
            report = cases_import(
                study=job.study,
                files=[IncomingFile(name, data)],
                truth=job.truth,
                source=Case.Source.FOLDER,
                is_practice=job.is_practice,
                generator=job.generator,
                extend_sessions=False,
            )
            row = report.rows[0]
        job.report.append(import_row_dict(row))
        job.save(update_fields=["report"])
    sessions_extend(study=job.study)
    job.status, job.finished_at = ImportJob.Status.DONE, timezone.now()
    job.save(update_fields=["status", "finished_at"])
    return job

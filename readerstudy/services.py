"""Writes in the study domain: studies and the blinding gate at opening, cleaned served images, reader assignment
with stored orders. Case import is `readerstudy.imports`, recording readings `readerstudy.readings`.

Every function here is keyword-only and atomic where it writes. Views, API endpoints, admin actions and tasks call
these; they never write models themselves.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.db import transaction
from django.db.models import Count

from imaging.read import read_image, sha256_hex
from readerstudy.blinding import MIN_REASON_LENGTH, audit_snapshot, study_open_check
from readerstudy.models import (
    Case,
    ReaderSession,
    Reading,
    SessionItem,
    Study,
    StudyOpening,
)
from readerstudy.ordering import balanced_order, with_hidden_repeats
from readerstudy.served_images import render_served, render_unharmonised, served_features, stored_bytes

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
                cleaned_pixels = read_image(stored_bytes(case.original)).pixels
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
            pixels = read_image(stored_bytes(case.original)).pixels
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


def _case_serve(
    case: Case, pixels: np.ndarray | None, *, text_regions: int | None, keep_text_regions: bool = False
) -> Case:
    """Save `case` serving `pixels` rendered with the study's settings (None: keep the current served image), with
    its served-file features. The old file is deleted once the change commits."""
    features = dict(case.served_features)
    served = None
    if pixels is not None:
        served = render_served(case.study, pixels)
        features.update(served_features(served, unharmonised=render_unharmonised(case.study, pixels)))
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

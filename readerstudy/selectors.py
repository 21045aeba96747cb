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
    "text_regions": "burned-in text regions",
}


@dataclass(frozen=True)
class ClassTreatment:
    """How one class's analysed cases went through text cleanup: `cleanup_recorded` passed an accepted cleanup
    (changed or not), `cleaned` were changed by it, `text_checked` have a text-region count on their served image,
    `with_text` have at least one region, `inpainters` filled the cleaned ones."""

    cases: int
    cleanup_recorded: int
    cleaned: int
    text_checked: int
    with_text: int
    inpainters: tuple[str, ...]

    @property
    def cleanup_share(self) -> float:
        return self.cleanup_recorded / self.cases if self.cases else 0.0

    @property
    def text_share(self) -> float:
        return self.with_text / self.text_checked if self.text_checked else 0.0


@dataclass(frozen=True)
class TreatmentAudit:
    """Were both classes treated alike by text cleanup, and is burned-in text left in one class more than the
    other? `warnings` say what is wrong in plain words; `notes` say what has not been measured yet."""

    real: ClassTreatment
    synthetic: ClassTreatment
    warnings: tuple[str, ...]
    notes: tuple[str, ...]


@dataclass(frozen=True)
class StudyAudit:
    """What readers see (`served`: a separation here confounds the study), where the images came from
    (`sources`: differences readers never see directly, but a sign the classes come from different datasets), and
    whether text cleanup treated both classes alike (`treatment`)."""

    served: BlindingAudit
    sources: BlindingAudit
    treatment: TreatmentAudit | None = None


SOURCE_PREFIX = "original_"
# A class whose share of cleaned-up cases differs from the other's by this much was not treated alike: beyond a
# failed image or two, one class went through a step the other did not.
TREATED_SHARE_GAP = 0.10
# Burned-in text on a fifth more of one class's served images than the other's is a cue a reader picks up within
# a few dozen cases, long before the per-feature AUC (0.75 needs a gap of a half) calls it separating.
TEXT_SHARE_GAP = 0.20
MIN_TEXT_CHECKED = 5


def study_blinding_audit(*, study: Study) -> StudyAudit:
    """Could file properties alone tell this study's classes apart? (Analysed cases only, not practice.)"""
    rows = list(study.cases.filter(is_practice=False).values_list("truth", "served_features", "provenance"))
    names = sorted({name for _, features, _ in rows for name in features})
    columns = {name: [features.get(name, math.nan) for _, features, _ in rows] for name in names}
    truth = [int(value == "synthetic") for value, _, _ in rows]
    served = {name: values for name, values in columns.items() if not name.startswith(SOURCE_PREFIX)}
    sources = {name: values for name, values in columns.items() if name.startswith(SOURCE_PREFIX)}
    return StudyAudit(
        served=blinding_audit(served, truth),
        sources=blinding_audit(sources, truth),
        treatment=treatment_audit(rows),
    )


def treatment_audit(rows: list[tuple[str, dict, dict]]) -> TreatmentAudit:
    """Compare the classes' text cleanup (`provenance["cleanup"]`) and burned-in text left on the served images
    (`served_features["text_regions"]`), from (truth, served_features, provenance) rows."""
    by_class = {}
    for truth in ("real", "synthetic"):
        mine = [(features, provenance) for value, features, provenance in rows if value == truth]
        records = [provenance["cleanup"] for _, provenance in mine if provenance.get("cleanup")]
        counts = [features["text_regions"] for features, _ in mine if "text_regions" in features]
        by_class[truth] = ClassTreatment(
            cases=len(mine),
            cleanup_recorded=len(records),
            cleaned=sum(1 for record in records if record.get("changed")),
            text_checked=len(counts),
            with_text=sum(1 for count in counts if count > 0),
            inpainters=tuple(sorted({record.get("inpainter", "") for record in records if record.get("changed")})),
        )
    real, synthetic = by_class["real"], by_class["synthetic"]
    warnings, notes = [], []
    if real.cases and synthetic.cases:
        if max(real.cleanup_share, synthetic.cleanup_share) > 0 and (
            _gap_reaches(real.cleanup_share, synthetic.cleanup_share, TREATED_SHARE_GAP)
        ):
            more, fewer = (
                ("synthetic", "real") if synthetic.cleanup_share > real.cleanup_share else ("real", "synthetic")
            )
            warnings.append(
                f"Text cleanup was applied to {_share(by_class[more].cleanup_recorded, by_class[more].cases)} {more} "
                f"cases but to {_share(by_class[fewer].cleanup_recorded, by_class[fewer].cases)} {fewer} cases. "
                f"The classes were not treated alike: run the same cleanup on the {fewer} cases and accept it "
                "there too (images it leaves unchanged count as treated)."
            )
        if real.inpainters and synthetic.inpainters and real.inpainters != synthetic.inpainters:
            warnings.append(
                f"Cleaned real cases were filled with {' and '.join(real.inpainters)}, cleaned synthetic cases with "
                f"{' and '.join(synthetic.inpainters)}: the filled areas may look different by class. Clean both "
                "classes with the same settings."
            )
        if min(real.text_checked, synthetic.text_checked) >= MIN_TEXT_CHECKED and (
            _gap_reaches(real.text_share, synthetic.text_share, TEXT_SHARE_GAP)
        ):
            more, fewer = ("synthetic", "real") if synthetic.text_share > real.text_share else ("real", "synthetic")
            warnings.append(
                f"Burned-in text is still found on {_share(by_class[more].with_text, by_class[more].text_checked)} "
                f"{more} cases but on {_share(by_class[fewer].with_text, by_class[fewer].text_checked)} {fewer} "
                f"cases: readers can use it as a giveaway. Clean the text from the {more} cases (or from both)."
            )
        checked = real.text_checked + synthetic.text_checked
        if 0 < checked < real.cases + synthetic.cases:
            notes.append(
                f"Text was counted on {real.text_checked} of {real.cases} real and {synthetic.text_checked} of "
                f"{synthetic.cases} synthetic served images; check the rest so the classes can be compared."
            )
    return TreatmentAudit(real=real, synthetic=synthetic, warnings=tuple(warnings), notes=tuple(notes))


def _gap_reaches(first: float, second: float, gap: float) -> bool:
    # 18/20 and 20/20 differ by exactly a tenth, which floating point makes 0.0999...
    return abs(first - second) >= gap - 1e-9


def _share(count: int, total: int) -> str:
    return f"{count} of {total} ({round(100 * count / total) if total else 0}%)"

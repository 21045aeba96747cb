"""The study domain: studies, cases with hidden truth, reader sessions with stored orders, readings and their history.

Blinding rules encoded here: a reader reaches an image only through a `SessionItem` token that is random per reader
and per case; truth and provenance live on `Case`, which readers never see; every change to a reading appends a
`ReadingEvent` whose hash chains to the previous one, so the history is append-only and tamper-evident.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import uuid

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from jobs.models import BackgroundJob


def new_token() -> str:
    """An opaque, URL-safe, fixed-length identifier (128 random bits) for image URLs."""
    return secrets.token_urlsafe(16)


def new_seed() -> int:
    return secrets.randbits(62)


def original_upload_to(instance: Case, filename: str) -> str:
    # The original keeps no part of its file name: names can carry patient data or the answer ("fake_001.png").
    return f"originals/study-{instance.study_id}/{uuid.uuid4().hex}"


def served_upload_to(instance: Case, filename: str) -> str:
    return f"served/{uuid.uuid4().hex}.png"


class Study(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        OPEN = "open", "Open for reading"
        CLOSED = "closed", "Closed"

    class QualityScoring(models.TextChoices):
        OFF = "off", "Not asked"
        ALL = "all", "Every case (recommended)"
        SAMPLE = "sample", "A random share of cases, the same share in each class"

    name = models.CharField(max_length=200, help_text="The study's name, shown to readers and coordinators.")
    instructions = models.TextField(
        blank=True, help_text="What readers are asked to do; shown before the first case and on every case."
    )
    status = models.CharField(
        max_length=10,
        choices=Status.choices,
        default=Status.DRAFT,
        help_text="Readers can read only while the study is open.",
    )
    allow_revisit = models.BooleanField(
        default=False,
        help_text="Whether readers may go back to earlier cases and change their answers. "
        "Every change is kept in the reading's history.",
    )
    confidence_levels = models.PositiveSmallIntegerField(
        default=5,
        validators=[MinValueValidator(2), MaxValueValidator(5)],
        help_text="Number of confidence levels a reader picks from after calling a case real or synthetic (2-5).",
    )
    quality_scoring = models.CharField(
        max_length=10,
        choices=QualityScoring.choices,
        default=QualityScoring.ALL,
        help_text="Whether readers score anatomy, style and artifacts. Scoring only synthetic images would reveal "
        "the truth, so the choice is all cases or a class-blind random share.",
    )
    quality_sample_fraction = models.FloatField(
        default=0.25,
        validators=[MinValueValidator(0.01), MaxValueValidator(1.0)],
        help_text="Share of cases scored for quality when a random share is asked for.",
    )
    blank_screen_ms = models.PositiveIntegerField(
        default=0,
        validators=[MaxValueValidator(10_000)],
        help_text="Milliseconds of blank screen between cases (0 for none); clears the visual memory of the "
        "previous image.",
    )
    max_run_length = models.PositiveSmallIntegerField(
        default=3,
        validators=[MinValueValidator(1), MaxValueValidator(20)],
        help_text="Longest run of the smaller class in a reader's shuffled order; a larger class may run longer in "
        "proportion to its share (32 real : 6 synthetic at 3 lets real run 16), so that a case's position says "
        "nothing about its class.",
    )
    repeat_cases = models.PositiveSmallIntegerField(
        default=0,
        validators=[MaxValueValidator(500)],
        help_text="Cases each reader is shown a second time, hidden among the rest, to measure how consistent each "
        "reader is (within-reader agreement). Repeats are a class-blind random sample of the first half of the "
        "reader's order, each coming back at least half the reader's cases later; at most half the main cases "
        "are repeated. Repeats never enter the other statistics. "
        "Applies to readers assigned from now on.",
    )
    display_size = models.PositiveIntegerField(
        default=1024,
        choices=[(512, "512 px"), (768, "768 px"), (1024, "1024 px"), (1536, "1536 px"), (2048, "2048 px")],
        help_text="Every served image is fitted into a square of this many pixels, whatever its class or source.",
    )
    crop_to_square = models.BooleanField(
        default=True,
        help_text="Serve the centred square of every image, so that aspect ratio and black bars cannot tell the "
        "sources apart (the image edges are cut).",
    )
    working_resolution = models.PositiveIntegerField(
        null=True,
        blank=True,
        default=512,
        choices=[(256, "256 px"), (512, "512 px"), (768, "768 px"), (1024, "1024 px")],
        help_text="Reduce every image larger than this to it before display (e.g. the generator's native 512 px), "
        "so that native high-resolution images are not sharper than generated ones. Empty: keep the resolution.",
    )
    harmonise_intensity = models.BooleanField(
        default=False,
        help_text="Stretch the intensities of every image the same way (its 1st to 99th percentile, measured inside "
        "the image, become black to white), so that a source's black level or a generator's pure-black pixels "
        "cannot tell the classes apart. The blinding audit shows the properties before and after.",
    )
    practice_feedback = models.BooleanField(
        default=True,
        help_text="Whether readers are told the truth after each practice case. Practice readings are never analysed.",
    )
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="created_studies")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    # The settings a coordinator chooses (forms, API, services all use this one list).
    SETTING_FIELDS = (
        "name",
        "instructions",
        "status",
        "allow_revisit",
        "confidence_levels",
        "quality_scoring",
        "quality_sample_fraction",
        "blank_screen_ms",
        "max_run_length",
        "repeat_cases",
        "display_size",
        "crop_to_square",
        "working_resolution",
        "harmonise_intensity",
        "practice_feedback",
    )

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "studies"

    def __str__(self) -> str:
        return self.name

    def serving_options(self) -> dict:
        """The keyword arguments of `imaging.normalise.normalise_for_serving` for this study's images."""
        return {
            "size": self.display_size,
            "crop_square": self.crop_to_square,
            "working_resolution": self.working_resolution,
            "harmonise": self.harmonise_intensity,
        }

    def uses_phantoms(self) -> bool:
        """Whether any case is a built-in phantom (the reading screen says so). Cached: asked on every case."""
        from django.core.cache import cache

        key = f"readerstudy:study:{self.pk}:phantoms"
        cached = cache.get(key)
        if cached is None:
            cached = self.cases.filter(source=Case.Source.PHANTOM).exists()
            cache.set(key, cached, 300)
        return cached

    def asks_quality_for(self, case: Case) -> bool:
        """Whether readers score this case's quality. The random share is drawn from the file's hash, never from
        its truth, so which cases are scored reveals nothing about their class."""
        if self.quality_scoring == self.QualityScoring.OFF:
            return False
        if self.quality_scoring == self.QualityScoring.ALL:
            return True
        return int(case.original_sha256[:8], 16) / 0x1_0000_0000 < self.quality_sample_fraction


class StudyOpening(models.Model):
    """A study opened for reading: who opened it, the blinding audit as it stood at that moment, and, where the
    audit flagged a channel or the classes were more unequal than 1:3, the coordinator's acknowledgement and
    reason. Printed as "Blinding at opening" in the dashboard, the PDF and the JSON report."""

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="openings")
    opened_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    opened_at = models.DateTimeField(auto_now_add=True)
    needed_acknowledgement = models.BooleanField(
        help_text="Whether the audit flagged anything (or the class ratio was beyond 1:3) when the study opened."
    )
    reason = models.TextField(blank=True, help_text="The coordinator's written reason for opening anyway.")
    audit = models.JSONField(help_text="The blinding audit's figures at the moment of opening.")

    class Meta:
        ordering = ["-opened_at", "-id"]

    def __str__(self) -> str:
        return f"{self.study} opened {self.opened_at:%Y-%m-%d %H:%M}"


class Case(models.Model):
    class Truth(models.TextChoices):
        REAL = "real", "Real"
        SYNTHETIC = "synthetic", "Synthetic"

    class Source(models.TextChoices):
        UPLOAD = "upload", "Uploaded"
        FOLDER = "folder", "Imported from a server folder"
        GENERATION = "generation", "Generation batch"
        PHANTOM = "phantom", "Built-in phantom"

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="cases")
    truth = models.CharField(max_length=10, choices=Truth.choices)
    is_practice = models.BooleanField(
        default=False, help_text="Practice cases come first, may show feedback and are never analysed."
    )
    source = models.CharField(max_length=12, choices=Source.choices, default=Source.UPLOAD)
    label = models.CharField(
        max_length=255, blank=True, help_text="Coordinator-facing name (e.g. the original file name)."
    )
    generator = models.CharField(
        max_length=120,
        blank=True,
        help_text="For synthetic cases, the generator (model, adapter, cleanup setting) the image came from; "
        "statistics are broken down by it.",
    )
    provenance = models.JSONField(default=dict, blank=True)
    original = models.FileField(upload_to=original_upload_to, max_length=255)
    original_sha256 = models.CharField(max_length=64)
    original_format = models.CharField(max_length=10)
    image = models.FileField(upload_to=served_upload_to, max_length=255)
    image_sha256 = models.CharField(max_length=64)
    width = models.PositiveIntegerField(help_text="Width of the original image in pixels.")
    height = models.PositiveIntegerField(help_text="Height of the original image in pixels.")
    was_colour = models.BooleanField(default=False)
    import_notes = models.JSONField(default=list, blank=True)
    served_features = models.JSONField(
        default=dict,
        blank=True,
        help_text="Properties of the served and original files, for the blinding audit (coordinators only).",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["study", "original_sha256"], name="case_unique_file_per_study"),
        ]

    def __str__(self) -> str:
        return f"Case {self.pk} ({self.label or self.truth})"


class ReaderSession(models.Model):
    """One reader's assignment to one study, with the seed and the stored order of their cases."""

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="sessions")
    reader = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="reader_sessions")
    seed = models.BigIntegerField(default=new_seed, help_text="Seed of this reader's shuffled order.")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["study", "reader__username"]
        constraints = [models.UniqueConstraint(fields=["study", "reader"], name="session_one_per_reader")]

    def __str__(self) -> str:
        return f"{self.reader} in {self.study}"


class SessionItem(models.Model):
    """One position in a reader's stored order."""

    session = models.ForeignKey(ReaderSession, on_delete=models.CASCADE, related_name="items")
    case = models.ForeignKey(Case, on_delete=models.PROTECT, related_name="items")
    position = models.PositiveIntegerField()
    is_practice = models.BooleanField(default=False)
    # 0 for a case's first showing, 1 for its hidden repeat (see Study.repeat_cases); never shown to the reader.
    replicate = models.PositiveSmallIntegerField(default=0)
    token = models.CharField(max_length=32, unique=True, default=new_token, editable=False)

    class Meta:
        ordering = ["session", "position"]
        constraints = [
            models.UniqueConstraint(fields=["session", "position"], name="item_unique_position"),
            models.UniqueConstraint(fields=["session", "case", "replicate"], name="item_unique_case_replicate"),
        ]

    def __str__(self) -> str:
        return f"{self.session} #{self.position + 1}"


class QualityFlag(models.TextChoices):
    TEXT_MARKERS = "text_markers", "Text or markers"
    DEVICES = "devices", "Devices, lines or tubes"
    BOXY_ANATOMY = "boxy_anatomy", "Boxy or blocky anatomy"
    IMPLAUSIBLE_ANATOMY = "implausible_anatomy", "Implausible anatomy"
    NOISE = "noise", "Noise or texture artifacts"


QUALITY_ANCHORS = {
    1: "Unacceptable",
    2: "Poor",
    3: "Acceptable",
    4: "Good",
    5: "Excellent, as a good clinical image",
}


class Reading(models.Model):
    """A reader's current answer for one item. Its full history is in `ReadingEvent`."""

    class Call(models.TextChoices):
        REAL = "real", "Real"
        SYNTHETIC = "synthetic", "Synthetic"

    score_validators = [MinValueValidator(1), MaxValueValidator(5)]

    item = models.OneToOneField(SessionItem, on_delete=models.PROTECT, related_name="reading")
    call = models.CharField(max_length=10, choices=Call.choices)
    confidence = models.PositiveSmallIntegerField(validators=[MinValueValidator(1), MaxValueValidator(5)])
    anatomy = models.PositiveSmallIntegerField(null=True, blank=True, validators=score_validators)
    style = models.PositiveSmallIntegerField(null=True, blank=True, validators=score_validators)
    artifacts = models.PositiveSmallIntegerField(null=True, blank=True, validators=score_validators)
    flags = models.JSONField(default=list, blank=True)
    comment = models.TextField(blank=True, max_length=2000)
    active_ms = models.PositiveIntegerField(default=0, help_text="Active reading time: hidden or idle time excluded.")
    submission_id = models.UUIDField(help_text="Client token of the last accepted submission (idempotency).")
    revision = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["item__session", "item__position"]
        constraints = [
            models.CheckConstraint(condition=Q(confidence__gte=1) & Q(confidence__lte=5), name="reading_confidence"),
        ]

    def __str__(self) -> str:
        return f"{self.item}: {self.call} ({self.confidence})"

    def values(self) -> dict:
        """The answer as recorded in history (everything a reader chose; not timestamps)."""
        return {
            "call": self.call,
            "confidence": self.confidence,
            "anatomy": self.anatomy,
            "style": self.style,
            "artifacts": self.artifacts,
            "flags": sorted(self.flags),
            "comment": self.comment,
        }


class AppendOnlyError(Exception):
    pass


class ReadingEvent(models.Model):
    """Append-only history of a reading: one row per accepted submission, hash-chained per reading."""

    reading = models.ForeignKey(Reading, on_delete=models.PROTECT, related_name="events")
    revision = models.PositiveIntegerField()
    values = models.JSONField()
    active_ms = models.PositiveIntegerField(default=0)
    submission_id = models.UUIDField()
    created_at = models.DateTimeField()
    previous_hash = models.CharField(max_length=64, blank=True)
    hash = models.CharField(max_length=64)

    class Meta:
        ordering = ["reading", "revision"]
        constraints = [
            models.UniqueConstraint(fields=["reading", "revision"], name="event_unique_revision"),
            models.UniqueConstraint(fields=["submission_id"], name="event_unique_submission"),
        ]

    def __str__(self) -> str:
        return f"{self.reading} r{self.revision}"

    def save(self, *args, **kwargs) -> None:
        if self.pk is not None:
            raise AppendOnlyError("Reading history is append-only: an event cannot be changed.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AppendOnlyError("Reading history is append-only: an event cannot be deleted.")

    def compute_hash(self) -> str:
        payload = json.dumps(
            {
                "reading": self.reading_id,
                "revision": self.revision,
                "values": self.values,
                "active_ms": self.active_ms,
                "submission_id": str(self.submission_id),
                "created_at": self.created_at.isoformat(),
                "previous_hash": self.previous_hash,
            },
            sort_keys=True,
            separators=(",", ":"),
        )
        return hashlib.sha256(payload.encode()).hexdigest()


class ImportJob(BackgroundJob):
    """A folder import run by a Celery worker (`jobs.runner`), with its progress and per-file report in the
    database; `total` is the number of image files found in the folder."""

    task_name = "readerstudy.tasks.import_folder"
    job_noun = "folder import"

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="import_jobs")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    folder = models.CharField(max_length=1000)
    truth = models.CharField(max_length=10, choices=Case.Truth.choices)
    generator = models.CharField(max_length=120, blank=True)
    is_practice = models.BooleanField(default=False)
    report = models.JSONField(default=list, blank=True, help_text="One row per file, in import order.")

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Import of {self.folder} into {self.study}"

    @property
    def processed(self) -> int:
        return len(self.report)

    @property
    def percent(self) -> int:
        return round(100 * self.processed / self.total) if self.total else 0

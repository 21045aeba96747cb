"""Serializers. Reader-facing ones carry no truth, provenance, file names or case ids."""

from __future__ import annotations

from rest_framework import serializers

from readerstudy.models import Case, QualityFlag, ReaderSession, Reading, Study


class StudySerializer(serializers.ModelSerializer):
    """The full study, for coordinators."""

    blinding_acknowledged = serializers.BooleanField(
        write_only=True,
        required=False,
        default=False,
        help_text="Open the study although its blinding audit flags something (or its classes are more unequal "
        "than 1:3); needs `blinding_reason`.",
    )
    blinding_reason = serializers.CharField(
        write_only=True,
        required=False,
        allow_blank=True,
        default="",
        max_length=2000,
        help_text="Why the study opens despite the blinding audit; stored with the opening and printed in reports.",
    )

    class Meta:
        model = Study
        fields = ["id", *Study.SETTING_FIELDS, "blinding_acknowledged", "blinding_reason", "created_at", "updated_at"]
        read_only_fields = ["id", "created_at", "updated_at"]


class ReaderStudySerializer(serializers.ModelSerializer):
    """What a reader needs to read a study, and nothing about its cases."""

    class Meta:
        model = Study
        fields = [
            "id",
            "name",
            "instructions",
            "status",
            "allow_revisit",
            "confidence_levels",
            "blank_screen_ms",
        ]
        read_only_fields = fields


class CaseSerializer(serializers.ModelSerializer):
    class Meta:
        model = Case
        fields = [
            "id",
            "truth",
            "is_practice",
            "source",
            "label",
            "generator",
            "provenance",
            "original_sha256",
            "original_format",
            "image_sha256",
            "width",
            "height",
            "was_colour",
            "import_notes",
            "created_at",
        ]
        read_only_fields = fields


class CaseUploadSerializer(serializers.Serializer):
    files = serializers.ListField(child=serializers.FileField(), allow_empty=False)
    truth = serializers.ChoiceField(choices=Case.Truth.choices)
    generator = serializers.CharField(required=False, allow_blank=True, max_length=120, default="")
    is_practice = serializers.BooleanField(required=False, default=False)


class ImportRowSerializer(serializers.Serializer):
    name = serializers.CharField()
    status = serializers.ChoiceField(choices=["imported", "duplicate", "error"])
    message = serializers.CharField()
    case_id = serializers.IntegerField(allow_null=True)
    notes = serializers.ListField(child=serializers.CharField())
    flagged = serializers.BooleanField()


class ImportReportSerializer(serializers.Serializer):
    summary = serializers.CharField()
    rows = ImportRowSerializer(many=True)


class AssignSerializer(serializers.Serializer):
    readers = serializers.ListField(child=serializers.CharField(), allow_empty=False, help_text="Usernames.")


class SessionSerializer(serializers.ModelSerializer):
    study = ReaderStudySerializer(read_only=True)
    reader = serializers.CharField(source="reader.username", read_only=True)
    answered = serializers.IntegerField(read_only=True)
    total = serializers.IntegerField(read_only=True)

    class Meta:
        model = ReaderSession
        fields = ["id", "study", "reader", "answered", "total", "started_at", "completed_at"]
        read_only_fields = fields


class NextItemSerializer(serializers.Serializer):
    done = serializers.BooleanField()
    item = serializers.CharField(allow_null=True, help_text="Opaque token of the item; send it with the reading.")
    position = serializers.IntegerField(allow_null=True)
    is_practice = serializers.BooleanField(allow_null=True)
    number = serializers.IntegerField(allow_null=True, help_text="1-based number within its block.")
    of = serializers.IntegerField(allow_null=True, help_text="Size of its block (practice or main).")
    image_url = serializers.CharField(allow_null=True)
    asks_quality = serializers.BooleanField(allow_null=True)


class ReadingInSerializer(serializers.Serializer):
    item = serializers.CharField(max_length=32)
    submission_id = serializers.UUIDField(help_text="A fresh UUID per answer; resending it records nothing new.")
    call = serializers.ChoiceField(choices=Reading.Call.choices)
    confidence = serializers.IntegerField(min_value=1, max_value=5)
    anatomy = serializers.IntegerField(min_value=1, max_value=5, required=False, allow_null=True)
    style = serializers.IntegerField(min_value=1, max_value=5, required=False, allow_null=True)
    artifacts = serializers.IntegerField(min_value=1, max_value=5, required=False, allow_null=True)
    flags = serializers.ListField(child=serializers.ChoiceField(choices=QualityFlag.choices), required=False)
    comment = serializers.CharField(required=False, allow_blank=True, max_length=2000)
    active_ms = serializers.IntegerField(required=False, min_value=0, default=0)


# What a reader chose and when, shared by the reader's and the coordinator's view of a reading.
READING_FIELDS = [
    "call",
    "confidence",
    "anatomy",
    "style",
    "artifacts",
    "flags",
    "comment",
    "active_ms",
    "revision",
    "created_at",
    "updated_at",
]


class ReadingOutSerializer(serializers.ModelSerializer):
    """A reader's own reading: their answer and its revision, not the case's truth."""

    item = serializers.CharField(source="item.token", read_only=True)
    position = serializers.IntegerField(source="item.position", read_only=True)
    is_practice = serializers.BooleanField(source="item.is_practice", read_only=True)

    class Meta:
        model = Reading
        fields = ["item", "position", "is_practice", *READING_FIELDS]
        read_only_fields = fields


class SubmitOutSerializer(serializers.Serializer):
    outcome = serializers.ChoiceField(choices=["created", "changed", "unchanged", "duplicate"])
    reading = ReadingOutSerializer()


class StudyReadingSerializer(serializers.ModelSerializer):
    """One reading joined with its case's truth, for coordinators."""

    reader = serializers.CharField(source="item.session.reader.username")
    case = serializers.IntegerField(source="item.case_id")
    truth = serializers.CharField(source="item.case.truth")
    generator = serializers.CharField(source="item.case.generator")
    position = serializers.IntegerField(source="item.position")
    is_practice = serializers.BooleanField(source="item.is_practice")
    replicate = serializers.IntegerField(source="item.replicate", help_text="0: first reading; 1: hidden repeat.")

    class Meta:
        model = Reading
        fields = [
            "id",
            "reader",
            "case",
            "truth",
            "generator",
            "position",
            "is_practice",
            "replicate",
            *READING_FIELDS,
        ]
        read_only_fields = fields


class ReaderProgressSerializer(serializers.Serializer):
    session = serializers.IntegerField(source="session.pk")
    reader = serializers.CharField(source="session.reader.username")
    answered = serializers.IntegerField()
    total = serializers.IntegerField()
    percent = serializers.IntegerField()
    active_seconds = serializers.FloatField()
    started_at = serializers.DateTimeField(source="session.started_at", allow_null=True)
    completed_at = serializers.DateTimeField(source="session.completed_at", allow_null=True)


class StudyReportStudySerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    status = serializers.CharField()
    confidence_levels = serializers.IntegerField()
    modality = serializers.CharField(help_text="The single modality every reading is analysed under.")


class StudyReportSerializer(serializers.Serializer):
    """The study's full statistics report (readerstudy.analysis), the same numbers as the dashboard."""

    study = StudyReportStudySerializer()
    readings = serializers.IntegerField(help_text="Analysed readings (practice readings are never analysed).")
    last_reading_change = serializers.DateTimeField(allow_null=True)
    computed_at = serializers.DateTimeField()
    problem = serializers.CharField(allow_null=True, help_text="Why there is no report yet (null when there is).")
    report = serializers.JSONField(
        allow_null=True,
        help_text="StudyReport.to_dict() (schema readerstudy.stats.report/1): design, binary, roc, mrmc, "
        "generators, agreement, quality, reading_time, realism, notes. Identical to `python -m readerstudy.stats` "
        "on the exported long CSV.",
    )

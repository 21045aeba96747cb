"""Django admin for everything an admin manages. Readings and their history are read-only here: changes to an
answer go through the reading service so that the append-only history stays complete."""

from django.contrib import admin

from readerstudy.models import Case, ReaderSession, Reading, ReadingEvent, SessionItem, Study, StudyOpening
from readerstudy.services import SERVING_FIELDS


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Study)
class StudyAdmin(admin.ModelAdmin):
    list_display = ["name", "status", "allow_revisit", "quality_scoring", "created_by", "created_at"]
    list_filter = ["status", "quality_scoring"]
    search_fields = ["name"]

    def get_readonly_fields(self, request, obj=None):
        # Opening passes the blinding gate and serving settings are fixed once cases exist (services.study_update):
        # both are changed on the study's own pages, never here around the checks.
        fixed = ["status", *SERVING_FIELDS] if obj is not None else ["status"]
        return [*fixed, "created_at", "updated_at"]


@admin.register(StudyOpening)
class StudyOpeningAdmin(ReadOnlyAdmin):
    list_display = ["study", "opened_by", "opened_at", "needed_acknowledgement"]
    list_filter = ["needed_acknowledgement"]


@admin.register(Case)
class CaseAdmin(admin.ModelAdmin):
    list_display = ["id", "study", "truth", "is_practice", "source", "generator", "label", "original_format"]
    list_filter = ["study", "truth", "is_practice", "source", "original_format"]
    search_fields = ["label", "original_sha256", "generator"]
    readonly_fields = [
        "original",
        "original_sha256",
        "original_format",
        "image",
        "image_sha256",
        "width",
        "height",
        "was_colour",
        "import_notes",
        "created_at",
    ]


class SessionItemInline(admin.TabularInline):
    model = SessionItem
    fields = ["position", "case", "is_practice", "replicate"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(ReaderSession)
class ReaderSessionAdmin(admin.ModelAdmin):
    list_display = ["reader", "study", "created_at", "started_at", "completed_at"]
    list_filter = ["study"]
    readonly_fields = ["seed", "created_at", "started_at", "completed_at"]
    inlines = [SessionItemInline]


@admin.register(Reading)
class ReadingAdmin(ReadOnlyAdmin):
    list_display = ["item", "call", "confidence", "anatomy", "style", "artifacts", "revision", "updated_at"]
    list_filter = ["item__session__study", "call"]


@admin.register(ReadingEvent)
class ReadingEventAdmin(ReadOnlyAdmin):
    list_display = ["reading", "revision", "created_at", "hash"]

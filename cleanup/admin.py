"""Django admin for cleanup jobs and their images. Jobs start from the cleanup page or the API, where their settings
are checked; here an admin follows them, cancels or resumes them, and reads each image's record. Review decisions
go through the review page or the API, so that accepting always re-renders the case's served image."""

from django.contrib import admin, messages

from cleanup.models import CleanupItem, CleanupJob
from cleanup.services import CleanupRefused, cleanup_job_cancel, cleanup_job_resume


@admin.register(CleanupJob)
class CleanupJobAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "study",
        "batch",
        "mode",
        "scope",
        "status",
        "total",
        "runs",
        "created_by",
        "created_at",
        "finished_at",
    ]
    list_filter = ["mode", "status", "study"]
    list_select_related = ["study", "batch", "created_by"]
    actions = ["cancel_jobs", "resume_jobs"]
    readonly_fields = [
        "study",
        "batch",
        "created_by",
        "mode",
        "scope",
        "config",
        "status",
        "total",
        "error",
        "runs",
        "run_log",
        "created_at",
        "started_at",
        "heartbeat_at",
        "finished_at",
    ]

    def has_add_permission(self, request) -> bool:
        return False

    @admin.action(description="Cancel selected jobs")
    def cancel_jobs(self, request, queryset) -> None:
        cancelled = sum(cleanup_job_cancel(job=job).status == CleanupJob.Status.CANCELLED for job in queryset)
        self.message_user(request, f"{cancelled} job(s) cancelled.", messages.SUCCESS)

    @admin.action(description="Send selected unfinished jobs to a worker again")
    def resume_jobs(self, request, queryset) -> None:
        resumed = 0
        for job in queryset:
            try:
                cleanup_job_resume(job=job)
            except CleanupRefused:
                continue
            resumed += 1
        self.message_user(request, f"{resumed} job(s) sent to a worker again.", messages.SUCCESS)


@admin.register(CleanupItem)
class CleanupItemAdmin(admin.ModelAdmin):
    list_display = ["job", "position", "case", "batch_image", "status", "changed", "text_regions", "review"]
    list_filter = ["status", "changed", "review", "job__mode", "job"]
    list_select_related = ["job__study", "job__batch", "case", "batch_image__batch"]
    search_fields = ["error"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

"""Django admin for generation batches and their images. What a batch asked for and what it produced are
read-only here (they are the images' provenance); admins can rename and cancel batches."""

from django.contrib import admin, messages

from generation.models import BatchImage, BatchImageCase, GenerationBatch
from generation.services import batch_cancel


@admin.register(GenerationBatch)
class GenerationBatchAdmin(admin.ModelAdmin):
    list_display = ["name", "status", "total", "generator_label", "is_demo_model", "created_by", "created_at", "runs"]
    list_filter = ["status", "is_demo_model", "write_dicom"]
    search_fields = ["name", "generator_label", "base_model_dir", "adapter_dir"]
    date_hierarchy = "created_at"
    actions = ["cancel_batches"]
    fields = [
        "name",
        "status",
        "error",
        "created_by",
        "generator_label",
        "is_demo_model",
        "base_model_dir",
        "adapter_dir",
        ("steps", "guidance_scale", "scheduler"),
        ("width", "height", "batch_size"),
        "negative_prompt",
        ("base_seed", "total"),
        ("write_dicom", "dicom_study_uid", "dicom_series_uid"),
        ("created_at", "started_at", "finished_at"),
        ("heartbeat_at", "requeued_at", "runs"),
        "run_log",
    ]
    readonly_fields = [
        "status",
        "error",
        "created_by",
        "generator_label",
        "is_demo_model",
        "base_model_dir",
        "adapter_dir",
        "steps",
        "guidance_scale",
        "scheduler",
        "width",
        "height",
        "batch_size",
        "negative_prompt",
        "base_seed",
        "total",
        "write_dicom",
        "dicom_study_uid",
        "dicom_series_uid",
        "created_at",
        "started_at",
        "finished_at",
        "heartbeat_at",
        "requeued_at",
        "runs",
        "run_log",
    ]

    def has_add_permission(self, request) -> bool:
        return False  # batches start from the generation page or the API, where they are checked

    @admin.action(description="Cancel selected batches")
    def cancel_batches(self, request, queryset) -> None:
        cancelled = sum(batch_cancel(batch=batch).status == GenerationBatch.Status.CANCELLED for batch in queryset)
        self.message_user(request, f"{cancelled} batch(es) cancelled.", messages.SUCCESS)


@admin.register(BatchImage)
class BatchImageAdmin(admin.ModelAdmin):
    list_display = ["batch", "index", "status", "seed", "prompt", "seconds", "finished_at"]
    list_filter = ["status", "batch"]
    search_fields = ["prompt", "png_sha256"]
    list_select_related = ["batch"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(BatchImageCase)
class BatchImageCaseAdmin(admin.ModelAdmin):
    list_display = ["image", "study", "case", "created_at"]
    list_filter = ["study"]
    list_select_related = ["image__batch", "study", "case"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

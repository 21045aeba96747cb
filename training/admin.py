"""Django admin for training datasets. Datasets and their examples are read-only here: a dataset is made by
`training.datasets.dataset_import` and never edited, so that its hash keeps naming what a training run read."""

from django.contrib import admin

from training.models import TrainingDataset, TrainingExample


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        # Deleting here would leave the examples' image files behind.
        return False


@admin.register(TrainingDataset)
class TrainingDatasetAdmin(ReadOnlyAdmin):
    list_display = [
        "name",
        "created_by",
        "created_at",
        "example_count",
        "train_count",
        "validation_count",
        "test_count",
        "truncated_prompt_count",
        "refused_row_count",
    ]
    search_fields = ["name", "folder", "dataset_hash"]
    list_filter = ["created_by"]


@admin.register(TrainingExample)
class TrainingExampleAdmin(ReadOnlyAdmin):
    list_display = ["id", "dataset", "manifest_line", "source_path", "split", "prompt_tokens", "truncated", "weight"]
    list_filter = ["dataset", "split", "truncated", "source_format"]
    search_fields = ["source_path", "prompt", "patient_id", "image_sha256"]
    list_select_related = ["dataset"]

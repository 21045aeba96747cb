"""Django admin for training datasets and runs, read-only: a dataset is made by `training.datasets.dataset_import`
and never edited, so that its hash keeps naming what a training run read (deleting here would also leave the
examples' image files behind); runs are started, watched and cancelled on the training pages."""

from django.contrib import admin

from readerstudy.admin import ReadOnlyAdmin
from training.models import TrainingDataset, TrainingExample, TrainingRun


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


@admin.register(TrainingRun)
class TrainingRunAdmin(ReadOnlyAdmin):
    list_display = ["name", "dataset", "status", "step", "total", "final_loss", "created_by", "created_at"]
    list_filter = ["status"]

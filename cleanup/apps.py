from django.apps import AppConfig


class CleanupConfig(AppConfig):
    name = "cleanup"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from cleanup.models import CleanupItem
        from readerstudy.files import delete_files_with_rows

        delete_files_with_rows(CleanupItem)

        from cleanup.review import batch_image_for_study
        from generation.services import register_study_image_step

        register_study_image_step(batch_image_for_study)

from django.apps import AppConfig


class GenerationConfig(AppConfig):
    name = "generation"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from generation.models import BatchImage
        from readerstudy.files import delete_files_with_rows

        delete_files_with_rows(BatchImage)

from django.apps import AppConfig


class ReaderstudyConfig(AppConfig):
    name = "readerstudy"
    verbose_name = "Reader studies"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from readerstudy.files import delete_files_with_rows
        from readerstudy.models import Case

        delete_files_with_rows(Case)

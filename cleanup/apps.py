from django.apps import AppConfig


class CleanupConfig(AppConfig):
    name = "cleanup"
    default_auto_field = "django.db.models.BigAutoField"

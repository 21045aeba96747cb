"""Record blinding-audit features for cases imported before they were recorded at import."""

from django.db import migrations


def backfill(apps, schema_editor):
    from imaging.errors import ImageImportError
    from imaging.read import read_image
    from readerstudy.served_images import case_features

    Case = apps.get_model("readerstudy", "Case")
    for case in Case.objects.filter(served_features={}).iterator():
        try:
            with case.original.open("rb") as original, case.image.open("rb") as served:
                features = case_features(read_image(original.read()), served.read())
        except (OSError, ImageImportError):
            continue  # a missing or unreadable file: the audit skips this case
        Case.objects.filter(pk=case.pk).update(served_features=features)


class Migration(migrations.Migration):
    dependencies = [("readerstudy", "0004_case_updated_at")]

    operations = [migrations.RunPython(backfill, migrations.RunPython.noop)]

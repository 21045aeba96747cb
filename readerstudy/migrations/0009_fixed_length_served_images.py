"""Re-encode every served image as a fixed-length PNG (stored, uncompressed IDAT), so its byte length depends only
on the display size and no longer on the image's texture. Pixels are unchanged (decoded and re-encoded exactly);
the file-level features are measured again. Old files are deleted once the migration commits."""

import io

import numpy as np
from django.core.files.base import ContentFile
from django.db import migrations, transaction


def reencode(apps, schema_editor):
    from PIL import Image

    from imaging.normalise import describe_served
    from imaging.png import encode_png_gray8
    from imaging.read import sha256_hex

    Case = apps.get_model("readerstudy", "Case")
    for case in Case.objects.exclude(image="").iterator():
        try:
            with case.image.open("rb") as handle:
                current = handle.read()
            with Image.open(io.BytesIO(current), formats=["PNG"]) as image:
                pixels = np.asarray(image.convert("L"))
        except OSError:
            continue  # a missing or unreadable file stays as it is; serving it is a 404 already
        served = encode_png_gray8(pixels, fixed_length=True)
        if served == current:
            continue
        old_name, storage = case.image.name, case.image.storage
        case.image.save("image.png", ContentFile(served), save=False)
        features = {**case.served_features, **describe_served(served).features()}
        Case.objects.filter(pk=case.pk).update(
            image=case.image.name, image_sha256=sha256_hex(served), served_features=features
        )
        transaction.on_commit(lambda name=old_name, storage=storage: storage.delete(name))


class Migration(migrations.Migration):
    dependencies = [("readerstudy", "0008_blinding_gate")]

    operations = [migrations.RunPython(reencode, migrations.RunPython.noop)]

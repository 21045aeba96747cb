"""Which server folders may be imported from: those inside ``settings.IMPORT_ROOTS``, for cases and training
datasets alike (one rule, so a folder refused for a study is refused for training too)."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError


def folder_in_import_roots(folder: str | Path) -> Path:
    """The folder, with ``~`` expanded and symlinks resolved, if it is an existing folder inside one of the
    allowed import roots; ValidationError saying why otherwise (also when no roots are set)."""
    resolved = Path(folder).expanduser().resolve()
    roots = settings.IMPORT_ROOTS
    if not roots:
        raise ValidationError("Importing from server folders is switched off (set IMPORT_ROOTS).")
    if not any(resolved == root or root in resolved.parents for root in roots):
        allowed = ", ".join(str(root) for root in roots)
        raise ValidationError(f"The folder must be inside an allowed import root: {allowed}.")
    if not resolved.is_dir():
        raise ValidationError(f"There is no folder {resolved}.")
    return resolved

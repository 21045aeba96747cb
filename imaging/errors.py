"""The exception raised when an uploaded file cannot become a study image, with a stable code for the UI."""

from __future__ import annotations

from enum import StrEnum


class ImportErrorCode(StrEnum):
    """Why a file was refused. Values are short slugs, stable across releases, safe to store and to show."""

    EMPTY_FILE = "empty_file"
    TOO_LARGE_FILE = "too_large_file"
    NOT_AN_IMAGE = "not_an_image"
    UNSUPPORTED_FORMAT = "unsupported_format"
    TRUNCATED = "truncated"
    CORRUPT = "corrupt"
    DECOMPRESSION_BOMB = "decompression_bomb"
    EMPTY_IMAGE = "empty_image"
    MULTI_FRAME = "multi_frame"
    UNSUPPORTED_TRANSFER_SYNTAX = "unsupported_transfer_syntax"
    UNSUPPORTED_DICOM = "unsupported_dicom"


class ImageImportError(Exception):
    """A file that cannot be imported as a study image.

    ``code`` is an :class:`ImportErrorCode` (a ``str``, so ``exc.code == "truncated"`` works) and
    ``message`` a sentence a study coordinator can act on. ``str(exc)`` is the message. Messages never quote
    patient data from the file: they name sizes, formats and DICOM attribute keywords only.
    """

    def __init__(self, code: ImportErrorCode | str, message: str) -> None:
        super().__init__(message)
        self.code = ImportErrorCode(code)
        self.message = message

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"ImageImportError(code={self.code.value!r}, message={self.message!r})"

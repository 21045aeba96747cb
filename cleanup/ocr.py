"""Run Debian's Tesseract 5 on an 8-bit image and read back its words with boxes and confidences.

Tesseract is called as a subprocess with the image on stdin and TSV on stdout (no temporary files). Each call
costs about 0.1 s of start-up (loading ``eng.traineddata``), so callers batch: the OCR detector puts all its
candidate regions on one contact sheet and makes one call per image.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass

import numpy as np


class TesseractUnavailableError(RuntimeError):
    """The ``tesseract`` executable (or its English model) cannot be found or run."""


@dataclass(frozen=True)
class OcrWord:
    """A word Tesseract read: its box in the image it was given, its confidence (0-100) and text."""

    x: int
    y: int
    w: int
    h: int
    confidence: float
    text: str


def tesseract_command() -> str:
    """The tesseract executable: ``$TESSERACT_CMD`` if set, else ``tesseract`` on the PATH."""
    command = os.environ.get("TESSERACT_CMD", "tesseract")
    resolved = shutil.which(command)
    if resolved is None:
        raise TesseractUnavailableError(
            f"Tesseract was not found ({command!r}); install Debian's tesseract-ocr and tesseract-ocr-eng "
            "or set TESSERACT_CMD to the executable."
        )
    return resolved


def tesseract_available() -> bool:
    """Whether :func:`read_words` can run here."""
    try:
        tesseract_command()
    except TesseractUnavailableError:
        return False
    return True


def read_words(
    image: np.ndarray,
    *,
    psm: int = 11,
    oem: int = 1,
    language: str = "eng",
    timeout: float = 30.0,
) -> list[OcrWord]:
    """OCR an 8-bit grayscale image (dark text on a light page reads best) and return every non-blank word.

    ``psm`` is Tesseract's page segmentation mode (11: sparse text, find as much text as possible in no
    particular order, which suits scattered labels); ``oem`` 1 is the LSTM engine, the only one in Debian's
    fast English model. Raises :class:`TesseractUnavailableError` when Tesseract is missing or fails.
    """
    import cv2

    if image.ndim != 2 or image.dtype != np.uint8:
        raise ValueError(f"Expected a 2-D uint8 image, got {image.dtype} of shape {image.shape}.")
    ok, encoded = cv2.imencode(".png", image)
    if not ok:  # pragma: no cover - PNG encoding of a valid uint8 array does not fail
        raise RuntimeError("Could not encode the OCR page as PNG.")
    command = [
        tesseract_command(),
        "stdin",
        "stdout",
        "-l",
        language,
        "--psm",
        str(psm),
        "--oem",
        str(oem),
        "tsv",
    ]
    # Tesseract's OpenMP threads fight the caller's own parallelism on small pages; one thread is faster here.
    environment = {**os.environ, "OMP_THREAD_LIMIT": "1"}
    try:
        completed = subprocess.run(
            command, input=encoded.tobytes(), capture_output=True, timeout=timeout, env=environment, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise TesseractUnavailableError(f"Tesseract could not run: {error}") from error
    if completed.returncode != 0:
        message = completed.stderr.decode(errors="replace").strip().splitlines()
        raise TesseractUnavailableError(
            f"Tesseract failed (exit {completed.returncode}): {message[-1] if message else 'no message'}"
        )
    return parse_tsv(completed.stdout.decode("utf-8", errors="replace"))


def parse_tsv(tsv: str) -> list[OcrWord]:
    """Parse Tesseract's TSV output into words (level 5 rows with non-blank text)."""
    words = []
    for line in tsv.splitlines()[1:]:
        fields = line.split("\t")
        if len(fields) != 12 or fields[0] != "5" or not fields[11].strip():
            continue
        left, top, width, height = (int(v) for v in fields[6:10])
        words.append(OcrWord(x=left, y=top, w=width, h=height, confidence=float(fields[10]), text=fields[11].strip()))
    return words

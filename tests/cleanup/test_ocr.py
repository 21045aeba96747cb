"""The Tesseract wrapper: TSV parsing, a real read, and a clear error when Tesseract is missing."""

from __future__ import annotations

import numpy as np
import pytest

from cleanup.detect import OcrDetector
from cleanup.ocr import TesseractUnavailableError, parse_tsv, read_words, tesseract_available
from cleanup.rendered_text import render_text

TSV = (
    "level\tpage_num\tblock_num\tpar_num\tline_num\tword_num\tleft\ttop\twidth\theight\tconf\ttext\n"
    "1\t1\t0\t0\t0\t0\t0\t0\t200\t60\t-1\t\n"
    "5\t1\t1\t1\t1\t1\t12\t20\t90\t18\t91.5\tPORTABLE\n"
    "5\t1\t1\t1\t1\t2\t110\t20\t5\t18\t30.0\t \n"
)


def test_tsv_rows_become_words_and_blank_or_non_word_rows_are_skipped():
    [word] = parse_tsv(TSV)
    assert (word.x, word.y, word.w, word.h, word.confidence, word.text) == (12, 20, 90, 18, 91.5, "PORTABLE")


@pytest.mark.skipif(not tesseract_available(), reason="Debian's tesseract is not installed")
def test_tesseract_reads_dark_text_on_a_light_page():
    page, _ = render_text(np.ones((60, 260), np.float32), "Bettaufnahme", x=10, y=15, height=24, polarity="dark")
    words = read_words(np.rint(page * 255).astype(np.uint8), psm=7)
    assert [w.text for w in words] == ["Bettaufnahme"] and words[0].confidence > 80


def test_a_missing_tesseract_is_reported_by_name(monkeypatch):
    monkeypatch.setenv("TESSERACT_CMD", "/nonexistent/tesseract")
    assert not tesseract_available()
    with pytest.raises(TesseractUnavailableError, match="/nonexistent/tesseract"):
        read_words(np.full((20, 20), 255, np.uint8))
    with pytest.raises(ValueError, match="2-D uint8"):
        read_words(np.zeros((20, 20), np.float32))


@pytest.mark.parametrize(
    ("text", "confidence", "accepted"),
    [
        ("Bettaufnahme", 85.0, True),
        ("Bettaufnahme", 70.0, False),  # below min_confidence
        ("AP", 95.0, True),
        ("AP", 85.0, False),  # two-letter words need short_word_confidence: ribs read as "at", "le"
        ("L", 90.0, True),  # a laterality letter on its own
        ("(R)", 90.0, True),
        ("a", 99.0, False),
        ("~~", 99.0, False),
        ("4.", 99.0, False),
    ],
)
def test_ocr_word_filter(text, confidence, accepted):
    assert OcrDetector()._is_text(text, confidence) is accepted

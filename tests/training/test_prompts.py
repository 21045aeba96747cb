"""Training prompts: templates over manifest columns, impressions from report texts, fitting into 77 CLIP tokens.

The reports are written for these tests in the layouts seen in practice (MIMIC-CXR-style sections, a sentence-case
report, a one-line report, a report without sections); they describe no real patient.
"""

from __future__ import annotations

import pytest

from training.prompts import (
    CLIP_MAX_TOKENS,
    DEFAULT_TEMPLATE,
    ROENTGEN_TEMPLATE,
    MissingValueError,
    PromptError,
    available_fields,
    build_prompt,
    check_template,
    count_tokens,
    extract_impression,
    fit_prompt,
    template_values,
)

MIMIC_STYLE_REPORT = """\
                                 FINAL REPORT
 EXAMINATION:  CHEST (PA AND LAT)

 INDICATION:  ___ year old woman with cough and fever  // ?pneumonia

 COMPARISON:  Chest radiograph from ___.

 FINDINGS:
 PA and lateral views of the chest provided.  There is a new opacity in the
 right lower lobe.  Small right pleural effusion.  Heart size is normal.

 IMPRESSION:
 1.  Right lower lobe pneumonia.
 2.  Small right pleural effusion.

 RECOMMENDATION(S):  Follow-up radiograph in 6-8 weeks after treatment to document resolution.

 NOTIFICATION:  The findings were discussed with Dr. ___ by telephone.
"""

SENTENCE_CASE_REPORT = """\
Exam: Chest, single AP portable view.
Findings: Endotracheal tube terminates 4 cm above the carina. Lungs are clear.
Impression: Satisfactory position of the endotracheal tube.
No acute cardiopulmonary process.
Recommendation: None.
"""

ONE_LINE_REPORT = (
    "CHEST PA AND LATERAL: FINDINGS: The lungs are hyperinflated. No focal consolidation. "
    "FINDINGS AND IMPRESSION: Hyperinflation compatible with COPD; no pneumonia. NOTIFICATION: none."
)

FINDINGS_ONLY_REPORT = """\
HISTORY: Shortness of breath.
FINDINGS: Cardiomegaly with mild pulmonary vascular congestion.
No pleural effusion.
"""

CONCLUSION_REPORT = """\
Clinical information: pre-operative.
CONCLUSIONS:
Normal chest radiograph.
"""

UNSECTIONED_REPORT = "  Heart size normal.\n\nLungs clear.  No pneumothorax.  "


# --- Templates ----------------------------------------------------------------------------------------------------


def test_default_template_puts_the_view_before_the_impression() -> None:
    values = template_values({"image": "a.png", "view": "PA", "report": MIMIC_STYLE_REPORT})

    assert build_prompt(DEFAULT_TEMPLATE, values) == (
        "view_position = PA. 1. Right lower lobe pneumonia. 2. Small right pleural effusion."
    )


def test_roentgen_template_uses_age_and_sex() -> None:
    values = template_values({"image": "a.png", "age": " 67 ", "sex": "female", "report": SENTENCE_CASE_REPORT})

    assert build_prompt(ROENTGEN_TEMPLATE, values) == (
        "67 year old female. Satisfactory position of the endotracheal tube. No acute cardiopulmonary process."
    )


def test_extra_columns_are_template_fields() -> None:
    values = template_values({"image": "a.png", "prompt_hint": "portable", "report": "Lungs clear."})

    assert build_prompt("{prompt_hint} chest x-ray: {impression}", values) == "portable chest x-ray: Lungs clear."


def test_unknown_fields_are_refused_with_the_available_columns() -> None:
    columns = ["image", "report", "view", "sex"]

    with pytest.raises(PromptError) as refused:
        check_template("{age} year old {sex}. {impression} {finding}", columns)

    message = str(refused.value)
    assert "{age}, {finding}" in message and "are not columns of the manifest" in message
    assert "the fields available are: {impression}, {report}, {sex}, {view}." in message
    assert check_template(DEFAULT_TEMPLATE, columns) == ["view", "impression"]


def test_impression_needs_a_report_column() -> None:
    with pytest.raises(PromptError, match=r"\{impression\} comes from a 'report' column"):
        check_template(DEFAULT_TEMPLATE, ["image", "prompt", "view"])
    assert available_fields(["image", "prompt", "view"]) == ["prompt", "view"]


@pytest.mark.parametrize("template", ["", "   ", "{0} chest", "{view!r}", "{view:>10}", "{view"])
def test_malformed_templates_are_refused(template: str) -> None:
    with pytest.raises(PromptError):
        check_template(template, ["image", "view", "report"])


def test_a_missing_value_names_the_empty_fields() -> None:
    values = template_values({"image": "a.png", "age": "", "sex": "  ", "report": "Lungs clear."})

    with pytest.raises(MissingValueError) as refused:
        build_prompt(ROENTGEN_TEMPLATE, values)

    assert refused.value.fields == ("age", "sex")
    assert str(refused.value) == "no value for {age}, {sex}, which the template uses"


# --- Impressions --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("report", "text", "source"),
    [
        (
            MIMIC_STYLE_REPORT,
            "1. Right lower lobe pneumonia. 2. Small right pleural effusion.",
            "impression",
        ),
        (
            SENTENCE_CASE_REPORT,
            "Satisfactory position of the endotracheal tube. No acute cardiopulmonary process.",
            "impression",
        ),
        (ONE_LINE_REPORT, "Hyperinflation compatible with COPD; no pneumonia.", "impression"),
        (
            FINDINGS_ONLY_REPORT,
            "Cardiomegaly with mild pulmonary vascular congestion. No pleural effusion.",
            "findings",
        ),
        (CONCLUSION_REPORT, "Normal chest radiograph.", "impression"),
        ("IMPRESSIONS:\n\n   No acute process.\n", "No acute process.", "impression"),
        ("impression\nstable appearance of the chest\n", "stable appearance of the chest", "impression"),
        (UNSECTIONED_REPORT, "Heart size normal. Lungs clear. No pneumothorax.", "report"),
        ("", "", "empty"),
    ],
    ids=[
        "mimic",
        "sentence-case",
        "one-line",
        "findings-only",
        "conclusion",
        "plural",
        "alone-on-line",
        "none",
        "empty",
    ],
)
def test_impression_extraction(report: str, text: str, source: str) -> None:
    impression = extract_impression(report)

    assert (impression.text, impression.source) == (text, source)
    assert extract_impression(report) == impression  # deterministic


def test_an_empty_impression_section_falls_back_to_the_findings() -> None:
    report = "FINDINGS: Lungs clear.\nIMPRESSION:\nRECOMMENDATION(S): none"

    assert extract_impression(report).text == "Lungs clear."
    assert extract_impression(report).source == "findings"


def test_the_word_impression_in_prose_is_not_a_heading() -> None:
    report = "HISTORY: The clinical impression is pneumonia.\nFINDINGS: Right lower lobe opacity."

    assert extract_impression(report).text == "Right lower lobe opacity."


# --- Token counts and truncation ---------------------------------------------------------------------------------


def words(text: str) -> list[str]:
    return text.split()


def test_a_short_prompt_is_kept_whole_and_counted_with_start_and_end_tokens() -> None:
    fitted = fit_prompt("view_position = PA.   Lungs  clear.", words)

    assert fitted.text == "view_position = PA. Lungs clear."
    assert (fitted.tokens, fitted.truncated, fitted.dropped_tokens) == (5 + 2, False, 0)


def test_a_long_prompt_is_cut_at_a_word_boundary_and_the_cut_is_counted() -> None:
    prompt = " ".join(f"w{index}" for index in range(100))

    fitted = fit_prompt(prompt, words)

    # 77 tokens minus the start and end tokens leave 75 words; 25 are dropped.
    assert fitted.text == " ".join(f"w{index}" for index in range(75))
    assert (fitted.tokens, fitted.truncated, fitted.dropped_tokens) == (CLIP_MAX_TOKENS, True, 25)
    assert fit_prompt(" ".join(f"w{index}" for index in range(75)), words).truncated is False


def test_a_first_word_longer_than_the_budget_is_cut_inside() -> None:
    fitted = fit_prompt("x" * 30 + " tail", list, max_tokens=12)

    assert fitted == type(fitted)(text="x" * 10, tokens=12, truncated=True, dropped_tokens=25)


def test_max_tokens_must_leave_room_for_text() -> None:
    with pytest.raises(ValueError, match="no room"):
        fit_prompt("Lungs clear.", words, max_tokens=2)


@pytest.fixture(scope="module")
def clip_tokenizer(tmp_path_factory):
    """The tiny offline byte-level CLIP tokenizer of the test models: one token per character of each word."""
    pytest.importorskip("transformers")
    from transformers import CLIPTokenizer

    from generation.tiny_models import write_tiny_clip_tokenizer

    directory = tmp_path_factory.mktemp("tokenizer")
    write_tiny_clip_tokenizer(directory)
    return CLIPTokenizer.from_pretrained(directory)


@pytest.mark.ml
def test_truncation_with_a_clip_tokenizer_counts_what_clip_would_drop(clip_tokenizer) -> None:
    # Byte-level tokens without merges: "effusion." is 9 tokens, each word its characters; 75 fit beside start/end.
    prompt = "view_position = PA. " + "small left pleural effusion. " * 6

    fitted = fit_prompt(prompt, clip_tokenizer)

    full = clip_tokenizer(prompt.strip())["input_ids"]
    kept = clip_tokenizer(fitted.text)["input_ids"]
    assert fitted.truncated and fitted.tokens == len(kept) <= CLIP_MAX_TOKENS
    assert fitted.dropped_tokens == len(full) - len(kept)
    assert prompt.startswith(fitted.text) and not fitted.text.endswith(" ")
    # Whole words only: the next word would not have fitted.
    next_word = prompt[len(fitted.text) :].split()[0]
    assert count_tokens(f"{fitted.text} {next_word}", clip_tokenizer) > CLIP_MAX_TOKENS
    assert count_tokens("Lungs clear.", clip_tokenizer) == len(clip_tokenizer("Lungs clear.")["input_ids"])

"""Prompt lists from lines, CSV columns and caption templates with counts, and their error messages."""

import io
from pathlib import Path

import pytest

from generation.prompts import (
    MAX_PROMPTS,
    PromptCount,
    PromptError,
    expand_template,
    parse_counts,
    prompts_from_csv,
    prompts_from_list,
    repeat_prompts,
    template_fields,
)

TEMPLATE = "view_position = {view}. modality = {modality}. {finding}."


def test_list_prompts_drop_blank_lines_and_surrounding_space() -> None:
    text = "  view_position = PA. No findings.\n\n\tsmall right pleural effusion \n"
    assert prompts_from_list(text) == ["view_position = PA. No findings.", "small right pleural effusion"]
    assert prompts_from_list(["a", " ", "b"]) == ["a", "b"]


def test_list_without_prompts_is_refused() -> None:
    with pytest.raises(PromptError, match="No prompts given"):
        prompts_from_list("\n  \n")


def test_csv_column_gives_its_non_empty_values(tmp_path: Path) -> None:
    path = tmp_path / "reports.csv"
    path.write_text(
        'study,impression\n1,No findings.\n2,"Small right pleural effusion, no pneumothorax."\n3,\n',
        encoding="utf-8",
    )
    assert prompts_from_csv(path, "impression") == [
        "No findings.",
        "Small right pleural effusion, no pneumothorax.",
    ]


def test_csv_with_semicolons_bom_and_bytes_upload() -> None:
    upload = io.BytesIO("\ufeffid;impression\n1;Cardiomegaly.\n".encode())
    assert prompts_from_csv(upload, "impression") == ["Cardiomegaly."]


def test_csv_missing_column_names_the_columns_there_are(tmp_path: Path) -> None:
    path = tmp_path / "reports.csv"
    path.write_text("study,findings\n1,No findings.\n", encoding="utf-8")
    with pytest.raises(PromptError, match=r"no column 'impression'; its columns are 'study', 'findings'"):
        prompts_from_csv(path, "impression")


def test_csv_empty_file_and_empty_column_are_refused(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(PromptError, match="is empty"):
        prompts_from_csv(empty, "impression")
    blank = tmp_path / "blank.csv"
    blank.write_text("impression\n\n \n", encoding="utf-8")
    with pytest.raises(PromptError, match="has no values"):
        prompts_from_csv(blank, "impression")


def test_csv_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PromptError, match="cannot be read"):
        prompts_from_csv(tmp_path / "nope.csv", "impression")


def test_counts_parse_commas_inside_findings() -> None:
    counts = parse_counts("100 x No findings, 100 x small right pleural effusion, no pneumothorax")
    assert counts == [
        PromptCount("No findings", 100),
        PromptCount("small right pleural effusion, no pneumothorax", 100),
    ]
    assert parse_counts("3 × Cardiomegaly\n2 x Atelectasis") == [
        PromptCount("Cardiomegaly", 3),
        PromptCount("Atelectasis", 2),
    ]


@pytest.mark.parametrize("text", ["No findings", "x 100 No findings", "0 x No findings", ""])
def test_malformed_counts_are_refused(text: str) -> None:
    with pytest.raises(PromptError):
        parse_counts(text)


def test_template_expands_the_issue_example_to_200_prompts() -> None:
    findings = parse_counts("100 x No findings, 100 x small right pleural effusion")
    counts = expand_template(TEMPLATE, {"view": "PA", "modality": "CR", "finding": findings})
    assert counts == [
        PromptCount("view_position = PA. modality = CR. No findings.", 100),
        PromptCount("view_position = PA. modality = CR. small right pleural effusion.", 100),
    ]
    prompts = repeat_prompts(counts, interleave=True)
    assert len(prompts) == 200
    assert prompts[:2] == [counts[0].prompt, counts[1].prompt]
    assert prompts[:100].count(counts[0].prompt) == 50  # any half holds both findings equally


def test_template_combines_lists_and_multiplies_counts() -> None:
    counts = expand_template("{view} {finding}", {"view": ["PA", "AP"], "finding": {"No findings": 3, "Effusion": 1}})
    assert counts == [
        PromptCount("PA No findings", 3),
        PromptCount("PA Effusion", 1),
        PromptCount("AP No findings", 3),
        PromptCount("AP Effusion", 1),
    ]


def test_unknown_and_unused_template_fields_are_named() -> None:
    with pytest.raises(PromptError, match=r"unknown field\(s\) \{modality\}"):
        expand_template(TEMPLATE, {"view": "PA", "finding": "No findings"})
    with pytest.raises(PromptError, match="Field\\(s\\) projection are not used"):
        expand_template("{finding}", {"finding": "x", "projection": "PA"})


@pytest.mark.parametrize("template", ["{0}", "{finding!r}", "{finding:>10}", "{finding", "{a.b}"])
def test_positional_formatted_or_malformed_fields_are_refused(template: str) -> None:
    with pytest.raises(PromptError):
        template_fields(template)


def test_repeat_in_blocks_and_evenly_interleaved() -> None:
    counts = [PromptCount("a", 4), PromptCount("b", 2)]
    assert repeat_prompts(counts) == ["a", "a", "a", "a", "b", "b"]
    assert repeat_prompts(counts, interleave=True) == ["a", "b", "a", "a", "b", "a"]


def test_too_many_prompts_are_refused() -> None:
    with pytest.raises(PromptError, match=f"at most {MAX_PROMPTS}"):
        repeat_prompts([PromptCount("a", MAX_PROMPTS + 1)])

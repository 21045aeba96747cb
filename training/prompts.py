"""Training prompts from manifest rows: a caption template over the manifest's columns, the impression of a report,
and the fit of each prompt into the 77 tokens of the CLIP text encoder. Plain Python, no Django, no ML import.

A prompt is built as ``template.format(**fields)`` where the fields are the manifest's columns (``view``, ``sex``,
``age``, ``report``, any extra column) plus ``impression``, taken from the report by :func:`extract_impression`.
:data:`DEFAULT_TEMPLATE` is the reference LoRA's ``"view_position = {view}. {impression}"``; RoentGen-v2 style
prompts are ``"{age} year old {sex}. {impression}"``.

CLIP truncates anything past its context length, silently; here every prompt is fitted before training
(:func:`fit_prompt`), cut at a word boundary, and the number of dropped tokens is kept, so that a truncation is
counted and shown instead of lost.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from generation.prompts import PromptError as GenerationPromptError
from generation.prompts import template_fields as generation_template_fields

DEFAULT_TEMPLATE = "view_position = {view}. {impression}"
ROENTGEN_TEMPLATE = "{age} year old {sex}. {impression}"

# The context length of the CLIP text encoder of Stable Diffusion 2.x (OpenCLIP ViT-H/14), start and end included.
CLIP_MAX_TOKENS = 77
# The start-of-text and end-of-text tokens CLIP adds around every prompt.
CLIP_SPECIAL_TOKENS = 2

# Fields a template may use that are not manifest columns, and the column each is derived from.
DERIVED_FIELDS = {"impression": "report"}
# Columns that are never template fields: the image path is not text about the image.
NON_FIELD_COLUMNS = frozenset({"image"})


class PromptError(ValueError):
    """A template or a row that cannot give a prompt; the message says why and names the fields involved."""


class MissingValueError(PromptError):
    """A row without a value for a field its template uses."""

    def __init__(self, fields: Sequence[str]) -> None:
        self.fields = tuple(fields)
        names = ", ".join("{" + name + "}" for name in self.fields)
        super().__init__(f"no value for {names}, which the template uses")


# --- Templates ------------------------------------------------------------------------------------------------


def template_fields(template: str) -> list[str]:
    """The field names a template uses, in order of first use (the same parser as generation templates)."""
    if not template.strip():
        raise PromptError("The template is empty: write e.g. " + repr(DEFAULT_TEMPLATE) + ".")
    try:
        return generation_template_fields(template)
    except GenerationPromptError as error:
        raise PromptError(str(error)) from error


def available_fields(columns: Iterable[str]) -> list[str]:
    """The fields a template can use with a manifest of these columns, sorted: the columns but ``image``, plus
    ``impression`` when there is a ``report`` column."""
    names = {column for column in columns if column not in NON_FIELD_COLUMNS}
    names |= {field for field, source in DERIVED_FIELDS.items() if source in names}
    return sorted(names)


def check_template(template: str, columns: Iterable[str]) -> list[str]:
    """The template's fields, or PromptError naming each field that no column gives and listing those that do."""
    fields = template_fields(template)
    available = available_fields(columns)
    unknown = [name for name in fields if name not in available]
    if unknown:
        names = ", ".join("{" + name + "}" for name in unknown)
        listed = ", ".join("{" + name + "}" for name in available) or "none"
        verb = "is not a column" if len(unknown) == 1 else "are not columns"
        hint = (
            " ({impression} comes from a 'report' column.)"
            if "impression" in unknown and "report" not in available
            else ""
        )
        raise PromptError(
            f"The template uses {names}, which {verb} of the manifest; the fields available are: {listed}.{hint}"
        )
    return fields


def template_values(values: Mapping[str, str]) -> dict[str, str]:
    """A row's template fields: its values, whitespace normalised, plus the impression of its report."""
    fields = {name: normalise_whitespace(value) for name, value in values.items() if name not in NON_FIELD_COLUMNS}
    if "report" in fields:
        fields["impression"] = extract_impression(values["report"]).text
    return fields


def build_prompt(template: str, values: Mapping[str, str]) -> str:
    """The template filled with a row's field values (see :func:`template_values`), whitespace normalised.

    Raises :class:`MissingValueError` naming every field the template uses that the row leaves empty, and
    PromptError for a field the row does not have at all (check the template against the columns first).
    """
    fields = template_fields(template)
    absent = [name for name in fields if name not in values]
    if absent:
        raise PromptError(
            f"The template uses {', '.join('{' + name + '}' for name in absent)}, which the row does not have."
        )
    empty = [name for name in fields if not normalise_whitespace(values[name])]
    if empty:
        raise MissingValueError(empty)
    return normalise_whitespace(template.format(**{name: normalise_whitespace(values[name]) for name in fields}))


def normalise_whitespace(text: str | None) -> str:
    """Runs of whitespace (newlines included) become one space; leading and trailing whitespace goes."""
    return " ".join((text or "").split())


# --- Impressions ----------------------------------------------------------------------------------------------

ImpressionSource = Literal["impression", "findings", "report", "empty"]

_IMPRESSION_NAMES = r"findings\s+and\s+impressions?|impressions?|conclusions?"
_FINDINGS_NAMES = r"findings?"
# A heading is its name followed by a colon ("IMPRESSION:", "Impression :"), or a line of its own ("IMPRESSION").
_HEADING = r"(?:\b(?P<inline>{names})[ \t]*:|^[ \t]*(?P<alone>{names})[ \t]*$)"
_IMPRESSION_HEADING = re.compile(_HEADING.format(names=_IMPRESSION_NAMES), re.IGNORECASE | re.MULTILINE)
_FINDINGS_HEADING = re.compile(_HEADING.format(names=_FINDINGS_NAMES), re.IGNORECASE | re.MULTILINE)
# A section ends at the next ALL-CAPS heading ("RECOMMENDATION(S):", "NOTIFICATION:", "FINAL REPORT:"): three or
# more capitals, possibly several words, then a colon ...
_CAPITALS_HEADING = re.compile(r"\b[A-Z][A-Z()/&'-]{2,}(?:[ \t]+[A-Z()/&'-]+)*[ \t]*:")
# ... or, in reports written in sentence case, at a common section name that starts a line.
_LINE_HEADING = re.compile(
    r"^[ \t]*(?:recommendations?|notifications?|communications?|comparisons?|findings?|indications?|history|"
    r"clinical\s+history|technique|examination|exam|addend(?:um|a)|impressions?|conclusions?)(?:\(s\))?[ \t]*:",
    re.IGNORECASE | re.MULTILINE,
)


@dataclass(frozen=True)
class Impression:
    """The text a prompt uses from a report, and where it was found: its IMPRESSION (or CONCLUSION) section, its
    FINDINGS section when it has no impression, else the whole report (``"empty"`` for a blank report)."""

    text: str
    source: ImpressionSource


def extract_impression(report: str | None) -> Impression:
    """The impression of a free-text radiology report, whitespace normalised.

    The section is the first heading IMPRESSION, IMPRESSIONS, CONCLUSION(S) or FINDINGS AND IMPRESSION (any case,
    followed by a colon or alone on its line) up to the next ALL-CAPS heading such as "RECOMMENDATION(S):" or
    "NOTIFICATION:" (or a common section name such as "Recommendation:" at the start of a line), or the end.
    A report without a non-empty impression section gives its FINDINGS section, else the whole report.
    Deterministic: the same text always gives the same impression.
    """
    text = report or ""
    for heading, source in ((_IMPRESSION_HEADING, "impression"), (_FINDINGS_HEADING, "findings")):
        for found in heading.finditer(text):
            section = normalise_whitespace(_section_body(text, found.end()))
            if section:
                return Impression(section, source)
    whole = normalise_whitespace(text)
    return Impression(whole, "report" if whole else "empty")


def _section_body(text: str, start: int) -> str:
    ends = [found.start() for pattern in (_CAPITALS_HEADING, _LINE_HEADING) if (found := pattern.search(text, start))]
    return text[start : min(ends, default=len(text))]


# --- Token counts and truncation ------------------------------------------------------------------------------


@runtime_checkable
class HuggingFaceTokenizer(Protocol):
    """The part of a ``transformers`` tokenizer (e.g. ``CLIPTokenizer``) that prompt fitting uses."""

    def tokenize(self, text: str) -> list[str]: ...

    def num_special_tokens_to_add(self, pair: bool = False) -> int: ...


# A plain callable gives the tokens of a text without the start and end tokens (e.g. ``str.split`` in tests).
Tokenizer = HuggingFaceTokenizer | Callable[[str], Sequence[object]]


@dataclass(frozen=True)
class FittedPrompt:
    """A prompt as the text encoder will see it.

    ``text`` is the prompt, cut at a word boundary if it was too long; ``tokens`` counts its tokens with the start
    and end tokens (at most ``max_tokens``); ``dropped_tokens`` is how many tokens of the original prompt were cut
    (0 unless ``truncated``).
    """

    text: str
    tokens: int
    truncated: bool
    dropped_tokens: int


def tokenizer_description(tokenizer: Tokenizer) -> str:
    """A short name for a tokenizer, for a dataset's settings (its class and, for transformers, its path)."""
    name = getattr(tokenizer, "name_or_path", "") or ""
    kind = type(tokenizer).__name__ if isinstance(tokenizer, HuggingFaceTokenizer) else _callable_name(tokenizer)
    return f"{kind} ({name})" if name else kind


def _callable_name(tokenizer: object) -> str:
    return getattr(tokenizer, "__qualname__", None) or type(tokenizer).__name__


def count_tokens(text: str, tokenizer: Tokenizer, *, special_tokens: int | None = None) -> int:
    """The number of tokens the text encoder sees for ``text``: its own tokens plus the start and end tokens."""
    counter, specials = _token_counter(tokenizer, special_tokens)
    return counter(text) + specials


def fit_prompt(
    prompt: str, tokenizer: Tokenizer, max_tokens: int = CLIP_MAX_TOKENS, *, special_tokens: int | None = None
) -> FittedPrompt:
    """``prompt`` (whitespace normalised) cut to at most ``max_tokens`` tokens, start and end tokens included.

    ``tokenizer`` is a ``transformers`` tokenizer (its ``tokenize`` and ``num_special_tokens_to_add`` are used) or
    a callable giving a text's tokens without the special ones, in which case ``special_tokens`` (default
    :data:`CLIP_SPECIAL_TOKENS`) are added to the count. A long prompt keeps the most whole words that fit; a first
    word longer than the whole budget is cut inside. Counting the tokens of prefixes assumes, as CLIP's per-word
    BPE ensures, that a longer prefix never has fewer tokens.
    """
    counter, specials = _token_counter(tokenizer, special_tokens)
    budget = max_tokens - specials
    if budget < 1:
        raise ValueError(f"max_tokens={max_tokens} leaves no room for text beside {specials} special tokens.")
    text = normalise_whitespace(prompt)
    total = counter(text)
    if total <= budget:
        return FittedPrompt(text=text, tokens=total + specials, truncated=False, dropped_tokens=0)

    word_ends = [found.end() for found in re.finditer(r"\S+", text)]
    kept_words = _longest_fitting(len(word_ends), lambda words: counter(text[: word_ends[words - 1]]), budget)
    if kept_words:
        fitted = text[: word_ends[kept_words - 1]]
    else:
        first_word = text[: word_ends[0]]
        fitted = first_word[: _longest_fitting(len(first_word), lambda length: counter(first_word[:length]), budget)]
    kept = counter(fitted)
    return FittedPrompt(text=fitted, tokens=kept + specials, truncated=True, dropped_tokens=total - kept)


def _longest_fitting(count: int, tokens_of: Callable[[int], int], budget: int) -> int:
    """The largest n in 0..count with tokens_of(n) <= budget (tokens_of(0) is taken as 0), by bisection."""
    low, high = 0, count
    while low < high:
        middle = (low + high + 1) // 2
        if tokens_of(middle) <= budget:
            low = middle
        else:
            high = middle - 1
    return low


def _token_counter(tokenizer: Tokenizer, special_tokens: int | None) -> tuple[Callable[[str], int], int]:
    if isinstance(tokenizer, HuggingFaceTokenizer):
        # tokenize() rather than __call__: it neither adds special tokens nor warns about long sequences.
        specials = tokenizer.num_special_tokens_to_add() if special_tokens is None else special_tokens
        return (lambda text: len(tokenizer.tokenize(text)) if text else 0), specials
    if callable(tokenizer):
        specials = CLIP_SPECIAL_TOKENS if special_tokens is None else special_tokens
        return (lambda text: len(tokenizer(text)) if text else 0), specials
    raise TypeError(f"A tokenizer must be a transformers tokenizer or a callable, got {type(tokenizer).__name__}.")

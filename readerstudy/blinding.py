"""The blinding audit of a study: every channel other than the anatomy by which a reader could tell the classes.

Channels, each measured the way a reader could measure it, each property by its AUC for "synthetic" with a 95% CI
(flagged when the CI excludes 0.5 or the AUC lies outside 0.35-0.65, `readerstudy.stats.blinding`):

* HTTP: the responses of the serving path itself (`readerstudy.serving.blinded_png_response`, probed here for
  every analysed case): Content-Length, the bytes actually sent, the header set, and the time to serve;
* file: the served PNG's byte length, compression and dimensions;
* content: brightness, contrast, black level, border, sharpness, compressibility (texture), burned-in text; with
  intensity harmonisation on, also before it;
* order: the position of every case in every stored reading order (per reader and pooled) and whether it comes
  back as a hidden repeat;
* sources: the originals (never served; a sign the classes come from different datasets).

Plus whether text cleanup treated the classes alike (`treatment_audit`). `study_open_check` turns the audit into
the gate at "Open for reading".

One job, and so one module despite its length: the blinding audit, channel by channel, and its record at opening.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field, replace

from django.core.cache import cache
from django.db.models import Count, Max
from django.http import Http404

from readerstudy.models import Case, SessionItem, Study
from readerstudy.serving import blinded_png_response
from readerstudy.stats.blinding import BlindingAudit, FeatureSeparation, blinding_audit, feature_separation

FEATURE_LABELS = {
    "content_length": "Content-Length header (bytes)",
    "bytes_sent": "bytes sent",
    "header_set": "response headers (which set)",
    "serve_ms": "time to serve (ms)",
    "size_bytes": "served file size (bytes)",
    "bits_per_pixel": "served file bits per pixel",
    "width": "served width",
    "height": "served height",
    "compressed_bits_per_pixel": "compressibility (bits per pixel when compressed: noise and texture)",
    "mean": "mean brightness",
    "std": "contrast (standard deviation)",
    "p1": "darkest 1% level",
    "p99": "brightest 1% level",
    "black_border_fraction": "black border (share of the canvas)",
    "content_width": "image width inside the border",
    "content_height": "image height inside the border",
    "sharpness": "sharpness (upscaled images are smoother)",
    "text_regions": "burned-in text regions",
    "position": "position in the reading order (pooled over readers)",
    "shown_twice": "comes back as a hidden repeat",
    "original_width": "original width",
    "original_height": "original height",
    "original_aspect_ratio": "original aspect ratio",
    "original_bits": "original bit depth",
    "original_is_dicom": "original was DICOM",
    "original_is_jpeg": "original was JPEG",
    "original_was_colour": "original was colour",
}

SOURCE_PREFIX = "original_"
UNHARMONISED_PREFIX = "unharmonised_"
FILE_FEATURES = ("size_bytes", "bits_per_pixel", "width", "height")
# A difference in serving time below a millisecond is beyond what a reader can time through a browser and a
# network (timers are coarsened, and network jitter alone is larger); smaller differences are reported, not flagged.
NEGLIGIBLE_SERVE_MS = 1.0
# Rounds of probes over every analysed case: enough for about HTTP_TIMING_PROBES timings, within these bounds.
HTTP_PROBE_MIN_ROUNDS, HTTP_PROBE_MAX_ROUNDS, HTTP_TIMING_PROBES = 1, 8, 320
# The gate asks for an acknowledgement when the smaller class has less than a third of the larger one's cases.
CLASS_RATIO_LIMIT = 1 / 3
AUDIT_CACHE_SECONDS = 600


@dataclass(frozen=True)
class ChannelAudit:
    """One channel: its properties checked (`audit`, None while there is nothing to measure) and plain-words facts."""

    key: str
    title: str
    audit: BlindingAudit | None
    facts: tuple[str, ...] = ()
    missing: str = ""

    @property
    def flagged(self) -> bool:
        return self.audit is not None and self.audit.confounded


@dataclass(frozen=True)
class ReaderPosition:
    """The AUC of position for "synthetic" in one reader's stored order (reported, not flagged: a single random
    order is as likely to put synthetic cases early as late; the pooled AUC measures the ordering rule)."""

    reader: str
    separation: FeatureSeparation


@dataclass(frozen=True)
class RepeatMix:
    repeats: int
    synthetic: int
    prevalence: float

    @property
    def share(self) -> float:
        return self.synthetic / self.repeats if self.repeats else math.nan


@dataclass(frozen=True)
class ClassTreatment:
    """How one class's analysed cases went through text cleanup: `cleanup_recorded` passed an accepted cleanup
    (changed or not), `cleaned` were changed by it, `text_checked` have a text-region count on their served image,
    `with_text` have at least one region, `inpainters` filled the cleaned ones."""

    cases: int
    cleanup_recorded: int
    cleaned: int
    text_checked: int
    with_text: int
    inpainters: tuple[str, ...]

    @property
    def cleanup_share(self) -> float:
        return self.cleanup_recorded / self.cases if self.cases else 0.0

    @property
    def text_share(self) -> float:
        return self.with_text / self.text_checked if self.text_checked else 0.0


@dataclass(frozen=True)
class TreatmentAudit:
    """Were both classes treated alike by text cleanup, and is burned-in text left in one class more than the
    other? `warnings` say what is wrong in plain words; `notes` say what has not been measured yet."""

    real: ClassTreatment
    synthetic: ClassTreatment
    warnings: tuple[str, ...]
    notes: tuple[str, ...]


@dataclass(frozen=True)
class StudyAudit:
    """Every channel of the study's blinding audit, the class counts, and the text-cleanup treatment check."""

    channels: tuple[ChannelAudit, ...]
    n_real: int
    n_synthetic: int
    treatment: TreatmentAudit | None = None
    reader_positions: tuple[ReaderPosition, ...] = ()
    repeat_mix: RepeatMix | None = None
    unharmonised: BlindingAudit | None = None
    served_lengths: tuple[int, ...] = field(default=())

    def channel(self, key: str) -> ChannelAudit:
        return next(channel for channel in self.channels if channel.key == key)

    @property
    def flagged_channels(self) -> tuple[ChannelAudit, ...]:
        return tuple(channel for channel in self.channels if channel.flagged and channel.key != "sources")

    @property
    def class_ratio(self) -> float | None:
        larger = max(self.n_real, self.n_synthetic)
        return min(self.n_real, self.n_synthetic) / larger if larger else None

    @property
    def unequal_classes(self) -> bool:
        return self.class_ratio is not None and self.class_ratio < CLASS_RATIO_LIMIT - 1e-12

    @property
    def flags(self) -> tuple[str, ...]:
        """Everything that makes opening need an acknowledgement, in plain words."""
        found = []
        for channel in self.flagged_channels:
            names = [FEATURE_LABELS.get(row.feature, row.feature) for row in channel.audit.separating]
            if channel.audit.combined is not None and channel.audit.combined.separates:
                names.append(f"all {channel.title.lower()} properties together")
            found.append(f"{channel.title}: {', '.join(names)}")
        if self.treatment is not None:
            found += list(self.treatment.warnings)
        if self.unequal_classes:
            found.append(
                f"Class ratio {self.n_real} real : {self.n_synthetic} synthetic is more unequal than 1:3: a reader who "
                "calls every case by the larger class is right most of the time."
            )
        return tuple(found)


# A class whose share of cleaned-up cases differs from the other's by this much was not treated alike: beyond a
# failed image or two, one class went through a step the other did not.
TREATED_SHARE_GAP = 0.10
# Burned-in text on a fifth more of one class's served images than the other's is a cue a reader picks up within
# a few dozen cases, long before the per-feature AUC (0.75 needs a gap of a half) calls it separating.
TEXT_SHARE_GAP = 0.20
MIN_TEXT_CHECKED = 5


def study_blinding_audit(*, study: Study, probe_http: bool = True) -> StudyAudit:
    """The audit of every channel for this study's analysed cases (not practice), cached until a case, an order or
    a reading order changes. `probe_http=False` skips the serving-path probe (the HTTP channel then says so)."""
    key = _cache_key(study, probe_http)
    cached = cache.get(key)
    if cached is None:
        cached = _study_blinding_audit(study, probe_http=probe_http)
        cache.set(key, cached, AUDIT_CACHE_SECONDS)
    return cached


def _cache_key(study: Study, probe_http: bool) -> str:
    cases = study.cases.aggregate(count=Count("id"), changed=Max("updated_at"))
    items = SessionItem.objects.filter(session__study=study).aggregate(count=Count("id"), last=Max("id"))
    changed = cases["changed"].isoformat() if cases["changed"] else "-"
    return (
        f"readerstudy:audit:v1:{study.pk}:{study.harmonise_intensity}:{cases['count']}:{changed}:"
        f"{items['count']}:{items['last']}:{int(probe_http)}"
    )


def _study_blinding_audit(study: Study, *, probe_http: bool) -> StudyAudit:
    cases = list(study.cases.filter(is_practice=False).order_by("id"))
    truth = [int(case.truth == Case.Truth.SYNTHETIC) for case in cases]
    n_real, n_synthetic = truth.count(0), truth.count(1)
    names = sorted({name for case in cases for name in case.served_features})
    columns = {name: [case.served_features.get(name, math.nan) for case in cases] for name in names}
    file_columns = {name: columns[name] for name in FILE_FEATURES if name in columns}
    content_columns = {
        name: values
        for name, values in columns.items()
        if name not in FILE_FEATURES and not name.startswith((SOURCE_PREFIX, UNHARMONISED_PREFIX))
    }
    source_columns = {name: values for name, values in columns.items() if name.startswith(SOURCE_PREFIX)}
    unharmonised_columns = {
        name.removeprefix(UNHARMONISED_PREFIX): values
        for name, values in columns.items()
        if name.startswith(UNHARMONISED_PREFIX)
    }

    served_lengths = tuple(sorted(set(_stored_lengths(study))))
    http = _http_channel(cases, truth) if probe_http else ChannelAudit("http", "HTTP", None, missing="Not probed.")
    order, reader_positions, repeat_mix = _order_channel(study, n_real, n_synthetic)
    channels = (
        http,
        _channel("file", "File", file_columns, truth, combine=False, facts=_length_facts(served_lengths)),
        _channel("content", "Content", content_columns, truth),
        order,
        _channel("sources", "Sources (not served)", source_columns, truth),
    )
    rows = [(case.truth, case.served_features, case.provenance) for case in cases]
    return StudyAudit(
        channels=channels,
        n_real=n_real,
        n_synthetic=n_synthetic,
        treatment=treatment_audit(rows),
        reader_positions=reader_positions,
        repeat_mix=repeat_mix,
        unharmonised=blinding_audit(unharmonised_columns, truth) if unharmonised_columns else None,
        served_lengths=served_lengths,
    )


def _channel(
    key: str,
    title: str,
    columns: dict,
    truth: list[int],
    *,
    combine: bool = True,
    facts: tuple[str, ...] = (),
    negligible: dict | None = None,
) -> ChannelAudit:
    if not truth:
        return ChannelAudit(key, title, None, facts, missing="No analysed cases yet.")
    if not columns:
        return ChannelAudit(key, title, None, facts, missing="Nothing recorded for these cases yet.")
    audit = blinding_audit(columns, truth, combine=combine, negligible=negligible)
    return ChannelAudit(key, title, audit, facts)


def _stored_lengths(study: Study):
    """Byte length of every served file of the study, practice cases included."""
    for case in study.cases.only("image"):
        try:
            yield case.image.size
        except (OSError, ValueError):
            continue


def _length_facts(lengths: tuple[int, ...]) -> tuple[str, ...]:
    if not lengths:
        return ()
    if len(lengths) == 1:
        return (f"Every served image of the study (practice included) is exactly {lengths[0]:,} bytes.",)
    return (
        f"Served images have {len(lengths)} different byte lengths ({lengths[0]:,} to {lengths[-1]:,}): the file "
        "size can tell images apart.",
    )


def _http_channel(cases: list[Case], truth: list[int]) -> ChannelAudit:
    """Probe the serving path for every analysed case: headers, Content-Length, bytes sent and time to serve.

    Timing is pooled over probes (each probe one observation), in rounds over a shuffled order so that a warm or
    cold file cache does not line up with the classes: a reader times single requests, and per-probe pooling keeps
    the AUC's chance spread small (SD about 0.045 at 33:7 cases and 8 rounds) instead of that of 40 medians."""
    if not cases:
        return ChannelAudit("http", "HTTP", None, missing="No analysed cases yet.")
    content_length = [math.nan] * len(cases)
    bytes_sent = [math.nan] * len(cases)
    header_sets: list[str | None] = [None] * len(cases)
    probe_ms: list[float] = []
    probe_truth: list[int] = []
    rng = random.Random(0)
    rounds = max(HTTP_PROBE_MIN_ROUNDS, min(HTTP_PROBE_MAX_ROUNDS, math.ceil(HTTP_TIMING_PROBES / len(cases))))
    for _ in range(rounds):
        order = list(range(len(cases)))
        rng.shuffle(order)
        for index in order:
            probe = _probe(cases[index])
            if probe is None:
                continue
            content_length[index], bytes_sent[index], header_sets[index], elapsed_ms = probe
            probe_ms.append(elapsed_ms)
            probe_truth.append(truth[index])
    distinct = sorted({headers for headers in header_sets if headers is not None})
    columns = {
        "content_length": content_length,
        "bytes_sent": bytes_sent,
        "header_set": [math.nan if h is None else float(distinct.index(h)) for h in header_sets],
    }
    probed = sum(1 for length in content_length if not math.isnan(length))
    facts = [f"Probed {probed} analysed cases through the serving path, {rounds} times each."]
    if len(distinct) == 1:
        facts.append("Every response carries the same headers: " + distinct[0].replace("\n", "; ") + ".")
    elif distinct:
        facts.append(f"Responses carry {len(distinct)} different header sets.")
    channel = _channel("http", "HTTP", columns, truth, combine=False, facts=tuple(facts))
    timing = feature_separation(
        "serve_ms", probe_ms, probe_truth, judge=channel.audit.enough_cases, negligible=NEGLIGIBLE_SERVE_MS
    )
    if timing is None:
        return channel
    features = tuple(sorted((*channel.audit.features, timing), key=lambda row: -abs(row.auc - 0.5)))
    audit = replace(channel.audit, features=features, confounded=channel.audit.confounded or timing.separates)
    return replace(channel, audit=audit)


def _probe(case: Case) -> tuple[float, float, str, float] | None:
    started = time.perf_counter()
    try:
        response = blinded_png_response(case.image)
    except Http404:  # a missing file is a 404 for readers too; the audit skips the case
        return None
    try:
        sent = sum(len(chunk) for chunk in response.streaming_content)
    finally:
        # Not response.close(): that sends request_finished, which closes the database connection mid-audit.
        response.file_to_stream.close()
    elapsed_ms = 1000 * (time.perf_counter() - started)
    headers = "\n".join(f"{name}: {value}" for name, value in sorted(response.items()) if name != "Content-Length")
    return float(response.get("Content-Length", math.nan)), float(sent), headers, elapsed_ms


def _order_channel(
    study: Study, n_real: int, n_synthetic: int
) -> tuple[ChannelAudit, tuple[ReaderPosition, ...], RepeatMix | None]:
    """Positions of first showings in every stored order (per reader and pooled) and the class mix of repeats."""
    rows = (
        SessionItem.objects.filter(session__study=study, is_practice=False)
        .order_by("session_id", "position")
        .values_list("session_id", "session__reader__username", "case_id", "case__truth", "replicate")
    )
    sessions: dict[int, dict] = {}
    for session_id, reader, case_id, case_truth, replicate in rows:
        entry = sessions.setdefault(session_id, {"reader": reader, "items": []})
        entry["items"].append((case_id, int(case_truth == Case.Truth.SYNTHETIC), replicate))
    if not sessions:
        return ChannelAudit("order", "Order", None, missing="No reading orders stored yet: assign readers."), (), None
    positions, shown_twice, truth = [], [], []
    per_reader = []
    repeats = repeat_synthetic = 0
    for entry in sessions.values():
        items = entry["items"]
        repeated = {case_id for case_id, _, replicate in items if replicate}
        span = max(len(items) - 1, 1)
        mine_positions, mine_truth = [], []
        for position, (case_id, synthetic, replicate) in enumerate(items):
            if replicate:
                repeats += 1
                repeat_synthetic += synthetic
                continue
            mine_positions.append(position / span)
            mine_truth.append(synthetic)
            shown_twice.append(float(case_id in repeated))
        positions += mine_positions
        truth += mine_truth
        separation = feature_separation("position", mine_positions, mine_truth, judge=False)
        if separation is not None:
            per_reader.append(ReaderPosition(entry["reader"], separation))
    columns = {"position": positions}
    if repeats:
        columns["shown_twice"] = shown_twice
    prevalence = n_synthetic / (n_real + n_synthetic) if n_real + n_synthetic else math.nan
    mix = RepeatMix(repeats, repeat_synthetic, prevalence) if repeats else None
    facts = [f"{len(sessions)} stored order{'s' if len(sessions) != 1 else ''}, {len(positions)} first showings."]
    if mix is not None:
        facts.append(
            f"{mix.synthetic} of {mix.repeats} hidden repeats are synthetic ({mix.share:.0%}); the study's "
            f"prevalence is {prevalence:.0%}."
        )
    return _channel("order", "Order", columns, truth, combine=False, facts=tuple(facts)), tuple(per_reader), mix


def treatment_audit(rows: list[tuple[str, dict, dict]]) -> TreatmentAudit:
    """Compare the classes' text cleanup (`provenance["cleanup"]`) and burned-in text left on the served images
    (`served_features["text_regions"]`), from (truth, served_features, provenance) rows."""
    by_class = {}
    for truth in ("real", "synthetic"):
        mine = [(features, provenance) for value, features, provenance in rows if value == truth]
        records = [provenance["cleanup"] for _, provenance in mine if provenance.get("cleanup")]
        counts = [features["text_regions"] for features, _ in mine if "text_regions" in features]
        by_class[truth] = ClassTreatment(
            cases=len(mine),
            cleanup_recorded=len(records),
            cleaned=sum(1 for record in records if record.get("changed")),
            text_checked=len(counts),
            with_text=sum(1 for count in counts if count > 0),
            inpainters=tuple(sorted({record.get("inpainter", "") for record in records if record.get("changed")})),
        )
    real, synthetic = by_class["real"], by_class["synthetic"]
    warnings, notes = [], []
    if real.cases and synthetic.cases:
        if max(real.cleanup_share, synthetic.cleanup_share) > 0 and (
            _gap_reaches(real.cleanup_share, synthetic.cleanup_share, TREATED_SHARE_GAP)
        ):
            more, fewer = (
                ("synthetic", "real") if synthetic.cleanup_share > real.cleanup_share else ("real", "synthetic")
            )
            warnings.append(
                f"Text cleanup was applied to {_share(by_class[more].cleanup_recorded, by_class[more].cases)} {more} "
                f"cases but to {_share(by_class[fewer].cleanup_recorded, by_class[fewer].cases)} {fewer} cases. "
                f"The classes were not treated alike: run the same cleanup on the {fewer} cases and accept it "
                "there too (images it leaves unchanged count as treated)."
            )
        if real.inpainters and synthetic.inpainters and real.inpainters != synthetic.inpainters:
            warnings.append(
                f"Cleaned real cases were filled with {' and '.join(real.inpainters)}, cleaned synthetic cases with "
                f"{' and '.join(synthetic.inpainters)}: the filled areas may look different by class. Clean both "
                "classes with the same settings."
            )
        if min(real.text_checked, synthetic.text_checked) >= MIN_TEXT_CHECKED and (
            _gap_reaches(real.text_share, synthetic.text_share, TEXT_SHARE_GAP)
        ):
            more, fewer = ("synthetic", "real") if synthetic.text_share > real.text_share else ("real", "synthetic")
            warnings.append(
                f"Burned-in text is still found on {_share(by_class[more].with_text, by_class[more].text_checked)} "
                f"{more} cases but on {_share(by_class[fewer].with_text, by_class[fewer].text_checked)} {fewer} "
                f"cases: readers can use it as a giveaway. Clean the text from the {more} cases (or from both)."
            )
        checked = real.text_checked + synthetic.text_checked
        if 0 < checked < real.cases + synthetic.cases:
            notes.append(
                f"Text was counted on {real.text_checked} of {real.cases} real and {synthetic.text_checked} of "
                f"{synthetic.cases} synthetic served images; check the rest so the classes can be compared."
            )
    return TreatmentAudit(real=real, synthetic=synthetic, warnings=tuple(warnings), notes=tuple(notes))


def _gap_reaches(first: float, second: float, gap: float) -> bool:
    # 18/20 and 20/20 differ by exactly a tenth, which floating point makes 0.0999...
    return abs(first - second) >= gap - 1e-9


def _share(count: int, total: int) -> str:
    return f"{count} of {total} ({round(100 * count / total) if total else 0}%)"


# --- The gate at "Open for reading" ------------------------------------------------------------------------------

MIN_REASON_LENGTH = 10


def study_open_check(*, study: Study) -> StudyAudit:
    """The audit the gate judges, measured now (the serving path probed, not a cached copy)."""
    return _study_blinding_audit(study, probe_http=True)


def audit_snapshot(audit: StudyAudit) -> dict:
    """The audit's figures as plain JSON, stored with a study's opening and printed in its reports."""
    return {
        "n_real": audit.n_real,
        "n_synthetic": audit.n_synthetic,
        "class_ratio": audit.class_ratio,
        "flags": list(audit.flags),
        "channels": [
            {
                "key": channel.key,
                "title": channel.title,
                "flagged": channel.flagged,
                "facts": list(channel.facts),
                "missing": channel.missing,
                "features": [_separation_dict(row) for row in (channel.audit.features if channel.audit else ())],
                "combined": _separation_dict(channel.audit.combined)
                if channel.audit and channel.audit.combined
                else None,
            }
            for channel in audit.channels
        ],
        "reader_positions": [
            {"reader": row.reader, **_separation_dict(row.separation)} for row in audit.reader_positions
        ],
        "repeat_mix": None
        if audit.repeat_mix is None
        else {
            "repeats": audit.repeat_mix.repeats,
            "synthetic": audit.repeat_mix.synthetic,
            "prevalence": audit.repeat_mix.prevalence,
        },
        "treatment_warnings": list(audit.treatment.warnings) if audit.treatment else [],
    }


def _separation_dict(row: FeatureSeparation) -> dict:
    return {
        "feature": row.feature,
        "label": FEATURE_LABELS.get(row.feature, row.feature),
        "auc": _finite(row.auc),
        "ci": [_finite(row.ci_lower), _finite(row.ci_upper)],
        "real_median": _finite(row.real_median),
        "synthetic_median": _finite(row.synthetic_median),
        "flagged": row.separates,
        "n": row.n,
    }


def _finite(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def study_opening_record(*, study: Study) -> dict | None:
    """The latest opening of a study for reading, as printed under "Blinding at opening" (None if never opened)."""
    opening = study.openings.select_related("opened_by").first()
    if opening is None:
        return None
    audit = opening.audit
    return {
        "opened_at": opening.opened_at.isoformat(),
        "opened_at_text": f"{opening.opened_at:%Y-%m-%d %H:%M} UTC",
        "opened_by": opening.opened_by.get_username(),
        "needed_acknowledgement": opening.needed_acknowledgement,
        "reason": opening.reason,
        "n_real": audit.get("n_real"),
        "n_synthetic": audit.get("n_synthetic"),
        "flags": audit.get("flags", []),
        "channels": [
            {
                "key": channel["key"],
                "title": channel["title"],
                "flagged": channel["flagged"],
                "most_telling": channel["features"][0] if channel["features"] else None,
                "missing": channel["missing"],
            }
            for channel in audit.get("channels", [])
        ],
        "times_opened": study.openings.count(),
    }


def opening_lines(record: dict) -> list[str]:
    """The opening record in plain sentences (the PDF and the printable page)."""
    lines = [
        f"Opened for reading on {record['opened_at_text']} by {record['opened_by']}, with "
        f"{record['n_real']} real and {record['n_synthetic']} synthetic analysed cases."
    ]
    if record["needed_acknowledgement"]:
        lines.append("The blinding audit flagged, and the coordinator acknowledged:")
        lines += [f"  - {flag}" for flag in record["flags"]]
        lines.append(f"Reason given: {record['reason']}")
    else:
        lines.append("The blinding audit flagged nothing at opening.")
    for channel in record["channels"]:
        row = channel["most_telling"]
        if row is None:
            lines.append(f"{channel['title']}: {channel['missing'] or 'nothing measured'}")
            continue
        auc = "–" if row["auc"] is None else f"{row['auc']:.2f}"
        ci = row["ci"]
        interval = "" if None in ci else f" (95% CI {ci[0]:.2f}-{ci[1]:.2f})"
        verdict = "flagged" if channel["flagged"] else "clean"
        if channel["key"] == "sources":
            verdict = "differs (never served)" if channel["flagged"] else "alike"
        lines.append(f"{channel['title']}: {verdict}; most telling: {row['label']}, AUC {auc}{interval}")
    return lines

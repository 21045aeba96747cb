"""Training dataset import: examples from a folder and its manifest, one report line per row, patient-level splits,
images padded (never flipped) and stored as 16-bit PNGs, and nothing broken left behind."""

from __future__ import annotations

import io
import json
import random
import shutil
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError
from PIL import Image

from imaging.read import sha256_hex
from tests.conftest import png_bytes
from tests.imaging.builders import cxr_file
from training.datasets import dataset_import
from training.models import TrainingDataset, TrainingExample
from training.prompts import DEFAULT_TEMPLATE, ROENTGEN_TEMPLATE
from training.splits import SPLITS, assign_splits, check_split_fractions

pytestmark = pytest.mark.django_db


def words(text: str) -> list[str]:
    """A stand-in tokenizer: one token per word (the start and end tokens are added by fit_prompt)."""
    return text.split()


@pytest.fixture
def coordinator(django_user_model):
    return django_user_model.objects.create_user(username="coordinator", password="pw")


@pytest.fixture
def folder(tmp_path: Path, settings) -> Path:
    settings.IMPORT_ROOTS = [tmp_path.resolve()]
    settings.MEDIA_ROOT = tmp_path / "media"  # per test, so that files left behind would be seen
    dataset_folder = tmp_path / "dataset"
    dataset_folder.mkdir()
    return dataset_folder


def write_csv(folder: Path, header: str, *rows: str) -> None:
    (folder / "manifest.csv").write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")


def write_pngs(folder: Path, count: int, *, first_seed: int = 0) -> list[str]:
    names = []
    for index in range(count):
        name = f"img{index:02d}.png"
        (folder / name).write_bytes(png_bytes(first_seed + index, size=(24, 16)))
        names.append(name)
    return names


def run_import(coordinator, folder: Path, **options):
    options.setdefault("tokenizer", words)
    options.setdefault("template", "{impression}")
    return dataset_import(created_by=coordinator, name="CXR LoRA set", folder=folder, **options)


def stored_files(dataset_id: int, settings) -> list[Path]:
    return sorted((Path(settings.MEDIA_ROOT) / "training" / f"dataset-{dataset_id}").glob("*"))


def stored_pixels(example: TrainingExample) -> np.ndarray:
    with example.image.open("rb") as handle, Image.open(io.BytesIO(handle.read())) as image:
        assert image.mode.startswith("I")  # 16-bit grayscale
        return np.asarray(image).astype(np.int64)


# --- A dataset from a folder --------------------------------------------------------------------------------------


def test_a_folder_with_a_csv_manifest_becomes_a_dataset(coordinator, folder: Path, settings) -> None:
    names = write_pngs(folder, 6)
    write_csv(
        folder,
        "image,report,patient_id,view,sex,age,site",
        *(
            f'{name},"FINDINGS: Clear.\nIMPRESSION: Finding {index}.\nRECOMMENDATION(S): none",'
            f"p{index // 2},PA,female,{50 + index},north"
            for index, name in enumerate(names)
        ),
    )

    result = run_import(coordinator, folder, template=DEFAULT_TEMPLATE, split_fractions=(0.5, 0.5, 0.0))

    dataset = result.dataset
    assert dataset is not None and result.refusal == ""
    assert (dataset.example_count, dataset.refused_row_count, dataset.truncated_prompt_count) == (6, 0, 0)
    assert (dataset.train_count, dataset.validation_count, dataset.test_count) == (4, 2, 0)
    assert dataset.folder == str(folder.resolve()) and dataset.manifest == "manifest.csv"
    assert dataset.template == "view_position = {view}. {impression}"
    assert dataset.settings["split_by"] == "patient" and dataset.settings["split_fractions"] == [0.5, 0.5, 0.0]
    assert dataset.settings["prompt_source"] == "template" and dataset.settings["max_tokens"] == 77
    assert len(dataset.dataset_hash) == 64
    assert result.summary() == "6 imported (4 train, 2 validation, 0 test)."
    # Each row's quoted report spans three lines: rows are named by their first line.
    assert [line.split(" (")[0] for line in result.lines()] == [
        f"line {2 + 3 * index}: imported '{name}'" for index, name in enumerate(names)
    ]
    assert [entry["text"] for entry in dataset.import_report] == result.lines()

    example = dataset.examples.get(manifest_line=5)
    assert example.source_path == "img01.png" and example.image_sha256 == sha256_hex(
        (folder / "img01.png").read_bytes()
    )
    assert example.prompt == "view_position = PA. Finding 1." and example.impression == "Finding 1."
    assert example.prompt_tokens == 5 + 2 and not example.truncated and example.dropped_tokens == 0
    assert (example.patient_id, example.view, example.sex, example.age) == ("p0", "PA", "female", "51")
    assert example.extra == {"site": "north"} and example.report.startswith("FINDINGS: Clear.")
    assert (example.width, example.height, example.source_format, example.weight) == (24, 16, "png", 1.0)
    assert example.image.name.startswith(f"training/dataset-{dataset.pk}/") and "img01" not in example.image.name
    assert example.stored_sha256 == sha256_hex(example.image.read())
    assert stored_pixels(example).shape == (24, 24)
    assert len(stored_files(dataset.pk, settings)) == 6


def test_padding_keeps_a_left_marker_on_the_left_and_never_flips(coordinator, folder: Path) -> None:
    landscape = np.full((20, 40), 60, dtype=np.uint8)
    landscape[5:15, 0:6] = 255  # a bright "L" marker block at the left edge
    portrait = np.full((40, 20), 60, dtype=np.uint8)
    portrait[2:8, 0:4] = 255
    for name, pixels in (("landscape.png", landscape), ("portrait.png", portrait)):
        Image.fromarray(pixels).save(folder / name)
    write_csv(folder, "image,report,view", "landscape.png,Normal.,PA", "portrait.png,Normal.,AP")

    result = run_import(coordinator, folder)

    wide = stored_pixels(result.dataset.examples.get(source_path="landscape.png"))
    # 40 x 20 centred in 40 x 40: 10 black rows above and below, the block still at columns 0..5.
    assert wide.shape == (40, 40)
    assert (wide[:10] == 0).all() and (wide[30:] == 0).all()
    assert (wide[15:25, 0:6] == 65535).all() and (wide[10:30, 34:40] == 60 * 257).all()
    tall = stored_pixels(result.dataset.examples.get(source_path="portrait.png"))
    # 20 x 40 centred in 40 x 40: 10 black columns either side; the block starts at column 10, not 26.
    assert (tall[:, :10] == 0).all() and (tall[:, 30:] == 0).all()
    assert (tall[2:8, 10:14] == 65535).all() and (tall[2:8, 26:30] == 60 * 257).all()


def test_dicom_files_with_a_report_column_import(coordinator, folder: Path) -> None:
    for name in (
        "nih_google_DX_00000002_000.dcm",
        "rsna_pneumonia_CR_1.2.276.0.7230010.3.1.4.8323329.6904.1517875201.850819.dcm",
    ):
        shutil.copy(cxr_file("dicom", name), folder / name)
    write_csv(
        folder,
        "image,report,view",
        'nih_google_DX_00000002_000.dcm,"IMPRESSION: No acute cardiopulmonary process.",PA',
        "rsna_pneumonia_CR_1.2.276.0.7230010.3.1.4.8323329.6904.1517875201.850819.dcm,"
        '"FINDINGS: Patchy opacity in the right lower lobe.",AP',
    )

    result = run_import(coordinator, folder, template=DEFAULT_TEMPLATE)

    assert result.refused == [] and result.dataset.example_count == 2
    examples = list(result.dataset.examples.order_by("manifest_line"))
    assert [example.source_format for example in examples] == ["dicom", "dicom"]
    assert [example.prompt for example in examples] == [
        "view_position = PA. No acute cardiopulmonary process.",
        "view_position = AP. Patchy opacity in the right lower lobe.",
    ]
    assert stored_pixels(examples[0]).shape == (1024, 1024)
    assert any("DICOM" in note for note in examples[0].import_notes)


def test_a_jsonl_manifest_with_prompts_uses_them_as_written(coordinator, folder: Path) -> None:
    names = write_pngs(folder, 2)
    lines = [
        {"image": names[0], "prompt": "view_position = PA.  Small left effusion.", "age": 70},
        {"image": names[1], "prompt": "view_position = AP. Normal.", "age": 33},
    ]
    (folder / "manifest.jsonl").write_text("\n".join(json.dumps(line) for line in lines), encoding="utf-8")

    result = run_import(coordinator, folder, template=ROENTGEN_TEMPLATE)

    dataset = result.dataset
    assert dataset.manifest == "manifest.jsonl" and dataset.template == ""
    assert dataset.settings["prompt_source"] == "prompt column" and dataset.settings["split_by"] == "image"
    assert sorted(dataset.examples.values_list("prompt", flat=True)) == [
        "view_position = AP. Normal.",
        "view_position = PA. Small left effusion.",
    ]
    assert sorted(dataset.examples.values_list("age", flat=True)) == ["33", "70"]


def test_the_roentgen_template_refuses_a_row_without_an_age(coordinator, folder: Path) -> None:
    names = write_pngs(folder, 2)
    write_csv(folder, "image,report,sex,age", f"{names[0]},Normal.,male,45", f"{names[1]},Normal.,female,")

    result = run_import(coordinator, folder, template=ROENTGEN_TEMPLATE)

    assert result.dataset.examples.get().prompt == "45 year old male. Normal."
    assert [str(row) for row in result.refused] == ["line 3: no value for {age}, which the template uses"]
    assert result.dataset.refused_row_count == 1


def test_long_prompts_are_truncated_and_every_truncation_is_counted(coordinator, folder: Path) -> None:
    names = write_pngs(folder, 3)
    long_report = "IMPRESSION: " + " ".join(f"word{index}" for index in range(90))
    write_csv(
        folder,
        "image,report,view",
        f"{names[0]},{long_report},PA",
        f"{names[1]},Normal.,PA",
        f"{names[2]},{long_report},AP",
    )

    result = run_import(coordinator, folder, template=DEFAULT_TEMPLATE)

    dataset = result.dataset
    assert dataset.truncated_prompt_count == 2
    truncated = dataset.examples.filter(truncated=True).order_by("manifest_line")
    assert [example.manifest_line for example in truncated] == [2, 4]
    # "view_position = PA." is 3 words; 75 words fit beside the start and end tokens, so 72 of the 90 are kept.
    assert all(example.prompt_tokens == 77 and example.dropped_tokens == 18 for example in truncated)
    assert truncated[0].prompt.endswith("word71")
    assert [str(row).split("; ")[1] for row in result.truncated] == ["prompt truncated, 18 tokens dropped"] * 2
    assert result.summary().endswith("2 prompts truncated to fit the text encoder.")


# --- Refused rows and refused datasets ---------------------------------------------------------------------------


def test_bad_rows_get_a_line_each_and_leave_nothing_behind(coordinator, folder: Path, tmp_path: Path, settings) -> None:
    names = write_pngs(folder, 3)
    shutil.copy(folder / names[0], folder / "copy-of-first.png")
    (folder / "notes.png").write_text("this is not an image", encoding="utf-8")
    (folder / "truncated.png").write_bytes(png_bytes(50, size=(24, 16))[:60])
    (tmp_path / "outside.png").write_bytes(png_bytes(60, size=(24, 16)))
    (folder / "link.png").symlink_to(tmp_path / "outside.png")
    write_csv(
        folder,
        "image,report",
        f"{names[0]},Normal.",  # line 2
        "missing.png,Normal.",
        f"{names[1]},",
        f"{names[0]},Normal.",
        "copy-of-first.png,Normal.",
        "notes.png,Normal.",
        "truncated.png,Normal.",
        "../outside.png,Normal.",
        "link.png,Normal.",
        f"{names[2]},Normal.,extra",
        f"{names[2]},Normal.",  # line 12
    )

    result = run_import(coordinator, folder)

    assert result.lines() == [
        "line 2: imported 'img00.png' (train)",
        "line 3: image 'missing.png' does not exist",
        "line 4: the report is empty",
        "line 5: image 'img00.png' is already on line 2",
        "line 6: image 'copy-of-first.png' has the same content as 'img00.png' on line 2",
        "line 7: image 'notes.png' cannot be read: The file is text, not a PNG, JPEG or DICOM image.",
        "line 8: image 'truncated.png' cannot be read: The PNG file is truncated: its image data ends early (the "
        "file is 60 bytes).",
        "line 9: image '../outside.png' is outside the folder",
        "line 10: image 'link.png' leads outside the folder through a symbolic link",
        "line 11: the row has 3 values but the header has 2 columns",
        f"line 12: imported 'img02.png' ({result.imported[1].split})",
    ]
    dataset = result.dataset
    assert dataset.example_count == 2 and dataset.refused_row_count == 9
    assert sorted(dataset.examples.values_list("source_path", flat=True)) == ["img00.png", "img02.png"]
    assert len(stored_files(dataset.pk, settings)) == 2
    assert [entry["status"] for entry in dataset.import_report].count("refused") == 9


def test_a_row_whose_database_write_fails_leaves_no_file_and_no_row(
    coordinator, folder: Path, settings, monkeypatch
) -> None:
    names = write_pngs(folder, 3)
    write_csv(folder, "image,report", *(f"{name},Normal." for name in names))
    save = TrainingExample.save

    def failing_save(self, *args, **kwargs):
        if self.source_path == names[1]:
            raise IntegrityError("simulated")
        return save(self, *args, **kwargs)

    monkeypatch.setattr(TrainingExample, "save", failing_save)

    result = run_import(coordinator, folder)

    assert [str(row) for row in result.refused] == ["line 3: image 'img01.png' is already in the dataset"]
    assert sorted(result.dataset.examples.values_list("source_path", flat=True)) == [names[0], names[2]]
    assert len(stored_files(result.dataset.pk, settings)) == 2


def test_a_dataset_where_nothing_imports_is_refused_whole(coordinator, folder: Path, settings) -> None:
    (folder / "notes.png").write_text("not an image", encoding="utf-8")
    write_csv(folder, "image,report", "notes.png,Normal.", "missing.png,Normal.")

    result = run_import(coordinator, folder)

    assert result.dataset is None
    assert result.refusal == "Nothing in manifest.csv could be imported: all 2 rows were refused (see each line)."
    assert result.lines() == [
        "line 2: image 'notes.png' cannot be read: The file is text, not a PNG, JPEG or DICOM image.",
        "line 3: image 'missing.png' does not exist",
    ]
    assert not TrainingDataset.objects.exists() and not TrainingExample.objects.exists()
    assert not list((Path(settings.MEDIA_ROOT) / "training").glob("dataset-*/*"))
    write_csv(folder, "image,report", "missing.png,Normal.")  # refused before any image is decoded
    assert run_import(coordinator, folder).refusal == (
        "Nothing in manifest.csv could be imported: its one row was refused (see each line)."
    )


def test_a_failure_midway_rolls_the_whole_dataset_back_with_its_files(
    coordinator, folder: Path, settings, monkeypatch
) -> None:
    names = write_pngs(folder, 3)
    write_csv(folder, "image,report", *(f"{name},Normal." for name in names))

    def broken_bulk_update(*args, **kwargs):
        raise RuntimeError("database went away")

    monkeypatch.setattr(TrainingExample.objects, "bulk_update", broken_bulk_update)

    with pytest.raises(RuntimeError, match="database went away"):
        run_import(coordinator, folder)

    assert not TrainingDataset.objects.exists()
    assert not list((Path(settings.MEDIA_ROOT) / "training").glob("dataset-*/*"))


@pytest.mark.parametrize(
    ("header", "template", "refusal"),
    [
        (
            "file,report",
            None,
            "manifest.csv has no 'image' column (paths relative to the folder); its columns are 'file', 'report'.",
        ),
        (
            "image,report,view",
            "{age} year old {sex}. {impression}",
            "The template uses {age}, {sex}, which are not columns of the manifest; the fields available are: "
            "{impression}, {report}, {view}.",
        ),
    ],
    ids=["missing-column", "unknown-field"],
)
def test_an_unusable_manifest_or_template_refuses_the_dataset(
    coordinator, folder: Path, header: str, template: str | None, refusal: str
) -> None:
    names = write_pngs(folder, 1)
    write_csv(folder, header, f"{names[0]},Normal.,PA" if "view" in header else f"{names[0]},Normal.")

    result = run_import(coordinator, folder, **({"template": template} if template else {}))

    assert (result.dataset, result.refusal, result.rows) == (None, refusal, ())
    assert not TrainingDataset.objects.exists()


def test_the_folder_must_be_inside_an_import_root(coordinator, folder: Path, settings, tmp_path: Path) -> None:
    write_pngs(folder, 1)
    write_csv(folder, "image,report", "img00.png,Normal.")
    settings.IMPORT_ROOTS = [(tmp_path / "elsewhere").resolve()]

    result = run_import(coordinator, folder)

    assert result.dataset is None and result.refusal.startswith("The folder must be inside an allowed import root")
    settings.IMPORT_ROOTS = []
    assert run_import(coordinator, folder).refusal == (
        "Importing from server folders is switched off (set IMPORT_ROOTS)."
    )


@pytest.mark.parametrize("fractions", [(0.8, 0.1), (0.8, 0.3, 0.1), (0.0, 0.5, 0.5), (1.2, -0.1, -0.1)])
def test_split_fractions_are_checked(coordinator, folder: Path, fractions) -> None:
    with pytest.raises(ValidationError):
        run_import(coordinator, folder, split_fractions=fractions)


# --- Splits -------------------------------------------------------------------------------------------------------


def test_no_patient_is_in_two_splits_and_the_import_is_reproducible(coordinator, folder: Path) -> None:
    names = write_pngs(folder, 10)
    patients = ["a", "a", "a", "b", "c", "c", "d", "e", "", ""]
    rows = [
        f"{name},Normal {index}.,{patient}" for index, (name, patient) in enumerate(zip(names, patients, strict=True))
    ]
    write_csv(folder, "image,report,patient_id", *rows)

    first = run_import(coordinator, folder, split_fractions=(0.6, 0.2, 0.2), seed=3)
    second = run_import(coordinator, folder, split_fractions=(0.6, 0.2, 0.2), seed=3)

    splits_by_patient = defaultdict(set)
    for example in first.dataset.examples.all():
        if example.patient_id:
            splits_by_patient[example.patient_id].add(example.split)
    assert all(len(splits) == 1 for splits in splits_by_patient.values())
    assert first.dataset.dataset_hash == second.dataset.dataset_hash
    assert sorted(first.dataset.examples.values_list("image_sha256", "split")) == sorted(
        second.dataset.examples.values_list("image_sha256", "split")
    )
    counts = (first.dataset.train_count, first.dataset.validation_count, first.dataset.test_count)
    assert counts == (6, 2, 2)  # targets 6 / 2 / 2 are reachable with these patients


def test_assign_splits_sizes_follow_the_fractions_for_single_images() -> None:
    splits = assign_splits([f"image:{index}" for index in range(100)], (0.8, 0.1, 0.1), seed=1)

    assert Counter(splits) == {"train": 80, "validation": 10, "test": 10}
    assert assign_splits([f"image:{index}" for index in range(10)], (0.8, 0.1, 0.1)).count("test") == 1


@pytest.mark.parametrize("seed", range(12))
def test_patient_splits_property(seed: int) -> None:
    """For random patients with 1-6 images each: every patient in one split, each split's size within the
    grouping's reach of its target, and the same seed always giving the same split whatever the order."""
    rng = random.Random(1000 + seed)
    patients = [f"p{index}" for index in range(rng.randint(20, 60))]
    groups = [patient for patient in patients for _ in range(rng.randint(1, 6))]
    rng.shuffle(groups)
    fractions = (0.7, 0.15, 0.15)

    splits = assign_splits(groups, fractions, seed=seed)

    by_patient = defaultdict(set)
    for patient, split in zip(groups, splits, strict=True):
        by_patient[patient].add(split)
    assert all(len(assigned) == 1 for assigned in by_patient.values())
    largest = max(Counter(groups).values())
    for split, fraction in zip(SPLITS, fractions, strict=True):
        target = fraction * len(groups)
        # A split is only dealt a patient while below its target, so it overshoots by less than one patient;
        # with three splits the shortfall is under two patients.
        assert target - 2 * largest < splits.count(split) < target + largest
    assert splits == assign_splits(groups, fractions, seed=seed)
    order = list(range(len(groups)))
    rng.shuffle(order)
    reordered = assign_splits([groups[index] for index in order], fractions, seed=seed)
    assert [reordered[order.index(index)] for index in range(len(groups))] == splits


def test_different_seeds_give_different_patient_assignments() -> None:
    groups = [f"p{index // 2}" for index in range(80)]

    assignments = {tuple(assign_splits(groups, seed=seed)) for seed in range(5)}

    assert len(assignments) == 5
    assert all(Counter(assignment) == {"train": 64, "validation": 8, "test": 8} for assignment in assignments)


def test_check_split_fractions() -> None:
    assert check_split_fractions([0.8, 0.1, 0.1]) == (0.8, 0.1, 0.1)
    assert check_split_fractions((1, 0, 0)) == (1.0, 0.0, 0.0)
    for bad in [(0.5, 0.5), (0.5, 0.2, 0.2), (0, 0.5, 0.5), (float("nan"), 0.5, 0.5)]:
        with pytest.raises(ValueError):
            check_split_fractions(bad)

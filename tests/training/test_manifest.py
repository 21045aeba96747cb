"""Reading training manifests: CSV and JSONL, rows with their line numbers, and one clear line per refused row."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import png_bytes
from training.manifest import ManifestError, find_manifest, read_manifest

HEADER = "image,report,patient_id,view,sex,age"


def write_images(folder: Path, *names: str) -> None:
    for seed, name in enumerate(names):
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(png_bytes(seed, size=(16, 12)))


def write_csv(folder: Path, *lines: str, name: str = "manifest.csv") -> Path:
    path = folder / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def problem_lines(folder: Path) -> list[str]:
    return [str(problem) for problem in read_manifest(folder).problems]


def test_a_csv_manifest_gives_rows_with_line_numbers_and_every_column(tmp_path: Path) -> None:
    write_images(tmp_path, "a.png", "sub/b.png")
    write_csv(
        tmp_path,
        "Image, Report ,Patient_ID,view,sex,age,site",
        "a.png,IMPRESSION: Normal.,p1,PA,female,54,north",
        "sub/b.png,Lungs clear.,p2,AP,male,61,south",
    )

    manifest = read_manifest(tmp_path)

    assert manifest.format == "csv" and manifest.name == "manifest.csv" and manifest.text_column == "report"
    assert manifest.columns == ("image", "report", "patient_id", "view", "sex", "age", "site")
    assert [(row.line, row.image, row.path) for row in manifest.rows] == [
        (2, "a.png", tmp_path.resolve() / "a.png"),
        (3, "sub/b.png", tmp_path.resolve() / "sub" / "b.png"),
    ]
    first = manifest.rows[0]
    assert first.report == "IMPRESSION: Normal." and first.patient_id == "p1" and first.value("site") == "north"
    assert "image" not in first.values and len(first.sha256) == 64
    assert manifest.problems == ()


def test_a_quoted_multi_line_report_keeps_its_lines_and_the_row_is_named_by_its_first_line(tmp_path: Path) -> None:
    write_images(tmp_path, "a.png", "b.png")
    (tmp_path / "manifest.csv").write_bytes(
        (
            '\ufeffimage,report\r\na.png,"FINDINGS: clear, no effusion.\r\nIMPRESSION: Normal."\r\nb.png,Normal.\r\n'
        ).encode()
    )

    manifest = read_manifest(tmp_path)

    assert [row.line for row in manifest.rows] == [2, 4]
    assert manifest.rows[0].report == "FINDINGS: clear, no effusion.\r\nIMPRESSION: Normal."


def test_a_jsonl_manifest_works_and_numbers_become_text(tmp_path: Path) -> None:
    write_images(tmp_path, "a.png", "b.png")
    lines = [
        {"image": "a.png", "prompt": "view_position = PA. Normal.", "age": 54, "sex": None},
        {},
        {"image": "b.png", "prompt": "view_position = AP. Small effusion.", "patient_id": "p9"},
    ]
    (tmp_path / "manifest.jsonl").write_text(
        "\n".join(json.dumps(line) if line else "" for line in lines) + "\n", encoding="utf-8"
    )

    manifest = read_manifest(tmp_path)

    assert manifest.format == "jsonl" and manifest.text_column == "prompt"
    assert manifest.columns == ("image", "prompt", "age", "sex", "patient_id")
    assert [(row.line, row.image) for row in manifest.rows] == [(1, "a.png"), (3, "b.png")]
    assert manifest.rows[0].values == {"prompt": "view_position = PA. Normal.", "age": "54", "sex": ""}
    assert manifest.problems == ()


def test_bad_jsonl_lines_are_refused_one_line_each(tmp_path: Path) -> None:
    write_images(tmp_path, "a.png", "b.png")
    (tmp_path / "manifest.jsonl").write_text(
        '{"image": "a.png", "report": "Normal."}\n'
        '{"image": "b.png", "report": "Normal."\n'
        '["b.png", "Normal."]\n'
        '{"image": "b.png", "report": {"text": "Normal."}}\n',
        encoding="utf-8",
    )

    assert problem_lines(tmp_path) == [
        "line 2: the line is not valid JSON (Expecting ',' delimiter at column 39)",
        "line 3: the line is a JSON array, not an object",
        "line 4: the value of 'report' is a JSON object, not text or a number",
    ]
    assert [row.image for row in read_manifest(tmp_path).rows] == ["a.png"]


def test_each_bad_row_gets_one_clear_line_and_the_good_rows_stay(tmp_path: Path) -> None:
    write_images(tmp_path, "a.png", "b.png", "sub/c.png", "empty-report.png")
    shutil.copy(tmp_path / "a.png", tmp_path / "a-copy.png")
    (tmp_path / "folder.png").mkdir()
    write_csv(
        tmp_path,
        "image,report",
        "a.png,Normal.",  # line 2
        "missing.png,Normal.",
        "empty-report.png,  ",
        "./a.png,Normal.",  # line 5: the same path
        "a-copy.png,Normal.",  # the same content
        ",Normal.",
        "folder.png,Normal.",
        "b.png,Normal.,extra",
        "sub/c.png,Normal.",  # line 10
    )

    assert problem_lines(tmp_path) == [
        "line 3: image 'missing.png' does not exist",
        "line 4: the report is empty",
        "line 5: image './a.png' is already on line 2",
        "line 6: image 'a-copy.png' has the same content as 'a.png' on line 2",
        "line 7: the row has no image path",
        "line 8: image 'folder.png' is not a file",
        "line 9: the row has 3 values but the header has 2 columns",
    ]
    assert [(row.line, row.image) for row in read_manifest(tmp_path).rows] == [(2, "a.png"), (10, "sub/c.png")]


def test_paths_that_leave_the_folder_are_refused(tmp_path: Path) -> None:
    folder = tmp_path / "dataset"
    outside = tmp_path / "outside"
    write_images(folder, "a.png")
    write_images(outside, "secret.png", "linked/inside-a-linked-folder.png")
    (folder / "link.png").symlink_to(outside / "secret.png")
    (folder / "linked").symlink_to(outside / "linked", target_is_directory=True)
    (folder / "inner-link.png").symlink_to(folder / "a.png")
    write_csv(
        folder,
        "image,report",
        "../outside/secret.png,Normal.",
        "sub/../../outside/secret.png,Normal.",
        "link.png,Normal.",
        "linked/inside-a-linked-folder.png,Normal.",
        f"{outside / 'secret.png'},Normal.",
        "../outside/missing.png,Normal.",
        "a.png,Normal.",
        "inner-link.png,Normal.",  # a link inside the folder to a listed image: the same file
    )

    assert problem_lines(folder) == [
        "line 2: image '../outside/secret.png' is outside the folder",
        "line 3: image 'sub/../../outside/secret.png' is outside the folder",
        "line 4: image 'link.png' leads outside the folder through a symbolic link",
        "line 5: image 'linked/inside-a-linked-folder.png' leads outside the folder through a symbolic link",
        f"line 6: image '{outside / 'secret.png'}' is an absolute path; give it relative to the folder",
        "line 7: image '../outside/missing.png' is outside the folder",
        "line 9: image 'inner-link.png' is already on line 8",
    ]
    assert [row.image for row in read_manifest(folder).rows] == ["a.png"]


def test_a_prompt_column_is_required_to_be_filled_instead_of_the_report(tmp_path: Path) -> None:
    write_images(tmp_path, "a.png", "b.png")
    write_csv(tmp_path, "image,report,prompt", "a.png,,A prompt.", "b.png,A report.,")

    assert read_manifest(tmp_path).text_column == "prompt"
    assert problem_lines(tmp_path) == ["line 3: the prompt is empty"]


def test_files_over_the_size_limit_are_refused_unread(tmp_path: Path) -> None:
    write_images(tmp_path, "a.png")
    write_csv(tmp_path, "image,report", "a.png,Normal.")
    size = (tmp_path / "a.png").stat().st_size

    manifest = read_manifest(tmp_path, max_file_bytes=size - 1)

    assert [str(problem) for problem in manifest.problems] == [
        f"line 2: image 'a.png' is {size:,} bytes, more than the limit of {size - 1:,} bytes"
    ]


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root reads files whatever their mode")
def test_a_file_that_cannot_be_read_is_refused(tmp_path: Path) -> None:
    write_images(tmp_path, "a.png")
    write_csv(tmp_path, "image,report", "a.png,Normal.")
    (tmp_path / "a.png").chmod(0)
    try:
        assert problem_lines(tmp_path) == ["line 2: image 'a.png' cannot be read (Permission denied)"]
    finally:
        (tmp_path / "a.png").chmod(0o644)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "manifest.csv is empty."),
        ("image,report\n", "manifest.csv has no rows."),
        (
            "file,report\na.png,Normal.\n",
            "manifest.csv has no 'image' column (paths relative to the folder); its columns are 'file', 'report'.",
        ),
        (
            "image,findings\na.png,Normal.\n",
            "manifest.csv has neither a 'report' nor a 'prompt' column; its columns are 'image', 'findings'.",
        ),
        ("image,report,image\na.png,Normal.,a.png\n", "manifest.csv has the column(s) 'image' more than once."),
        ("image,,report\na.png,,Normal.\n", "manifest.csv has a column without a name in its header row."),
        (
            'image,report\na.png,Normal.\nb.png,"Normal." and more\n',
            "manifest.csv is not valid CSV at line 3 (',' expected after '\"').",
        ),
        ('image,report\na.png,"Normal.\n', "manifest.csv is not valid CSV at line 2 (unexpected end of data)."),
    ],
    ids=["empty", "no-rows", "no-image", "no-text", "repeated-column", "unnamed-column", "stray-quote", "open-quote"],
)
def test_an_unusable_csv_refuses_the_whole_manifest(tmp_path: Path, content: str, message: str) -> None:
    write_images(tmp_path, "a.png", "b.png")
    (tmp_path / "manifest.csv").write_text(content, encoding="utf-8")

    with pytest.raises(ManifestError) as refused:
        read_manifest(tmp_path)

    assert str(refused.value) == message


def test_a_manifest_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    (tmp_path / "manifest.csv").write_bytes("image,report\na.png,Épanchement.\n".encode("latin-1"))

    with pytest.raises(ManifestError, match=r"manifest.csv is not UTF-8 text \(invalid continuation byte"):
        read_manifest(tmp_path)


def test_finding_the_manifest(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match=r"There is no manifest\.csv or manifest\.jsonl in"):
        find_manifest(tmp_path)
    write_csv(tmp_path, "image,report")
    assert find_manifest(tmp_path) == tmp_path.resolve() / "manifest.csv"
    (tmp_path / "manifest.jsonl").write_text("", encoding="utf-8")
    with pytest.raises(ManifestError, match=r"has both manifest\.csv and manifest\.jsonl: name the one to use"):
        find_manifest(tmp_path)
    write_csv(tmp_path, "image,report", name="labels.csv")
    assert find_manifest(tmp_path, "labels.csv") == tmp_path.resolve() / "labels.csv"
    (tmp_path / "labels.txt").write_text("", encoding="utf-8")
    with pytest.raises(ManifestError, match=r"must be a \.csv or a \.jsonl file"):
        find_manifest(tmp_path, "labels.txt")
    sub = tmp_path / "sub"
    sub.mkdir()
    with pytest.raises(ManifestError, match="must be a file inside the folder"):
        find_manifest(sub, "../labels.csv")
    with pytest.raises(ManifestError, match="There is no folder"):
        find_manifest(tmp_path / "missing")

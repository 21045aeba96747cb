"""The command line, run as a subprocess the way people run it."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def run(*args):
    return subprocess.run(
        [sys.executable, "-m", "readerstudy.stats", *map(str, args)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.fixture(scope="module")
def vandyke_json(reference):
    result = run(reference / "vandyke_long.csv")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_json_layout(vandyke_json):
    assert list(vandyke_json) == [
        "schema",
        "alpha",
        "design",
        "binary",
        "roc",
        "mrmc",
        "generators",
        "agreement",
        "quality",
        "reading_time",
        "realism",
        "notes",
    ]
    assert vandyke_json["binary"] is None  # no calls in the Van Dyke data
    assert list(vandyke_json["mrmc"]) == ["auc", "accuracy", "sensitivity", "specificity"]


def test_json_has_the_iowa_numbers(vandyke_json):
    (auc,) = vandyke_json["mrmc"]["auc"]
    readers = [f["value"] for f in auc["reader_figures"] if f["modality"] == "0"]
    assert readers == pytest.approx([0.91964573, 0.85877617, 0.90386473, 0.97310789, 0.82979066], abs=5e-9)
    rrrc = auc["random_readers_random_cases"]
    assert rrrc["test"]["statistic"] == pytest.approx(4.456318693, abs=1e-9)
    assert rrrc["test"]["df_denominator"] == pytest.approx(15.2596746, abs=1e-7)
    assert rrrc["test"]["p_value"] == pytest.approx(0.0516656858, abs=1e-10)
    assert rrrc["differences"][0]["ci"] == pytest.approx({"lower": -0.0879594986, "upper": 0.0003588544}, abs=1e-10)
    assert rrrc["modalities"][0]["se"] == pytest.approx(0.0331735970, abs=1e-10)
    assert auc["fixed_readers_random_cases"]["test"]["statistic"] == pytest.approx(5.47595, abs=5e-6)
    assert auc["random_readers_fixed_cases"]["test"]["p_value"] == pytest.approx(0.0420, abs=5e-5)


def test_text_format_and_modality_order(reference):
    result = run(reference / "vandyke_long.csv", "--format", "text", "--modality-order", "1,0")
    assert result.returncode == 0, result.stderr
    assert "F(1, 15.2597) = 4.456319" in result.stdout
    assert "1 - 0: 0.04380032" in result.stdout


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("reader,modality,case,truth\nr1,m,c1,1\n", "line 1: missing column 'rating'"),
        ("reader,modality,case,truth,rating\nr1,m,c1,1,x\n", "line 2: rating 'x' is not a number"),
        ("", "line 1: empty file"),
    ],
)
def test_bad_input_exits_2_with_one_line_on_stderr(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    result = run(path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and message in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_file_exits_2(tmp_path):
    result = run(tmp_path / "absent.csv")
    assert result.returncode == 2 and "Traceback" not in result.stderr

"""Tests for the cardiac-mi command (cardiac_mi.cli), in-process and as the installed script."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cardiac_mi.cli import main
from lgemri.dicom import read_dicom_series
from lgemri.emidec import MANIFEST_FIELDS
from lgemri.volume import Volume, read_nifti, write_nifti

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SCRIPT = Path(sys.executable).parent / "cardiac-mi"


@pytest.fixture(autouse=True)
def _logging(restore_logging):
    """``cardiac-mi`` commands reconfigure logging; each test gets it back (tests/conftest.py)."""


def one_line_error(capsys, command: str) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"cardiac-mi {command}: error: "), err
    assert "Traceback" not in err
    return lines[0]


def emidec_image(phantom_dir: Path, cid: str) -> Path:
    return phantom_dir / "emidec" / cid / "Images" / f"{cid}.nii.gz"


def emidec_label(phantom_dir: Path, cid: str) -> Path:
    return phantom_dir / "emidec" / cid / "Contours" / f"{cid}.nii.gz"


# -- phantom ------------------------------------------------------------------------------------


def test_phantom_emidec_only(tmp_path, capsys):
    out = tmp_path / "phantom"
    assert main(["phantom", "--out", str(out), "--cases", "2", "--seed", "3", "--format", "emidec"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["emidec", "phantom.json"]
    assert sorted(p.name for p in (out / "emidec").iterdir()) == ["Case_P001", "Case_P002"]
    for cid in ("Case_P001", "Case_P002"):
        image = read_nifti(out / "emidec" / cid / "Images" / f"{cid}.nii.gz")
        label = read_nifti(out / "emidec" / cid / "Contours" / f"{cid}.nii.gz")
        assert image.shape == label.shape
    index = json.loads((out / "phantom.json").read_text())
    assert index["seed"] == 3
    assert [c["case_id"] for c in index["cases"]] == ["Case_P001", "Case_P002"]
    assert "Traceback" not in capsys.readouterr().err


def test_phantom_bad_arguments(tmp_path, capsys):
    assert main(["phantom", "--out", str(tmp_path / "a"), "--cases", "0"]) == 2
    assert "--cases" in one_line_error(capsys, "phantom")
    assert main(["phantom", "--out", str(tmp_path / "b"), "--cases", "1", "--format", "emidec,png"]) == 2
    assert "png" in one_line_error(capsys, "phantom")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


# -- convert ------------------------------------------------------------------------------------


def test_convert_round_trip(tmp_path, phantom_dir):
    dicom_dir = phantom_dir / "dicom" / "Case_P001"
    original = read_nifti(emidec_image(phantom_dir, "Case_P001"))

    nifti = tmp_path / "Case_P001.nii.gz"
    assert main(["-q", "convert", "--input", str(dicom_dir), "--out", str(nifti)]) == 0
    converted = read_nifti(nifti)
    assert np.array_equal(converted.array, original.array)
    assert np.abs(converted.affine - original.affine).max() < 1e-4

    back = tmp_path / "dicom_back"
    assert main(["-q", "convert", "--input", str(nifti), "--out", str(back), "--description", "round trip"]) == 0
    series = read_dicom_series(back)
    assert len(list(back.glob("*.dcm"))) == original.shape[2]
    assert np.array_equal(series.volume.array, original.array)
    assert np.abs(series.volume.affine - original.affine).max() < 1e-4
    assert series.patient_id == "Case_P001"
    assert series.series_description == "round trip"


def test_convert_dicom_needs_a_nifti_name(tmp_path, phantom_dir, capsys):
    out = tmp_path / "volume.png"
    assert main(["convert", "--input", str(phantom_dir / "dicom" / "Case_P001"), "--out", str(out)]) == 2
    assert ".nii.gz" in one_line_error(capsys, "convert")
    assert not out.exists()


# -- prepare ------------------------------------------------------------------------------------


def test_prepare_writes_a_manifest(tmp_path, phantom_dir):
    out = tmp_path / "prepared"
    argv = ["-q", "prepare", "--emidec", str(phantom_dir / "emidec"), "--out", str(out), "--split", "0.5,0.5,0"]
    assert main(argv) == 0
    with (out / "manifest.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == MANIFEST_FIELDS
    assert {r["case_id"] for r in rows} == {"Case_P001", "Case_P002", "Case_N003"}
    assert {r["split"] for r in rows} <= {"train", "val"}
    assert (out / "cases.json").is_file()
    assert len(list((out / "roi" / "labels").glob("*.npy"))) == len(rows)


def test_prepare_bad_split(tmp_path, phantom_dir, capsys):
    argv = ["prepare", "--emidec", str(phantom_dir / "emidec"), "--out", str(tmp_path / "o"), "--split", "1,2"]
    assert main(argv) == 2
    assert "split fractions" in one_line_error(capsys, "prepare")
    assert not (tmp_path / "o" / "manifest.csv").exists()


# -- preview ------------------------------------------------------------------------------------


def test_preview_writes_a_png(tmp_path, phantom_dir):
    import matplotlib.image

    out = tmp_path / "preview.png"
    argv = [
        "-q",
        "preview",
        "--image",
        str(emidec_image(phantom_dir, "Case_P001")),
        "--label",
        str(emidec_label(phantom_dir, "Case_P001")),
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    assert out.read_bytes()[:8] == PNG_SIGNATURE
    pixels = matplotlib.image.imread(out)
    assert pixels.ndim == 3 and pixels.shape[0] > 0 and pixels.shape[1] > 0


def test_preview_of_a_dicom_folder(tmp_path, phantom_dir):
    out = tmp_path / "dicom.png"
    assert main(["-q", "preview", "--image", str(phantom_dir / "dicom" / "Case_N003"), "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == PNG_SIGNATURE


def test_preview_label_of_another_shape(tmp_path, phantom_dir, capsys):
    out = tmp_path / "preview.png"
    argv = [
        "preview",
        "--image",
        str(emidec_image(phantom_dir, "Case_P001")),
        "--label",
        str(emidec_label(phantom_dir, "Case_P002")),
        "--out",
        str(out),
    ]
    assert main(argv) == 2
    assert "shape" in one_line_error(capsys, "preview")
    assert not out.exists()


# -- missing input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "args"),
    [
        ("prepare", ["--emidec", "{missing}", "--out", "{tmp}/out"]),
        ("convert", ["--input", "{missing}", "--out", "{tmp}/out.nii.gz"]),
        ("preview", ["--image", "{missing}", "--out", "{tmp}/out.png"]),
    ],
)
def test_missing_input_folder(tmp_path, capsys, command, args):
    missing = tmp_path / "no_such_folder"
    argv = [command] + [a.format(missing=missing, tmp=tmp_path) for a in args]
    assert main(argv) == 2
    assert str(missing) in one_line_error(capsys, command)


# -- the installed console script ---------------------------------------------------------------


def test_console_script(tmp_path):
    assert SCRIPT.is_file(), SCRIPT
    missing = tmp_path / "missing"
    result = subprocess.run(
        [str(SCRIPT), "prepare", "--emidec", str(missing), "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("cardiac-mi prepare: error:")
    assert str(missing) in lines[0]
    assert "Traceback" not in result.stderr

    result = subprocess.run([str(SCRIPT), "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0
    for command in ("phantom", "prepare", "convert", "preview"):
        assert command in result.stdout


def test_report_reads_the_slice_order_from_the_anatomy_unless_told(tmp_path):
    """An EMIDEC stack runs apex to base: slice 0 is apical unless --base-first says otherwise."""
    image = (
        Path(__file__).resolve().parent.parent / "sample-data" / "emidec" / "Case_P002" / "Images" / "Case_P002.nii.gz"
    )
    label = image.parents[1] / "Contours" / "Case_P002.nii.gz"
    volume = read_nifti(label)
    image_flipped, label_flipped = tmp_path / "image.nii.gz", tmp_path / "label.nii.gz"
    write_nifti(Volume(np.ascontiguousarray(read_nifti(image).array[:, :, ::-1]), volume.affine), image_flipped)
    write_nifti(Volume(np.ascontiguousarray(volume.array[:, :, ::-1]), volume.affine), label_flipped)
    orders = {}
    for name, img, lab, flags in (
        ("as stored", image, label, []),
        ("flipped", image_flipped, label_flipped, []),
        ("flipped, told", image_flipped, label_flipped, ["--base-first"]),
    ):
        assert (
            main(["-q", "report", "--image", str(img), "--label", str(lab), "--out", str(tmp_path / name), *flags]) == 0
        )
        q = json.loads((tmp_path / name / "report.json").read_text())["quantification"]
        orders[name] = (q["parameters"]["base_first"], q["parameters"]["slice_order_source"], q["infarcted_segments"])
    assert orders["as stored"][:2] == (True, "anatomy")
    assert orders["flipped"][:2] == (False, "anatomy")
    assert orders["flipped"][2] == orders["as stored"][2]  # the same segments, wherever slice 0 is
    assert orders["flipped, told"][:2] == (True, "given")

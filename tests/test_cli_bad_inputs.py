"""Issue 16, points 8 and 10 in the CLI: bad input exits 2 with one line, before any work starts.

Zero pixel spacing, zero orientation, a CT series and a device this machine lacks each end
``cardiac-mi convert`` / ``infer`` with status 2 and a single line naming the problem, no traceback.
"""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest

from cardiac_mi.cli import main
from cardiac_mi.ids import device_problem

ROOT = Path(__file__).resolve().parents[1]
SERIES_DIR = ROOT / "sample-data" / "dicom" / "Case_P001"


def edited_series(folder: Path, **values) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for path in sorted(SERIES_DIR.glob("*.dcm")):
        ds = pydicom.dcmread(path)
        for keyword, value in values.items():
            setattr(ds, keyword, value)
        ds.save_as(folder / path.name)
    return folder


def run_fails(argv: list[str], capsys) -> str:
    """Run the CLI; it must exit 2 with exactly one line on stderr; returns that line."""
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith(f"cardiac-mi {argv[0]}: error:")]
    assert code == 2, err
    assert len(errors) == 1 and "Traceback" not in "\n".join(err), err
    return errors[0]


@pytest.mark.parametrize(
    "values, keyword",
    [
        ({"PixelSpacing": [0, 0]}, "PixelSpacing"),
        ({"ImageOrientationPatient": [0, 0, 0, 0, 0, 0]}, "ImageOrientationPatient"),
    ],
    ids=["zero spacing", "zero orientation"],
)
@pytest.mark.parametrize("command", ["convert", "infer"])
def test_bad_geometry_exits_2(command, values, keyword, tmp_path, capsys, restore_logging):
    folder = edited_series(tmp_path / "series", **values)
    out = ["--out", str(tmp_path / "out.nii.gz")] if command == "convert" else ["--out", str(tmp_path / "out")]
    line = run_fails([command, "--input", str(folder), *out], capsys)
    assert keyword in line and "invalid geometry" in line
    assert not (tmp_path / "out.nii.gz").exists() and not list((tmp_path / "out").glob("*.json"))


def test_ct_series_refused_before_models_load(tmp_path, capsys, restore_logging):
    folder = edited_series(tmp_path / "ct", Modality="CT")
    # a models folder that does not exist: the modality is checked first
    line = run_fails(
        ["infer", "--input", str(folder), "--out", str(tmp_path / "out"), "--models", str(tmp_path / "no-models")],
        capsys,
    )
    assert "CT series" in line and "MR" in line


@pytest.mark.parametrize(
    "device, says", [("cuda:7", "not available"), ("tpu", "not a device"), ("cpu:1", "not a device")]
)
def test_unusable_device_exits_2(device, says, tmp_path, capsys, restore_logging):
    if device.startswith("cuda") and device_problem(device) is None:
        pytest.skip(f"this machine has {device}")
    line = run_fails(["infer", "--input", str(SERIES_DIR), "--out", str(tmp_path / "out"), "--device", device], capsys)
    assert "--device" in line and says in line and device in line
    assert not (tmp_path / "out").exists()


def test_device_problem():
    assert device_problem("cpu") is None and device_problem("cuda") is None and device_problem(" CUDA ") is None
    assert device_problem("cuda:1", gpus=2) is None
    assert "cuda:0 to cuda:1" in device_problem("cuda:2", gpus=2)
    assert "no CUDA GPU" in device_problem("cuda:0", gpus=0)
    assert "one GPU" in device_problem("cuda:3", gpus=1)
    for value in ("", "gpu", "cuda:", "cuda:-1", "cuda:x", 7, None, "cpu:0", "cuda:0;rm"):
        assert "not a device" in device_problem(value), value
    assert device_problem("x" * 10000, "device").startswith("device: 'xxxx") and len(device_problem("x" * 10000)) < 200

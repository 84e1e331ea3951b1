"""An ensemble of segmentation networks is one checkpoint whose output is the members' mean."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from lgemri.errors import InputError
from lgemri.inference import load_models, segment_volume
from lgemri.nets import build_network
from lgemri.nets.checkpoint import load_checkpoint, save_checkpoint
from lgemri.volume import read_nifti

ROOT = Path(__file__).resolve().parents[2]
SPEC = {
    "name": "resatt_unet",
    "kwargs": {"spatial_dims": 2, "in_channels": 1, "out_channels": 5, "channels": [4, 8, 16], "strides": [2, 2]},
}


def _publish_module():
    spec = importlib.util.spec_from_file_location("publish_models", ROOT / "experiments" / "publish_models.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_softmax_of_the_output_is_the_members_mean_probability():
    torch.manual_seed(0)
    net = build_network("ensemble", members=[SPEC, SPEC]).eval()
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        mean = torch.stack([torch.softmax(m(x), 1) for m in net.members]).mean(0)
        assert torch.allclose(torch.softmax(net(x), 1), mean, atol=1e-5)


def test_an_ensemble_needs_two_plain_members():
    with pytest.raises(InputError, match="at least two"):
        build_network("ensemble", members=[SPEC])
    with pytest.raises(InputError, match="cannot be an ensemble"):
        build_network("ensemble", members=[SPEC, {"name": "ensemble", "kwargs": {}}])


def _member(path: Path, seed: int, provenance: list[dict]) -> Path:
    torch.manual_seed(seed)
    net = build_network(SPEC["name"], **SPEC["kwargs"])
    return save_checkpoint(
        path,
        net,
        task="segmentation",
        network=SPEC,
        extra={"provenance": provenance, "config": {"seed": seed}, "epoch": seed, "metrics": {}},
    )


def test_published_ensemble_is_float16_on_disk_and_loads_as_the_members(tmp_path):
    a = _member(tmp_path / "a" / "best.pt", 1, [{"path": "data/real-prep", "origins": ["emidec-png"]}])
    b = _member(
        tmp_path / "b" / "best.pt",
        2,
        [{"path": "data/real-prep", "origins": ["emidec-png"]}, {"path": "data/phantom-prep", "origins": ["phantom"]}],
    )
    out = _publish_module().publish_ensemble([a, b], tmp_path / "segmentation.pt", False, min_infarct_ml=2.0)
    payload = torch.load(out, weights_only=True)
    assert all(v.dtype == torch.float16 for v in payload["state_dict"].values() if v.is_floating_point())
    assert payload["extra"]["provenance"] == [
        {"path": "data/real-prep", "origins": ["emidec-png"]},
        {"path": "data/phantom-prep", "origins": ["phantom"]},
    ]
    assert [m["published_from"] for m in payload["extra"]["members"]] == ["a", "b"]
    assert payload["extra"]["min_infarct_ml"] == 2.0

    model, meta = load_checkpoint(out, task="segmentation")
    assert meta["network"]["name"] == "ensemble"
    assert all(p.dtype == torch.float32 for p in model.parameters())
    members = [load_checkpoint(p, task="segmentation")[0] for p in (a, b)]
    x = torch.randn(1, 1, 32, 32)
    with torch.no_grad():
        mean = torch.stack([torch.softmax(m(x), 1) for m in members]).mean(0)
        assert torch.allclose(torch.softmax(model(x), 1), mean, atol=2e-3)  # float16 weights


def test_a_published_ensemble_grows_by_a_member(tmp_path):
    provenance = [{"path": "data/real-prep", "origins": ["emidec-png"]}]
    a, b, c = (_member(tmp_path / name / "best.pt", seed, provenance) for name, seed in (("a", 1), ("b", 2), ("c", 3)))
    publish = _publish_module().publish_ensemble
    pair = publish([a, b], tmp_path / "pair" / "segmentation.pt", False)
    out = publish([pair, c], tmp_path / "three" / "segmentation.pt", False, min_infarct_ml=3.0)
    payload = torch.load(out, weights_only=True)
    assert [m["published_from"] for m in payload["extra"]["members"]] == ["a", "b", "c"]
    assert [m["config"]["seed"] for m in payload["extra"]["members"]] == [1, 2, 3]
    assert payload["extra"]["published_from"] == "a+b+c"

    model, _ = load_checkpoint(out, task="segmentation")
    members = [load_checkpoint(p, task="segmentation")[0] for p in (a, b, c)]
    x = torch.randn(1, 1, 32, 32)
    with torch.no_grad():
        mean = torch.stack([torch.softmax(m(x), 1) for m in members]).mean(0)
        assert torch.allclose(torch.softmax(model(x), 1), mean, atol=2e-3)


def _shipped_member(folder: Path) -> Path:
    """The shipped segmentation network, or the first member when it ships as an ensemble."""
    _, payload = _publish_module().members_of(ROOT / "models" / "segmentation.pt")[0]
    payload["state_dict"] = {k: v.float() if v.is_floating_point() else v for k, v in payload["state_dict"].items()}
    path = folder / "member" / "segmentation.pt"
    path.parent.mkdir(parents=True)
    torch.save(payload, path)
    (path.parent / "localization.pt").write_bytes((ROOT / "models" / "localization.pt").read_bytes())
    return path


def test_the_cascade_runs_an_ensemble_of_the_shipped_network(tmp_path):
    member = _shipped_member(tmp_path)
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "localization.pt").write_bytes((ROOT / "models" / "localization.pt").read_bytes())
    _publish_module().publish_ensemble([member, member], folder / "segmentation.pt", False)
    image = read_nifti(ROOT / "sample-data" / "emidec" / "Case_P004" / "Images" / "Case_P004.nii.gz")
    single = segment_volume(image, load_models(member.parent)).label.array
    doubled = segment_volume(image, load_models(folder)).label.array
    assert (single > 0).sum() > 1000
    assert np.mean(single == doubled) > 0.999  # the same network twice: its own answer (float16 aside)

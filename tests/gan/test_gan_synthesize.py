"""Tests for gan.synthesize and gan.data's mask checks: simulator masks -> trainer-ready pairs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from gan.base_model import create_model
from gan.data import MaskFolder, check_mask
from gan.metrics import load_image_set
from gan.synthesize import synthesize
from lgemri.errors import InputError
from lgemri.training.data import RoiDataset, read_items
from simulator import SimulationConfig, simulate
from tests.helpers.gan import TINY


@pytest.fixture(scope="module")
def sim_dir(tmp_path_factory) -> Path:
    """Two simulated cases of 2D masks (simulator output: roi/labels + manifest.csv)."""
    out = tmp_path_factory.mktemp("sim")
    simulate(SimulationConfig(mode="synthetic", n=2, seed=3, slices=1, formats=("npy",)), out)
    return out


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    return create_model("pix2pix", TINY).save(tmp_path_factory.mktemp("ckpt") / "best.pt")


def test_synthesis_writes_what_the_trainer_reads(tmp_path, sim_dir, checkpoint):
    result = synthesize(sim_dir, tmp_path / "out", checkpoint, batch_size=1)
    out = Path(result["out"])
    names = sorted(p.stem for p in (sim_dir / "roi" / "labels").glob("*.npy"))
    assert result["count"] == len(names) == 2 and result["model"] == "pix2pix"
    for source in (out, out / "datalist.json"):
        items = read_items(source, "train")
        assert sorted(item.name for item in items) == names
        ds = RoiDataset(source, "train")
        x, y = ds[0]
        assert x.shape == (1, 128, 128) and y.shape == (128, 128)
        np.testing.assert_array_equal(y.numpy(), np.load(sim_dir / "roi" / "labels" / f"{ds.items[0].name}.npy"))
    image = np.load(out / "roi" / "images" / f"{names[0]}.npy")
    assert image.dtype == np.float32 and image.shape == (128, 128) and 0 <= image.min() <= image.max() <= 1
    loaded_names, loaded = load_image_set(out)  # generator outputs are scored as generated, not re-normalised
    np.testing.assert_allclose(loaded[loaded_names.index(names[0]), 0], image * 2 - 1, atol=1e-6)
    provenance = json.loads((out / "synthesize.json").read_text())
    assert provenance["model"] == "pix2pix" and len(provenance["checkpoint_sha256"]) == 64
    row = (out / "manifest.csv").read_text().splitlines()[1]
    assert row.startswith(names[0]) and ",Case_PSim" in row and ",train," in row
    with pytest.raises(InputError, match="already holds a manifest"):
        synthesize(sim_dir, out, checkpoint)
    again = synthesize(sim_dir, out, checkpoint, overwrite=True)
    assert again["count"] == 2
    np.testing.assert_array_equal(np.load(out / "roi" / "images" / f"{names[0]}.npy"), image)  # deterministic


def _masks_with(tmp_path: Path, array: np.ndarray, name: str = "bad.npy") -> Path:
    folder = tmp_path / "masks"
    folder.mkdir(exist_ok=True)
    good = np.zeros((128, 128), np.uint8)
    good[40:80, 40:80] = 2
    np.save(folder / "good.npy", good)
    np.save(folder / name, array)
    return folder


@pytest.mark.parametrize(
    "array, message",
    [
        (np.full((128, 128), 7, np.uint8), r"unknown label\(s\) \[7\]"),
        (np.full((128, 128), -1, np.int16), r"unknown label\(s\) \[-1\]"),
        (np.zeros((64, 64), np.uint8), r"shape \(64, 64\), expected 128 x 128"),
        (np.zeros((128, 128, 3), np.uint8), "shape"),
        (np.zeros((128, 128), np.float32), "dtype float32, expected an integer type"),
    ],
)
def test_bad_masks_are_named(tmp_path, checkpoint, array, message):
    folder = _masks_with(tmp_path, array)
    with pytest.raises(InputError, match=message) as info:
        synthesize(folder, tmp_path / "out", checkpoint)
    assert "bad.npy" in str(info.value)
    assert not (tmp_path / "out").exists()  # nothing generated before every mask is checked


def test_empty_or_missing_folders_and_checkpoints(tmp_path, sim_dir, checkpoint):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no .npy masks"):
        synthesize(tmp_path / "empty", tmp_path / "out", checkpoint)
    with pytest.raises(InputError, match="masks folder not found"):
        MaskFolder(tmp_path / "nowhere")
    with pytest.raises(InputError, match="checkpoint not found"):
        synthesize(sim_dir, tmp_path / "out", tmp_path / "none.pt")
    cyc = create_model("cyclegan", TINY).save(tmp_path / "cyc.pt")
    with pytest.raises(InputError, match="cine image"):
        synthesize(sim_dir, tmp_path / "out", cyc, images=tmp_path / "empty")
    with pytest.raises(InputError, match="unknown split"):
        synthesize(sim_dir, tmp_path / "out", checkpoint, split="holdout")
    (tmp_path / "notnpy").mkdir()
    (tmp_path / "notnpy" / "a.npy").write_bytes(b"garbage")
    with pytest.raises(InputError, match="not a readable .npy mask"):
        MaskFolder(tmp_path / "notnpy")


def test_cyclegan_synthesis_from_cine_images(tmp_path, cine_dir):
    torch.manual_seed(0)
    ckpt = create_model("cyclegan", TINY).save(tmp_path / "cyc.pt")
    masks = tmp_path / "masks"
    shutil.copytree(cine_dir / "roi" / "labels", masks)
    result = synthesize(masks, tmp_path / "out", ckpt, images=cine_dir, split="val")
    assert result["count"] == 10 and result["model"] == "cyclegan"
    assert len(read_items(tmp_path / "out" / "datalist.json", "val")) == 10


def test_synthesis_of_one_split_of_a_prepared_folder(tmp_path, lge_dir, checkpoint, sim_dir):
    result = synthesize(lge_dir, tmp_path / "val", checkpoint, masks_split="val", split="val")
    assert result["count"] == 4
    assert sorted(i.name for i in read_items(tmp_path / "val", "val")) == sorted(
        i.name for i in read_items(lge_dir, "val")
    )
    with pytest.raises(InputError, match="no mask in the 'test' split"):
        synthesize(lge_dir, tmp_path / "test", checkpoint, masks_split="test")
    with pytest.raises(InputError, match="split column"):
        MaskFolder(sim_dir, split="train")


def test_check_mask_accepts_emidec_labels():
    mask = np.arange(5, dtype=np.int64).repeat(128 * 128 // 5 + 1)[: 128 * 128].reshape(128, 128)
    out = check_mask(mask)
    assert out.dtype == np.uint8 and set(np.unique(out)) == {0, 1, 2, 3, 4}

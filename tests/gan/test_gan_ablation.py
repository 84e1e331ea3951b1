"""Tests of the ARD/MD ablation's dataset building (experiments/gan_ablation.py), not its training."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from gan.base_model import create_model
from lgemri.errors import InputError
from lgemri.training.data import RoiDataset, read_items
from tests.helpers.gan import TINY, write_prepared

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("gan_ablation", ROOT / "experiments" / "gan_ablation.py")
ablation = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("gan_ablation", ablation)  # dataclasses look their module up
_spec.loader.exec_module(ablation)


def _rows(case_slices: dict[str, tuple[str, int, str]]) -> list[dict]:
    """Manifest-like rows: {case_id: (split, number of slices, slice category)}."""
    return [
        {
            "name": f"{case}_s{k}",
            "case_id": case,
            "split": split,
            "slice": str(k),
            "slice_category": category,
            "image": f"/d/roi/images/{case}_s{k}.npy",
            "label": f"/d/roi/labels/{case}_s{k}.npy",
        }
        for case, (split, n, category) in case_slices.items()
        for k in range(n)
    ]


def test_real_pool_takes_whole_train_cases_stratified_and_nested():
    cases = {f"N{i}": ("train", 5, "normal") for i in range(8)}
    cases |= {f"I{i}": ("train", 5, "infarct") for i in range(4)}
    cases |= {f"R{i}": ("train", 5, "no_reflow") for i in range(8)}
    cases |= {f"V{i}": ("val", 5, "no_reflow") for i in range(3)}
    rows = _rows(cases)
    pool = ablation.select_real_pool(rows, 40, seed=3)
    assert len(pool) == 40 and {r["split"] for r in pool} == {"train"}
    by_case = {r["case_id"] for r in pool}
    assert all(sum(r["case_id"] == c for r in pool) == 5 for c in by_case)  # whole cases only
    assert ablation.category_counts(pool) == {"normal": 15, "infarct": 10, "no_reflow": 15}  # 40 % / 20 % / 40 %
    assert pool == ablation.select_real_pool(rows, 40, seed=3)
    assert ablation.select_real_pool(rows, 40, seed=4) != pool
    bigger = ablation.select_real_pool(rows, 80, seed=3)
    assert {r["name"] for r in pool} < {r["name"] for r in bigger}  # ard-2r holds the pool
    with pytest.raises(InputError, match="fewer than the 101"):
        ablation.select_real_pool(rows, 101, seed=3)


def test_synthetic_selection_matches_categories_or_says_what_is_missing():
    rows = _rows({"S1": ("train", 6, "normal"), "S2": ("train", 4, "infarct"), "S3": ("train", 3, "no_reflow")})
    chosen = ablation.select_synthetic(rows, {"normal": 2, "infarct": 3, "no_reflow": 3}, seed=0)
    assert ablation.category_counts(chosen) == {"normal": 2, "infarct": 3, "no_reflow": 3}
    assert len({r["name"] for r in chosen}) == 8
    with pytest.raises(InputError, match="1 no_reflow slices, 2 needed.*--sim-factor"):
        ablation.select_synthetic(rows[:-2], {"no_reflow": 2}, seed=0)


@pytest.fixture(scope="module")
def real_dir(tmp_path_factory) -> Path:
    """10 train slices (5 cases) and 6 val slices (3 cases) of ring masks with infarcts."""
    return write_prepared(tmp_path_factory.mktemp("abl-real"), 10, 6, seed=5)


@pytest.fixture(scope="module")
def built(tmp_path_factory, real_dir) -> tuple[Path, dict]:
    """The whole build with a one-epoch pool GAN: pool, GAN, simulator + synthesis, datalists."""
    work = tmp_path_factory.mktemp("abl-work")
    config = ablation.AblationConfig(
        data=str(real_dir),
        real_slices=4,
        gan_epochs=1,
        gan_batch_size=4,
        sim_seed=1,
        sim_factor=6,
        epochs=2,
        steps_per_epoch=3,
        batch_size=4,
    )
    return work, ablation.build(work, config)


def test_build_gives_both_arms_equal_sizes_and_budgets(built, real_dir):
    work, design = built
    counts = design["counts"]
    pool = counts["pool"]
    assert pool >= 4 and pool % 2 == 0  # whole cases of two slices
    assert counts["ard"] == 2 * pool and counts["md_real"] == counts["md_gan"] == pool
    assert design["sampling_weights_md"] == [1.0, 1.0]  # equal counts: the paper's 50 % share
    assert design["categories"]["gan"] == design["categories"]["pool"]  # class-balanced like the pool
    passes = design["passes"]["ard"]
    assert passes == design["passes"]["md"] == -(-3 * 4 // (2 * pool))  # enough entries for 3 batches of 4
    saved = json.loads((work / "ablation.json").read_text())
    assert saved["counts"] == counts
    lists = {arm: json.loads(Path(design["datalists"][arm]).read_text()) for arm in ("ard", "md", "ard-2r")}
    assert len(lists["ard"]["training"]) == len(lists["md"]["training"]) == 2 * pool * passes
    assert len(lists["ard-2r"]["training"]) == counts["ard-2r"] * design["passes"]["ard-2r"] >= 3 * 4
    val_names = {r.name for r in read_items(real_dir, "val")}
    for arm, data in lists.items():
        assert {e["name"] for e in data["validation"]} == val_names, arm  # every arm validates on the real val split
    # the trainers differ only in data and run folder: identical hyper-parameters, steps and seeds
    configs = {arm: dataclasses.asdict(ablation.train_config(work, arm, seed=1)) for arm in ("ard", "md")}
    for c in configs.values():
        c.pop("data"), c.pop("out")
    assert configs["ard"] == configs["md"]
    assert configs["md"]["max_steps_per_epoch"] == 3 and configs["md"]["epochs"] == 2 and configs["md"]["seed"] == 1
    # the arms' datalists are what the trainer reads
    ds = RoiDataset(design["datalists"]["md"], "train", augment=True)
    x, y = ds[len(ds) - 1]
    assert x.shape == (1, 128, 128) and y.shape == (128, 128)
    with pytest.raises(InputError, match="already holds ablation.json"):
        ablation.build(work, ablation.AblationConfig(data=str(real_dir)))
    with pytest.raises(InputError, match="unknown arm 'gan'"):
        ablation.train_config(work, "gan", seed=0)


def test_build_keeps_validation_cases_out_of_training_and_out_of_the_gan(built, real_dir):
    work, design = built
    val_cases = {r.case_id for r in read_items(real_dir, "val")}
    train_cases = {r.case_id for r in read_items(real_dir, "train")}
    md = json.loads(Path(design["datalists"]["md"]).read_text())["training"]
    real = [e for e in md if Path(e["image"]).is_relative_to(real_dir.resolve())]
    synthetic = [e for e in md if Path(e["image"]).is_relative_to(work / "synth")]
    assert len(real) + len(synthetic) == len(md) and real and synthetic
    assert {e["case_id"] for e in real} == set(design["pool_cases"]) <= train_cases
    assert not {e["case_id"] for e in real} & val_cases
    assert all("Sim" in e["case_id"] for e in synthetic)  # simulator masks, no real case
    for e in synthetic:  # the label is the mask the GAN painted, the image the GAN's output
        image = np.load(e["image"])
        assert np.load(e["label"]).shape == image.shape == (128, 128) and 0 <= image.min() <= image.max() <= 1
    rows = ablation.gan_slices(design)  # what the report scores as the domain-gap diagnostic
    assert sorted(r["name"] for r in rows) == sorted({e["name"] for e in synthetic})
    assert len(rows) == design["counts"]["md_gan"]
    seen = ablation.gan_seen_cases(design["gan"]["checkpoint"])
    assert {case for _, case in seen} == set(design["pool_cases"])  # the GAN trained on the pool only
    assert not {case for _, case in seen} & val_cases
    assert design["gan"]["trained_here"] and design["gan"]["cases_seen"] == len(design["pool_cases"])


def test_a_gan_that_saw_validation_cases_is_refused(tmp_path, real_dir):
    torch.manual_seed(0)
    model = create_model("pix2pix", TINY)
    # trained on the folder itself: its val split picked best.pt, like the shipped phantom GAN
    saw_val = model.save(tmp_path / "saw_val.pt", extra={"config": {"data": [str(real_dir)]}})
    val_rows = [r for r in ablation.read_manifest(real_dir) if r["split"] == "val"]
    with pytest.raises(InputError, match=r"trained or was selected on 3 evaluated case\(s\)"):
        ablation.check_gan_isolation(saw_val, val_rows)
    unknown = model.save(tmp_path / "unknown.pt")
    with pytest.raises(InputError, match="does not record its training data"):
        ablation.check_gan_isolation(unknown, val_rows)
    config = ablation.AblationConfig(data=str(real_dir), real_slices=4, gan_checkpoint=str(saw_val))
    with pytest.raises(InputError, match="evaluated case"):
        ablation.build(tmp_path / "work", config)
    assert not (tmp_path / "work" / "synth").exists()  # refused before anything is generated
    with pytest.raises(InputError, match="real slices must be at least 1"):
        ablation.build(tmp_path / "w2", dataclasses.replace(config, real_slices=0))


def test_a_pool_of_the_whole_train_split_leaves_out_ard_2r(built, real_dir, tmp_path):
    _, design = built
    train = sum(r["split"] == "train" for r in ablation.read_manifest(real_dir))
    config = ablation.AblationConfig(
        data=str(real_dir),
        real_slices=train,
        gan_checkpoint=design["gan"]["checkpoint"],
        sim_seed=1,
        sim_factor=6,
        epochs=2,
        steps_per_epoch=3,
        batch_size=4,
    )
    whole = ablation.build(tmp_path, config)
    assert whole["counts"]["pool"] == train and whole["counts"]["md_gan"] == train
    assert set(whole["datalists"]) == {"ard", "md"}
    with pytest.raises(InputError, match="arm 'ard-2r' was not built"):
        ablation.train_config(tmp_path, "ard-2r", seed=0)

"""Tests for cardiac_mi.retrain: real pairs -> prepared folder, the synthetic mix, publishing,
fine-tuning from the published checkpoint (the shipped model, few steps)."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from cardiac_mi import retrain as active
from cardiac_mi.retrain import (
    RetrainConfig,
    prepare_pairs,
    publish,
    read_stats,
    retrain,
    sampling_weights,
    synthesize_slices,
    synthetic_count,
    training_sources,
)
from lgemri.emidec import prepare_dataset
from lgemri.errors import InputError
from lgemri.nets.checkpoint import load_checkpoint
from lgemri.training import TrainConfig, train
from lgemri.training.data import EpochSampler, RoiDataset, read_items
from lgemri.volume import Volume, read_nifti, write_nifti
from tests.helpers.retrain import CASES, TINY
from tests.helpers.retrain import phantom_pairs as _pairs
from tests.helpers.retrain import sha256 as _sha
from tests.helpers.retrain import tiny_checkpoint as _tiny_checkpoint

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "models"


def _manifest(folder: Path) -> list[dict]:
    with (folder / "manifest.csv").open(newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def prepared(phantom_dir, tmp_path_factory) -> dict:
    """The three phantom cases prepared from pairs (read-only for the tests)."""
    return prepare_pairs(_pairs(phantom_dir), tmp_path_factory.mktemp("active") / "real", seed=0)


# --------------------------------------------------------------------------------------------
# pairs -> prepared folder


def test_prepare_pairs_writes_what_prepare_writes_split_by_case(prepared, phantom_dir, tmp_path):
    out = Path(prepared["out"])
    rows = _manifest(out)
    assert prepared["validation"] == "held_out"
    assert set(prepared["train_cases"]) | set(prepared["val_cases"]) == set(CASES)
    assert not set(prepared["train_cases"]) & set(prepared["val_cases"]) and prepared["val_cases"]
    by_case = {r["case_id"]: {r2["split"] for r2 in rows if r2["case_id"] == r["case_id"]} for r in rows}
    assert all(len(splits) == 1 for splits in by_case.values())
    assert prepared["slices"]["train"] == len(read_items(out, "train"))
    assert prepared["slices"]["val"] == len(read_items(out, "val")) > 0
    assert all(r["category"] in ("normal", "infarct", "no_reflow") for r in rows)
    cases = json.loads((out / "cases.json").read_text())
    assert set(cases) == set(CASES) and prepared["cases"]["Case_P001"]["image_id"] == "Case_P001"

    # the same slices, names and crops as `cardiac-mi prepare` on the EMIDEC folder
    reference = tmp_path / "prep"
    prepare_dataset(phantom_dir / "emidec", reference, fractions=(1.0, 0.0, 0.0))
    ref_rows = {r["name"]: r for r in _manifest(reference)}
    assert set(ref_rows) == {r["name"] for r in rows}
    for row in rows[::5]:
        for kind in ("roi/images", "roi/labels", "slices/labels"):
            a = np.load(out / kind / f"{row['name']}.npy")
            np.testing.assert_array_equal(a, np.load(reference / kind / f"{row['name']}.npy"))
        assert row["roi_i0"] == ref_rows[row["name"]]["roi_i0"]
    ds = RoiDataset(out, "val")
    assert ds[0][0].shape == (1, 128, 128)


def test_one_case_is_validated_on_its_training_slices(phantom_dir, tmp_path):
    result = prepare_pairs(_pairs(phantom_dir, ["Case_P002"]), tmp_path / "one")
    assert result["validation"] == "training_case"
    assert result["train_cases"] == result["val_cases"] == ["Case_P002"]
    assert result["slices"]["train"] == result["slices"]["val"] > 0
    names = [r["name"] for r in _manifest(tmp_path / "one")]
    assert len(names) == 2 * len(set(names))


def test_two_cases_hold_one_out(phantom_dir, tmp_path):
    result = prepare_pairs(_pairs(phantom_dir, ["Case_P001", "Case_P002"]), tmp_path / "two", val_fraction=0.2)
    assert len(result["train_cases"]) == len(result["val_cases"]) == 1


def test_bad_pairs(phantom_dir, tmp_path):
    with pytest.raises(InputError, match="no labelled image"):
        prepare_pairs([], tmp_path / "a")
    with pytest.raises(InputError, match="val_fraction"):
        prepare_pairs(_pairs(phantom_dir), tmp_path / "a", val_fraction=1.0)
    with pytest.raises(InputError, match="training pair 0"):
        prepare_pairs([{"image": 3}], tmp_path / "a")
    pair = _pairs(phantom_dir, ["Case_P001"])[0]
    image = read_nifti(pair["image"])
    cut = tmp_path / "cut.nii.gz"
    write_nifti(Volume(read_nifti(pair["label"]).array[:, :, :-1], image.affine), cut)
    with pytest.raises(InputError, match="label shape"):
        prepare_pairs([{"image": pair["image"], "label": str(cut)}], tmp_path / "a")
    empty = tmp_path / "empty.nii.gz"
    write_nifti(Volume(np.zeros(image.shape, np.uint8), image.affine), empty)
    with pytest.raises(InputError, match="none of the 1 labels holds myocardium"):
        prepare_pairs([{"image": pair["image"], "label": str(empty)}], tmp_path / "a")
    result = prepare_pairs([pair, {"image": pair["image"], "label": str(empty), "image_id": "blank"}], tmp_path / "b")
    assert [s["image_id"] for s in result["skipped"]] == ["blank"] and list(result["cases"]) == ["Case_P001"]


# --------------------------------------------------------------------------------------------
# the synthetic mix


@pytest.mark.parametrize("ratio", [0.1, 0.5, 0.8])
def test_sampling_weights_give_the_ratio(ratio):
    real, syn = 40, 170
    w_real, w_syn = sampling_weights(real, syn, ratio)
    assert syn * w_syn / (real * w_real + syn * w_syn) == pytest.approx(ratio)
    assert (real * w_real + syn * w_syn) / (real + syn) == pytest.approx(1.0)
    sampler = EpochSampler(real + syn, weights=[w_real] * real + [w_syn] * syn, seed=1)
    draws = []
    for epoch in range(40):
        sampler.set_epoch(epoch)
        draws.extend(sampler)
    assert np.mean(np.asarray(draws) >= real) == pytest.approx(ratio, abs=0.02)


def test_ratio_edges_and_counts():
    assert sampling_weights(10, 0, 0.0) == (1.0, 0.0)
    assert synthetic_count(46, 0.5) == 46 and synthetic_count(46, 0.0) == 0 and synthetic_count(30, 0.75) == 90
    for bad in (1.0, -0.1, float("nan"), "half"):
        with pytest.raises(InputError, match="synthetic_ratio"):
            sampling_weights(10, 10, bad)
    with pytest.raises(InputError, match="needs synthetic slices"):
        sampling_weights(10, 0, 0.5)
    with pytest.raises(InputError, match="no real training slice"):
        sampling_weights(0, 10, 0.5)


def test_synthesized_slices_are_a_seeded_weighted_source(prepared, tmp_path):
    first = synthesize_slices(10, tmp_path / "s1", seed=3)
    again = synthesize_slices(10, tmp_path / "s2", seed=3)
    assert first["slices"] >= 10 and first["slices"] == again["slices"]
    folder = Path(first["folder"])
    names = sorted(p.name for p in (folder / "roi" / "images").glob("*.npy"))
    assert len(names) == first["slices"]
    for name in names[:3]:
        np.testing.assert_array_equal(
            np.load(folder / "roi" / "images" / name), np.load(Path(again["folder"]) / "roi" / "images" / name)
        )
        mask = np.load(folder / "roi" / "labels" / name)
        np.testing.assert_array_equal(mask, np.load(tmp_path / "s1" / "masks" / "roi" / "labels" / name))
    sources = training_sources(prepared["out"], folder, 0.5)
    (real, w_real), (syn, w_syn) = sources
    assert real == prepared["out"] and syn == str(folder)
    n_real = prepared["slices"]["train"]
    assert first["slices"] * w_syn == pytest.approx(n_real * w_real)
    ds = RoiDataset(sources, "train")
    assert len(ds) == n_real + first["slices"]
    assert len(RoiDataset(sources, "val")) == prepared["slices"]["val"]  # validation: real only
    assert training_sources(prepared["out"], folder, 0.0) == [prepared["out"]]


# --------------------------------------------------------------------------------------------
# publishing


@pytest.fixture
def models(tmp_path) -> tuple[Path, Path, Path]:
    """(models folder with a current segmentation.pt, a new best.pt, the current file's bytes copy)."""
    folder = tmp_path / "models"
    current = _tiny_checkpoint(folder / "segmentation.pt", 1)
    new = _tiny_checkpoint(tmp_path / "run" / "best.pt", 2)
    return folder, new, Path(shutil.copy(current, tmp_path / "old.pt"))


def _no_temporaries(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize(
    "policy, new, current, published",
    [
        ("if_better", 0.8, 0.7, True),
        ("if_better", 0.7, 0.7, False),
        ("if_better", 0.6, 0.7, False),
        ("if_better", 0.6, None, True),
        ("if_better", None, 0.5, False),
        ("always", 0.1, 0.9, True),
        ("never", 0.9, 0.1, False),
    ],
)
def test_publish_policy(models, policy, new, current, published):
    folder, best, old = models
    result = publish(best, folder, policy=policy, new_score=new, current_score=current)
    assert result["published"] is published and result["reason"]
    served = folder / "segmentation.pt"
    if published:
        assert _sha(served) == _sha(best) and _sha(folder / "segmentation.prev.pt") == _sha(old)
        assert result["previous"] == str(folder / "segmentation.prev.pt")
        load_checkpoint(served, task="segmentation")
    else:
        assert _sha(served) == _sha(old) and not (folder / "segmentation.prev.pt").exists()
    assert _no_temporaries(folder)


def test_publish_without_a_current_model(tmp_path):
    best = _tiny_checkpoint(tmp_path / "best.pt", 0)
    result = publish(best, tmp_path / "models", new_score=0.5, current_score=None)
    assert result["published"] and result["previous"] is None
    assert _sha(tmp_path / "models" / "segmentation.pt") == _sha(best)


def test_publish_refuses_when_the_served_model_changed_during_training(models):
    folder, best, old = models
    result = publish(best, folder, new_score=0.9, current_score=0.1, expected_sha256="0" * 64)
    assert not result["published"] and "changed during training" in result["reason"]
    assert _sha(folder / "segmentation.pt") == _sha(old)
    assert publish(best, folder, new_score=0.9, current_score=0.1, expected_sha256=_sha(old))["published"]


def test_publish_is_atomic_when_the_copy_fails(models, monkeypatch):
    folder, best, old = models
    real_copy = shutil.copyfile

    def half_then_fail(src, dst):
        if Path(src) == best:
            Path(dst).write_bytes(Path(src).read_bytes()[:1000])
            raise OSError("disk full")
        return real_copy(src, dst)

    monkeypatch.setattr(active.shutil, "copyfile", half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        publish(best, folder, policy="always", new_score=0.5)
    assert _sha(folder / "segmentation.pt") == _sha(old)
    load_checkpoint(folder / "segmentation.pt", task="segmentation")
    assert _no_temporaries(folder)


def test_publish_refuses_bad_input(models, tmp_path):
    folder, best, old = models
    with pytest.raises(InputError, match="unknown publish policy"):
        publish(best, folder, policy="sometimes", new_score=0.5)
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="broken.pt"):
        publish(broken, folder, policy="always", new_score=0.5)
    localizer = tmp_path / "loc.pt"
    shutil.copy(SHIPPED / "localization.pt", localizer)
    with pytest.raises(InputError, match="expected a 'segmentation' network"):
        publish(localizer, folder, policy="always", new_score=0.5)
    assert _sha(folder / "segmentation.pt") == _sha(old)


# --------------------------------------------------------------------------------------------
# fine-tuning


def test_init_starts_from_the_checkpoint_and_scores_it_first(prepared, tmp_path):
    base = dict(
        task="segmentation",
        data=[prepared["out"]],
        epochs=1,
        batch_size=2,
        max_steps_per_epoch=1,
        progress=False,
        augment=False,
    )
    init = _tiny_checkpoint(tmp_path / "init.pt", 7)
    summary = train(TrainConfig(out=str(tmp_path / "a"), init=str(init), lr=1e-12, **base))
    # with a negligible step the fine-tuned model scores what the initial one scored
    assert summary["init_metrics"]["mean_dice"] == pytest.approx(summary["best_metrics"]["mean_dice"], abs=1e-6)
    _, meta = load_checkpoint(summary["best_checkpoint"], task="segmentation")
    assert meta["network"]["kwargs"]["channels"] == TINY["channels"]
    assert json.loads((tmp_path / "a" / "history.json").read_text())["init"]["mean_dice"] is not None
    with pytest.raises(InputError, match="leave network and channels unset"):
        train(TrainConfig(out=str(tmp_path / "b"), init=str(init), channels=(4, 8, 8), **base))
    with pytest.raises(InputError, match="expected a 'segmentation' network"):
        train(TrainConfig(out=str(tmp_path / "c"), init=str(SHIPPED / "localization.pt"), **base))
    with pytest.raises(InputError, match="one-stage model"):
        train(TrainConfig(out=str(tmp_path / "d"), init=str(init), two_stage=True, **base))


def test_retrain_fine_tunes_the_shipped_model_and_publishes(phantom_dir, tmp_path):
    folder = tmp_path / "models"
    folder.mkdir()
    shutil.copy(SHIPPED / "segmentation.pt", folder)
    shipped = _sha(folder / "segmentation.pt")
    config = RetrainConfig(synthetic_ratio=0.5, max_epochs=1, max_steps_per_epoch=2, batch_size=4, publish="always")
    stats = retrain(_pairs(phantom_dir), folder, tmp_path / "run", config)

    assert stats["published"] and _sha(folder / "segmentation.pt") != shipped
    assert _sha(folder / "segmentation.prev.pt") == shipped
    assert _sha(folder / "segmentation.pt") == _sha(Path(stats["best_checkpoint"]))
    _, meta = load_checkpoint(folder / "segmentation.pt", task="segmentation")
    assert meta["extra"]["config"]["init"] == str(folder / "segmentation.pt")
    assert stats["slices"]["synthetic"] >= stats["slices"]["real_train"] > 0
    assert stats["sampling_weights"]["synthetic"] * stats["slices"]["synthetic"] == pytest.approx(
        stats["sampling_weights"]["real"] * stats["slices"]["real_train"]
    )
    assert 0.3 < stats["val_dice_before"] <= 1 and 0 < stats["val_dice_after"] <= 1
    assert stats["image_ids"] == sorted(CASES) and stats["cases"]["validation"] == "held_out"
    assert (
        stats["epochs"] == 1
        and stats["steps"] == 2
        and set(stats["val_dice_by_class"]["before"]) == {"lv_cavity", "myocardium", "infarct", "no_reflow"}
    )
    assert read_stats(folder) == stats == json.loads((tmp_path / "run" / "stats.json").read_text())
    sources = json.loads((tmp_path / "run" / "train" / "config.json").read_text())["config"]["data"]
    assert [Path(s[0]).name for s in sources] == ["real", "slices"]


def test_retrain_real_only_if_better(phantom_dir, tmp_path):
    folder = tmp_path / "models"
    folder.mkdir()
    shutil.copy(SHIPPED / "segmentation.pt", folder)
    shipped = _sha(folder / "segmentation.pt")
    config = RetrainConfig(synthetic_ratio=0.0, max_epochs=1, max_steps_per_epoch=1, batch_size=2)
    stats = retrain(_pairs(phantom_dir, ["Case_P001"]), folder, tmp_path / "run", config)
    assert stats["synthetic"] is None and stats["slices"]["synthetic"] == 0
    assert not (tmp_path / "run" / "synthetic").exists()
    assert stats["cases"]["validation"] == "training_case"
    # validated on its own training case: never published, whatever the scores (the publish gate)
    assert not stats["published"] and "held out of training" in stats["reason"] and not stats["publishable"]
    assert _sha(folder / "segmentation.pt") == shipped
    with pytest.raises(InputError, match="already in use"):
        retrain(_pairs(phantom_dir, ["Case_P001"]), folder, tmp_path / "run", config)
    with pytest.raises(InputError, match="synthetic_ratio"):
        retrain(_pairs(phantom_dir), folder, tmp_path / "run2", RetrainConfig(synthetic_ratio=1.0))


def test_hybrid_slices_grow_infarcts_on_the_real_labels(phantom_dir, tmp_path):
    labels = [p["label"] for p in _pairs(phantom_dir, ["Case_P001", "Case_N003"])]
    result = synthesize_slices(8, tmp_path / "h", seed=2, mode="hybrid", recipients=labels)
    assert result["mode"] == "hybrid" and result["slices"] >= 8
    rows = _manifest(tmp_path / "h" / "masks")
    assert {r["recipient"] for r in rows} <= {"Case_P0001", "Case_P0002"} and all(r["recipient"] for r in rows)
    recipients = tmp_path / "h" / "recipients"
    assert (recipients / "Case_P0001" / "Contours" / "Case_P0001.nii.gz").resolve() == Path(labels[0]).resolve()
    assert len(read_items(result["folder"], "train")) == result["slices"]
    with pytest.raises(InputError, match="needs real labels"):
        synthesize_slices(8, tmp_path / "x", mode="hybrid")
    with pytest.raises(InputError, match="unknown synthetic mode"):
        synthesize_slices(8, tmp_path / "x", mode="fusion")

"""simulator.simulate: outputs, manifest, determinism, shards, hybrid and fusion recipients."""

from __future__ import annotations

import csv
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from lgemri import aha
from lgemri.emidec import parse_slice_name
from lgemri.errors import InputError
from lgemri.labels import CAVITY, INFARCT, MYOCARDIUM, NO_REFLOW
from lgemri.volume import Volume, read_nifti, write_nifti
from simulator import SimulationConfig, make_case, parse_shard, prepare_pool, simulate
from simulator.fusion import fuse, nearest_recipients
from simulator.hybrid import load_subjects
from simulator.writer import MANIFEST_FIELDS

SAMPLE = Path(__file__).resolve().parents[2] / "sample-data" / "emidec"


def files(root: Path) -> dict[str, bytes]:
    """Every slice and volume under a simulator output, by relative path."""
    paths = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in (".npy", ".gz"))
    return {str(p.relative_to(root)): p.read_bytes() for p in paths}


def rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def subjects():
    return load_subjects(SAMPLE)


# -- outputs and manifest ---------------------------------------------------------------------


def test_outputs_match_the_manifest(tmp_path):
    config = SimulationConfig(n=6, seed=4, normal_fraction=0.3, territories=("LAD", "RCA"))
    result = simulate(config, tmp_path)
    assert result.manifest == tmp_path / "manifest.csv" and result.cases == 6 and result.skipped == 0
    table = rows(result.manifest)
    assert list(table[0]) == list(MANIFEST_FIELDS)
    assert len(table) == result.masks == len(list((tmp_path / "roi" / "labels").glob("*.npy")))
    assert not list(tmp_path.glob(".*partial"))
    assert (tmp_path / "simulate.json").is_file()
    groups = set()
    for case_id in sorted({r["case_id"] for r in table}):
        case_rows = [r for r in table if r["case_id"] == case_id]
        volume = read_nifti(tmp_path / "emidec" / case_id / "Contours" / f"{case_id}.nii.gz")
        assert volume.array.dtype == np.uint8 and volume.shape[:2] == (128, 128)
        assert np.allclose(volume.spacing, [1.0, 1.0, float(case_rows[0]["slice_spacing_mm"])], atol=1e-3)
        assert len(case_rows) == volume.shape[2]
        myo = int((volume.array >= MYOCARDIUM).sum())
        infarct = int((volume.array >= INFARCT).sum())
        assert float(case_rows[0]["infarct_pct"]) == pytest.approx(100 * infarct / myo, abs=1e-3)
        groups.add(case_id[5])
        for row in case_rows:
            k = int(row["slice"])
            mask = np.load(tmp_path / "roi" / "labels" / f"{row['name']}.npy")
            assert mask.shape == (128, 128) and mask.dtype == np.uint8
            assert np.array_equal(mask, volume.array[:, :, k])
            fields = parse_slice_name(row["name"])
            assert fields["case_id"] == case_id and fields["slice"] == k
            assert fields["infarct"] == (int(row["infarct_px"]) > 0) == bool((mask >= INFARCT).any())
            assert int(row["myocardium_px"]) == int((mask >= MYOCARDIUM).sum())
            assert int(row["cavity_px"]) == int((mask == CAVITY).sum())
            assert int(row["infarct_px"]) == int((mask >= INFARCT).sum())
            assert int(row["no_reflow_px"]) == int((mask == NO_REFLOW).sum())
            assert row["mode"] == "synthetic" and row["seed"] == "4"
            if case_id.startswith("Case_P"):
                assert row["territory_requested"] in ("LAD", "RCA")
                segments = {int(s) for s in row["segments_hit"].split(";") if s}
                assert segments <= set(aha.TERRITORIES[row["territory_requested"]])
                assert float(row["size_requested_pct"]) > 0 and row["transmurality_requested_pct"]
    assert "P" in groups


def test_single_slice_masks_npy_only(tmp_path):
    result = simulate(SimulationConfig(n=5, seed=1, slices=1, formats=("NPY",)), tmp_path)
    assert result.masks == 5
    names = sorted(p.stem for p in (tmp_path / "roi" / "labels").glob("*.npy"))
    assert len(names) == 5 and all("Case_PSim00000" in n and "_slice_0_Inf_" in n for n in names), names
    assert not (tmp_path / "emidec").exists()
    assert [r["name"] for r in rows(result.manifest)] == names


# -- determinism and shards -------------------------------------------------------------------


def test_same_seed_same_bytes_other_seed_other_masks(tmp_path):
    config = SimulationConfig(n=4, seed=7)
    simulate(config, tmp_path / "a")
    simulate(config, tmp_path / "b")
    a, b = files(tmp_path / "a"), files(tmp_path / "b")
    assert a and a == b
    assert (tmp_path / "a" / "manifest.csv").read_bytes() == (tmp_path / "b" / "manifest.csv").read_bytes()
    simulate(SimulationConfig(n=4, seed=8), tmp_path / "c")
    assert files(tmp_path / "c") != a


def test_union_of_shards_is_the_full_run(tmp_path):
    full = tmp_path / "full"
    simulate(SimulationConfig(n=5, seed=2, slices=2), full)
    for i in range(2):
        result = simulate(SimulationConfig(n=5, seed=2, slices=2, shard=parse_shard(f"{i}/2")), tmp_path / "shards")
        assert result.manifest.name == f"manifest.shard-{i}-of-2.csv"
        assert {int(r["index"]) % 2 for r in rows(result.manifest)} == {i}
    assert files(tmp_path / "shards") == files(full)
    shards = tmp_path / "shards"
    shard_rows = rows(shards / "manifest.shard-0-of-2.csv") + rows(shards / "manifest.shard-1-of-2.csv")
    key = lambda r: (int(r["index"]), int(r["slice"]))  # noqa: E731
    assert sorted(shard_rows, key=key) == sorted(rows(full / "manifest.csv"), key=key)


@pytest.mark.parametrize("text", ["3/2", "2/2", "1/0", "-1/2", "a/b", "1", "1/2/3", ""])
def test_bad_shards_are_refused(text):
    with pytest.raises(InputError, match="shard"):
        parse_shard(text)


def test_good_shards():
    assert (parse_shard("0/1").index, parse_shard("3/8").count) == (0, 8)
    assert list(parse_shard("1/3").indices(8)) == [1, 4, 7]
    assert parse_shard(None).manifest_name == "manifest.csv"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n": 0}, "--n"),
        ({"infarct_size": (-5.0, 10.0)}, "infarct size"),
        ({"infarct_size": (20.0, 10.0)}, "reversed"),
        ({"transmurality": (50.0, 120.0)}, "transmurality"),
        ({"territories": ("LAD", "XYZ")}, "unknown coronary territory"),
        ({"mode": "hybrid"}, "--recipients"),
        ({"mode": "magic"}, "unknown mode"),
        ({"recipients": Path("x")}, "synthetic masks need none"),
        ({"normal_fraction": 1.5}, "normal fraction"),
        ({"slices": 0}, "--slices"),
        ({"formats": ("npy", "png")}, "output formats"),
        ({"formats": ()}, "output formats"),
    ],
)
def test_bad_configs_are_named(tmp_path, kwargs, match):
    with pytest.raises(InputError, match=match):
        simulate(SimulationConfig(**kwargs), tmp_path)
    assert not (tmp_path / "manifest.csv").exists()


# -- hybrid -----------------------------------------------------------------------------------


def test_hybrid_keeps_the_recipient_anatomy(tmp_path, subjects):
    config = SimulationConfig(mode="hybrid", n=6, seed=3, recipients=SAMPLE, territories=("LCX",))
    config.validate()
    pool = prepare_pool(config)
    by_id = {s.subject_id: s for s in subjects}
    for index in range(6):
        case = make_case(config, index, pool)
        recipient = by_id[case.params["recipient"]]
        assert case.case_id.startswith("Case_PSimH")
        assert np.array_equal(case.label > 0, recipient.anatomy > 0)
        assert np.array_equal(case.label == CAVITY, recipient.anatomy == CAVITY)
        segments = aha.assign_segments(case.label, (1.0, 1.0))
        assert set(np.unique(segments[case.label >= INFARCT]).tolist()) <= set(aha.TERRITORIES["LCX"])


def test_recipient_without_myocardium_is_skipped_with_a_reason(tmp_path, caplog):
    root = tmp_path / "emidec"
    shutil.copytree(SAMPLE / "Case_P001", root / "Case_P001")
    empty = Volume(np.zeros((40, 40, 3), np.uint8), np.eye(4))
    empty.array[10:20, 10:20, :] = CAVITY
    write_nifti(empty, root / "Case_N009" / "Contours" / "Case_N009.nii.gz")
    with caplog.at_level(logging.WARNING):
        loaded = load_subjects(root)
    assert [s.subject_id for s in loaded] == ["Case_P001"]
    assert any("Case_N009" in r.getMessage() and "no myocardium" in r.getMessage() for r in caplog.records)
    shutil.rmtree(root / "Case_P001")
    with pytest.raises(InputError, match="no usable recipient"):
        load_subjects(root)


# -- fusion -----------------------------------------------------------------------------------


def test_nearest_recipients_never_return_the_donor(subjects):
    for d in range(len(subjects)):
        near = nearest_recipients(subjects, d, 3)
        assert d not in near and len(near) == 3 and len(set(near)) == 3


def test_fusion_never_leaves_infarct_outside_the_recipient_wall(subjects):
    donors = [i for i, s in enumerate(subjects) if s.has_infarct]
    by_id = {s.subject_id: s for s in subjects}
    for seed in range(8):
        fused = fuse(subjects, donors, np.random.default_rng(seed), k=3, max_cost=10.0)
        assert fused is not None and fused.donor != fused.recipient
        recipient = by_id[fused.recipient]
        infarct = fused.label >= INFARCT
        assert infarct.any()
        assert (recipient.anatomy[infarct] == MYOCARDIUM).all()
        assert np.array_equal(fused.label > 0, recipient.anatomy > 0)
        assert np.array_equal(fused.label == CAVITY, recipient.anatomy == CAVITY)
        assert 0.0 <= fused.parts["outside_wall"] <= 1.0 and fused.cost >= 0


def test_fusion_cost_rejects_and_the_run_reports_it(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        result = simulate(SimulationConfig(mode="fusion", n=2, seed=0, recipients=SAMPLE, max_cost=0.0), tmp_path)
    assert result.cases == 0 and result.skipped == 2
    assert any("fusion cost" in r.getMessage() for r in caplog.records)
    config = SimulationConfig(mode="fusion", n=3, seed=0, recipients=SAMPLE, territories=("RCA",))
    result = simulate(config, tmp_path / "ok")
    table = rows(result.manifest)
    assert result.cases == 3 and {r["donor"] for r in table} == {"Case_P002"}
    assert all(r["recipient"] != r["donor"] and float(r["fusion_cost"]) <= 0.5 for r in table)


def test_fusion_needs_donors(tmp_path):
    root = tmp_path / "emidec"
    for cid in ("Case_N003", "Case_N005"):
        volume = read_nifti(SAMPLE / "Case_N003" / "Contours" / "Case_N003.nii.gz")
        write_nifti(volume, root / cid / "Contours" / f"{cid}.nii.gz")
    with pytest.raises(InputError, match="no donor with an infarct"):
        simulate(SimulationConfig(mode="fusion", n=1, recipients=root), tmp_path / "out")

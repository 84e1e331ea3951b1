"""Tests of the ablation's statistics through infer (experiments/gan_ablation_infer.py)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("gan_ablation_infer", ROOT / "experiments" / "gan_ablation_infer.py")
abl = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("gan_ablation_infer", abl)
_spec.loader.exec_module(abl)


def _row(cavity: float, infarct: float | None, no_reflow: float | None = None) -> dict:
    return {
        "cavity": cavity,
        "myocardium": cavity - 0.1,
        "infarct": 0.0 if infarct is None else infarct,
        "no_reflow": 0.0 if no_reflow is None else no_reflow,
        "has_infarct": infarct is not None,
        "has_no_reflow": no_reflow is not None,
    }


def test_bootstrap_interval_holds_the_mean_and_narrows_with_more_studies():
    rng = np.random.default_rng(0)
    few, many = rng.normal(0.6, 0.1, 8), rng.normal(0.6, 0.1, 200)
    for values in (few, many):
        low, high = abl.bootstrap_ci(values)
        assert low < values.mean() < high
    assert np.diff(abl.bootstrap_ci(many))[0] < np.diff(abl.bootstrap_ci(few))[0] / 2
    assert abl.bootstrap_ci([0.5, 0.5, 0.5]) == (0.5, 0.5)
    assert all(np.isnan(abl.bootstrap_ci([0.5])))


def test_arms_are_averaged_over_seeds_per_study_and_compared_pairwise():
    ard = {
        0: {"A": _row(0.9, None), "B": _row(0.8, 0.5, 0.4), "C": _row(0.7, 0.3)},
        1: {"A": _row(0.9, None), "B": _row(0.8, 0.7, 0.6), "C": _row(0.7, 0.5)},
    }
    md = {s: {c: {**r, "infarct": r["infarct"] + 0.1} for c, r in rows.items()} for s, rows in ard.items()}
    summary = abl.summarise_arms({"ard": ard, "md": md})
    inf = summary["ard"]["groups"]["infarct"]
    assert inf["studies"] == 2  # only the studies with an infarct
    assert inf["per_case"] == pytest.approx({"B": 0.6, "C": 0.4})
    assert inf["mean"] == pytest.approx(0.5) and inf["seed_means"] == pytest.approx([0.4, 0.6])
    assert summary["ard"]["groups"]["no_reflow"]["studies"] == 1
    assert summary["ard"]["groups"]["cavity"]["studies"] == 3
    diff = summary["md"]["groups"]["infarct"]["minus_ard"]
    assert diff["mean"] == pytest.approx(0.1) and diff["ci95"] == pytest.approx((0.1, 0.1))
    assert summary["md"]["groups"]["cavity"]["minus_ard"]["mean"] == pytest.approx(0.0)
    assert "minus_ard" not in summary["ard"]["groups"]["infarct"]
    text = abl.markdown(summary, "val")
    assert "md − ard" in text and "+0.100 [+0.100, +0.100]" in text

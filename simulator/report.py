"""Realism report: do the simulated infarcts look like the reference ones, in distribution?

Compared per infarcted case: infarct size (% of the LV myocardium), mean and largest sector
transmurality (%), no-reflow (% of the LV, and how often it is present), the AHA segments hit
(infarct on >= 5 % of the segment) and the dominant coronary territory; plus the share of
pathological cases. The simulated figures come from the run's manifest(s); the reference
figures are measured with the same code (:func:`simulator.wall.measure`, after the same 1 mm
resampling) on labelled cases: the phantom ground truth (``cardiac-mi phantom`` output, its
``phantom.json`` giving the territory), any EMIDEC-layout folder, or one split of a prepared
folder (``cardiac-mi prepare`` output: real EMIDEC data, e.g. its train cases, if you have them). A ``phantom.json`` without its label folder is read as is; its transmurality is then the
phantom's depth parameter, not a measurement (marked in the summary).

Published EMIDEC statistics are only those we can check (approximate, from the literature): 150
exams, 100 with myocardial infarction and 50 normal; training set 67 pathological and 33 normal,
test set 33 and 17 (Lalande et al., Data 5(4):89, 2020; Lalande et al., "Deep learning methods
for automatic evaluation of delayed enhancement-MRI. The results of the EMIDEC challenge",
Medical Image Analysis, 2022, arXiv:2108.04016; https://emidec.com/dataset). No per-case
distribution of infarct size, transmurality or no-reflow is used from the literature.

Written: ``summary.json`` (statistics, two-sample Kolmogorov-Smirnov distances to each
reference) and ``realism.png`` (histograms and segment frequencies).
"""

from __future__ import annotations

import csv
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy import stats

from lgemri.atomic import atomic_path, write_text
from lgemri.errors import InputError

from .hybrid import find_subjects, load_subject, prepared_root
from .wall import measure

__all__ = ["realism_report", "simulated_cases", "reference_cases", "EMIDEC_LITERATURE"]

logger = logging.getLogger(__name__)

EMIDEC_LITERATURE = {
    "status": "approximate, from the literature",
    "citation": (
        "Lalande et al., Data 5(4):89, 2020; Lalande et al., Medical Image Analysis 2022 "
        "(arXiv:2108.04016); https://emidec.com/dataset"
    ),
    "exams": 150,
    "pathological_exams": 100,
    "training_set": {"pathological": 67, "normal": 33},
    "test_set": {"pathological": 33, "normal": 17},
    "pathological_fraction": round(100 / 150, 3),
    "note": "no published per-case distribution of infarct size, transmurality or no-reflow is used",
}
METRICS = ("infarct_pct", "transmurality_mean_pct", "transmurality_max_pct", "no_reflow_pct")


def _float(text: str) -> float | None:
    return float(text) if text not in ("", None) else None


def simulated_cases(sim_dir: str | os.PathLike) -> list[dict]:
    """One dict per simulated case, read from ``manifest.csv`` or the shard manifests.

    Raises:
        InputError: no manifest in ``sim_dir``.
    """
    sim_dir = Path(sim_dir)
    paths = sorted(sim_dir.glob("manifest.csv")) + sorted(sim_dir.glob("manifest.shard-*-of-*.csv"))
    if not paths:
        raise InputError(f"{sim_dir}: no simulator manifest (manifest.csv or manifest.shard-i-of-n.csv) found")
    cases: dict[str, dict] = {}
    for path in paths:
        with open(path, encoding="utf-8", newline="") as f:
            for row in csv.DictReader(f):
                if row["case_id"] in cases:
                    continue
                cases[row["case_id"]] = {
                    "case_id": row["case_id"],
                    "infarct_pct": _float(row["infarct_pct"]) or 0.0,
                    "no_reflow_pct": _float(row["no_reflow_pct"]) or 0.0,
                    "transmurality_mean_pct": _float(row["transmurality_mean_pct"]) or 0.0,
                    "transmurality_max_pct": _float(row["transmurality_max_pct"]) or 0.0,
                    "segments": [int(s) for s in row["segments_hit"].split(";") if s],
                    "territory": row["territory"],
                }
    return list(cases.values())


def _measured(root: Path, territories: dict[str, str] | None = None, split: str | None = None) -> list[dict]:
    cases = []
    for subject_id, path in find_subjects(root, split, "--reference-split"):
        subject = load_subject(subject_id, path)
        if subject is None:
            continue
        m = measure(subject.wall, subject.label)
        cases.append(
            {
                "case_id": subject_id,
                "infarct_pct": m.infarct_pct,
                "no_reflow_pct": m.no_reflow_pct,
                "transmurality_mean_pct": m.case_transmurality_mean,
                "transmurality_max_pct": m.case_transmurality_max,
                "segments": list(m.segments),
                "territory": (territories or {}).get(subject_id) or m.territory,
            }
        )
    return cases


def reference_cases(path: str | os.PathLike, split: str | None = None) -> tuple[str, str, list[dict]]:
    """``(name, kind, cases)`` of a reference: a ``phantom.json``, a folder holding one, an
    EMIDEC-layout folder of labelled cases, or the cases of ``split`` in a prepared folder
    (``split`` is needed there and ignored for the other kinds).

    Raises:
        InputError: the path is none of these, holds no usable case, or is a prepared folder
            without ``split``.
    """
    path = Path(path)
    prepared = prepared_root(path) if path.is_dir() else None
    if prepared is not None:
        cases = _measured(prepared, split=split)
        return (
            f"labelled cases ({prepared}, {split} split)",
            f"prepared folder, {split} split, measured from the labels",
            cases,
        )
    if path.is_dir() and (path / "phantom.json").is_file():
        path = path / "phantom.json"
    if path.is_file():
        try:
            index = json.loads(path.read_text(encoding="utf-8"))
            truths = index["cases"]
        except (ValueError, KeyError, TypeError) as exc:
            raise InputError(f"{path}: not a phantom.json ground-truth file ({exc})") from exc
        territories = {t["case_id"]: t.get("territory") for t in truths}
        labels = path.parent / "emidec"
        if labels.is_dir():
            return f"phantom ground truth ({path})", "phantom, measured from its labels", _measured(labels, territories)
        cases = [
            {
                "case_id": t["case_id"],
                "infarct_pct": float(t["infarct_percent_lv"]),
                "no_reflow_pct": float(t["no_reflow_percent_lv"]),
                "transmurality_mean_pct": None,
                "transmurality_max_pct": 100.0 * float(t.get("max_transmurality", 0.0)),
                "segments": sorted(int(s) for s in t.get("infarct_segments", {})),
                "territory": t.get("territory") or "",
            }
            for t in truths
        ]
        return f"phantom ground truth ({path})", "phantom.json (transmurality: the depth parameter)", cases
    if path.is_dir():
        return f"labelled cases ({path})", "EMIDEC layout, measured from the labels", _measured(path)
    raise InputError(f"{path}: reference must be a phantom.json, a phantom output folder or an EMIDEC-layout folder")


def _describe(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    a = np.asarray(values, dtype=float)
    p5, median, p95 = np.percentile(a, [5, 50, 95])
    return {
        "n": int(a.size),
        "mean": round(float(a.mean()), 3),
        "sd": round(float(a.std(ddof=1)) if a.size > 1 else 0.0, 3),
        "median": round(float(median), 3),
        "p5": round(float(p5), 3),
        "p95": round(float(p95), 3),
    }


def _values(cases: list[dict], key: str) -> list[float]:
    return [c[key] for c in cases if c.get(key) is not None]


def _summary(cases: list[dict]) -> dict:
    infarcted = [c for c in cases if c["infarct_pct"] > 0]
    n = len(infarcted)

    def share(count: int) -> float:
        return round(count / n, 4) if n else 0.0

    segment_freq = {str(s): share(sum(s in c["segments"] for c in infarcted)) for s in range(1, 18)}
    territory = {t: share(sum(c["territory"] == t for c in infarcted)) for t in ("LAD", "RCA", "LCX")}
    with_nr = [c for c in infarcted if c["no_reflow_pct"] > 0]
    return {
        "cases": len(cases),
        "infarcted": n,
        "pathological_fraction": round(n / len(cases), 4) if cases else 0.0,
        "metrics": {key: _describe(_values(infarcted, key)) for key in METRICS},
        "no_reflow_presence": round(len(with_nr) / n, 4) if n else 0.0,
        "segments_per_case": _describe([len(c["segments"]) for c in infarcted]),
        "segment_frequency": segment_freq,
        "territory_share": territory,
    }


def _compare(sim: list[dict], ref: list[dict], sim_summary: dict, ref_summary: dict) -> dict:
    out = {}
    sim_inf = [c for c in sim if c["infarct_pct"] > 0]
    ref_inf = [c for c in ref if c["infarct_pct"] > 0]
    for key in METRICS:
        a, b = _values(sim_inf, key), _values(ref_inf, key)
        if len(a) >= 2 and len(b) >= 2:
            result = stats.ks_2samp(a, b)
            out[key] = {"ks_distance": round(float(result.statistic), 4), "p_value": round(float(result.pvalue), 4)}
        else:
            out[key] = {"ks_distance": None, "note": "fewer than two infarcted cases on one side"}
    fs, fr = sim_summary["segment_frequency"], ref_summary["segment_frequency"]
    out["segment_frequency_mean_abs_diff"] = round(float(np.mean([abs(fs[s] - fr[s]) for s in fs])), 4)
    out["no_reflow_presence_diff"] = round(sim_summary["no_reflow_presence"] - ref_summary["no_reflow_presence"], 4)
    return out


def _short(name: str) -> str:
    """A legend label: the reference's kind without its path."""
    return name.split(" (")[0]


def _plot(
    path: Path, sim: list[dict], refs: list[tuple[str, list[dict]]], sim_summary: dict, ref_summaries: list[dict]
) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(15, 8.5))
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, 3)
    panels = [
        ("infarct_pct", "infarct size (% of LV myocardium)", (0, 60)),
        ("transmurality_max_pct", "largest sector transmurality (%)", (0, 100)),
        ("transmurality_mean_pct", "mean sector transmurality (%)", (0, 100)),
        ("no_reflow_pct", "no-reflow (% of LV myocardium, cases with it)", (0, 15)),
    ]
    series = [("simulated", sim)] + refs
    for ax, (key, title, lims) in zip(axes.ravel(), panels):
        bins = np.linspace(*lims, 21)
        for name, cases in series:
            values = _values([c for c in cases if c["infarct_pct"] > 0], key)
            if key == "no_reflow_pct":  # the cases with a no-reflow core
                values = [v for v in values if v > 0]
            if values:
                label = f"{_short(name)} (n={len(values)})"
                ax.hist(np.clip(values, *lims), bins=bins, density=True, histtype="step", linewidth=2, label=label)
        ax.set_title(title)
        ax.legend(fontsize=7)
    ax = axes[1, 1]
    width = 0.8 / (1 + len(ref_summaries))
    x = np.arange(1, 18)
    summaries = [("simulated", sim_summary)] + [(r[0], s) for r, s in zip(refs, ref_summaries)]
    for n, (name, summary) in enumerate(summaries):
        heights = [summary["segment_frequency"][str(s)] for s in x]
        ax.bar(x + (n - len(ref_summaries) / 2) * width, heights, width, label=_short(name))
    ax.set_xticks(x)
    ax.set_title("AHA segments hit (share of infarcted cases)")
    ax.legend(fontsize=7)
    ax = axes[1, 2]
    names = ["LAD", "RCA", "LCX"]
    for n, (name, summary) in enumerate(summaries):
        heights = [summary["territory_share"][t] for t in names]
        ax.bar(np.arange(3) + (n - len(ref_summaries) / 2) * width, heights, width, label=_short(name))
    ax.set_xticks(np.arange(3), names)
    ax.set_title("dominant territory (share of infarcted cases)")
    ax.legend(fontsize=7)
    fig.suptitle(
        "Simulated infarcts against the references (EMIDEC figures: see summary.json, approximate, from the literature)"
    )
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=80, format="png")


def realism_report(
    sim_dir: str | os.PathLike,
    out_dir: str | os.PathLike | None = None,
    references: Sequence[str | os.PathLike] = (),
    reference_split: str | None = None,
) -> Path:
    """Compare a simulator output with references; returns the path of ``summary.json``.

    Args:
        sim_dir: the simulator's output folder (its manifest or shard manifests).
        out_dir: where to write ``summary.json`` and ``realism.png`` (default ``sim_dir/report``).
        references: phantom.json files, phantom output folders, EMIDEC-layout folders or
            prepared folders.
        reference_split: the split (train, val, test) taken from every prepared folder among
            ``references`` (required when there is one).

    Raises:
        InputError: no manifest, or a reference that cannot be read; a prepared folder without
            ``reference_split``, or ``reference_split`` with no prepared folder to apply to.
    """
    sim_dir = Path(sim_dir)
    out = Path(out_dir) if out_dir is not None else sim_dir / "report"
    if reference_split is not None and not any(Path(r).is_dir() and prepared_root(r) for r in references):
        raise InputError(
            f"--reference-split {reference_split} applies to a prepared folder (cases.json and nifti/) "
            "given with --reference; none was given"
        )
    sim = simulated_cases(sim_dir)
    sim_summary = _summary(sim)
    refs, ref_entries, ref_summaries = [], [], []
    for path in references:
        name, kind, cases = reference_cases(path, reference_split)
        if not cases:
            raise InputError(f"{path}: no usable reference case")
        summary = _summary(cases)
        refs.append((name, cases))
        ref_summaries.append(summary)
        comparison = _compare(sim, cases, sim_summary, summary)
        ref_entries.append({"name": name, "kind": kind, **summary, "comparison": comparison})
    pathological_diff = sim_summary["pathological_fraction"] - EMIDEC_LITERATURE["pathological_fraction"]
    report = {
        "simulated": {"source": str(sim_dir), **sim_summary},
        "references": ref_entries,
        "emidec_literature": {
            **EMIDEC_LITERATURE,
            "comparison": {"pathological_fraction_diff": round(pathological_diff, 4)},
        },
    }
    _plot(out / "realism.png", sim, refs, sim_summary, ref_summaries)
    path = out / "summary.json"
    write_text(path, json.dumps(report, indent=1) + "\n")
    logger.info("realism report of %d simulated cases against %d reference(s): %s", len(sim), len(refs), out)
    return path

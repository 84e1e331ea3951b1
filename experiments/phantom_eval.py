"""Segmentation quality on held-out phantom studies and on variants the models never saw.

Runs the `cardiac-mi infer` cascade on every study of a phantom test set (seeds never used for
training), scores it with `cardiac-mi evaluate`'s code (means over all cases, where a structure
absent from both truth and prediction scores 1, as well as over the cases that have it), measures the LV-centre error of the
localization stage, and repeats on variants of the same studies: stronger noise, other
contrast (gamma), and other pixel sizes than the phantom's 1.2-2.0 mm.

    .venv/bin/cardiac-mi phantom --out /tmp/phantom-test --cases 40 --seed 5000 --format emidec
    .venv/bin/python experiments/phantom_eval.py --test /tmp/phantom-test --out /tmp/phantom-eval [--models models]

Writes ``results.json`` and ``results.md`` (a table) into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np

from lgemri.emidec import find_cases, load_case
from lgemri.evaluation import evaluate
from lgemri.geometry import lv_centre, resample_inplane
from lgemri.inference import load_models, segment_volume
from lgemri.metrics import dice
from lgemri.volume import Volume, write_nifti

VARIANTS = {
    "as generated": lambda image, label, rng: (image, label),
    "noise x3": lambda image, label, rng: (_rician(image, rng, 3.0), label),
    "gamma 0.6": lambda image, label, rng: (_gamma(image, 0.6), label),
    "gamma 1.6": lambda image, label, rng: (_gamma(image, 1.6), label),
    "pixels 0.8 mm": lambda image, label, rng: _respace(image, label, 0.8),
    "pixels 2.4 mm": lambda image, label, rng: _respace(image, label, 2.4),
}


def _rician(image: Volume, rng: np.random.Generator, factor: float) -> Volume:
    """Add noise so that the background standard deviation grows ``factor`` times."""
    arr = image.array.astype(np.float32)
    background = arr[arr <= np.percentile(arr, 20)]
    sigma = max(float(background.std()), 1.0) * factor
    noisy = np.hypot(arr + rng.normal(0, sigma, arr.shape), rng.normal(0, sigma, arr.shape))
    return Volume(noisy.astype(np.float32), image.affine)


def _gamma(image: Volume, gamma: float) -> Volume:
    arr = image.array.astype(np.float32)
    top = float(np.percentile(arr, 99.9)) or 1.0
    return Volume((np.clip(arr / top, 0, None) ** gamma * top).astype(np.float32), image.affine)


def _respace(image: Volume, label: Volume, spacing: float) -> tuple[Volume, Volume]:
    img = resample_inplane(Volume(image.array.astype(np.float32), image.affine), spacing, order=3)
    lab = resample_inplane(label, spacing, order=0)
    return img, lab


def _centre_ras(label: Volume) -> np.ndarray | None:
    grid = resample_inplane(label, 1.0, order=0)
    centre = lv_centre(grid.array)
    if centre is None:
        return None
    return (grid.affine @ np.array([centre[0], centre[1], grid.shape[2] // 2, 1.0]))[:3]


def run_variant(name, cases, models, out: Path, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    pred_dir, truth_dir = out / name.replace(" ", "_") / "pred", out / name.replace(" ", "_") / "truth"
    errors, seconds = [], []
    present: dict[str, list[float]] = {"infarct": [], "no_reflow": []}
    for case in cases:
        image, label = VARIANTS[name](case.image, case.label, rng)
        result = segment_volume(image, models)
        write_nifti(result.label, pred_dir / f"{case.case_id}.nii.gz")
        write_nifti(label, truth_dir / f"{case.case_id}.nii.gz")
        seconds.append(result.timings["total"])
        for name_, values in (("infarct", (3, 4)), ("no_reflow", (4,))):
            truth_mask = np.isin(label.array, values)
            if truth_mask.any():
                present[name_].append(dice(np.isin(result.label.array, values), truth_mask))
        truth_centre = _centre_ras(label)
        if truth_centre is not None and result.roi:
            errors.append(float(np.linalg.norm(np.asarray(result.roi["centre_ras_mm"]) - truth_centre)))
        elif truth_centre is not None:
            errors.append(float("inf"))
    summary = evaluate(pred_dir, truth_dir, out / name.replace(" ", "_") / "metrics")
    mean = summary["mean"]
    errors_arr = np.asarray(errors)
    return {
        "cases": len(cases),
        "dice_myocardium": mean["emidec"]["dice_myocardium"],
        "dice_infarct": mean["emidec"]["dice_infarct"],
        "dice_no_reflow": mean["emidec"]["dice_no_reflow"],
        "dice_cavity": mean["classes"]["lv_cavity"]["dice"],
        "dice_infarct_cases_with_infarct": float(np.mean(present["infarct"])) if present["infarct"] else None,
        "dice_no_reflow_cases_with_no_reflow": float(np.mean(present["no_reflow"])) if present["no_reflow"] else None,
        "hausdorff_myocardium_mm": mean["emidec"]["hausdorff_myocardium_mm"],
        "lv_centre_within_5mm_percent": float(100.0 * np.mean(errors_arr <= 5.0)) if len(errors_arr) else None,
        "lv_centre_error_median_mm": float(np.median(errors_arr)) if len(errors_arr) else None,
        "seconds_per_study_median": float(np.median(seconds)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--test", required=True, type=Path, help="phantom folder (holds emidec/)")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--models", default=None)
    parser.add_argument(
        "--variants", default=",".join(VARIANTS), help="comma-separated subset of: " + ", ".join(VARIANTS)
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    models = load_models(args.models)
    root = args.test / "emidec"
    cases = [load_case(root, case_id) for case_id in find_cases(root)]
    for case in cases:
        case.label = Volume(case.label.array, case.image.affine)
    results = {name: run_variant(name, cases, models, args.out, i) for i, name in enumerate(args.variants.split(","))}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    keys = list(next(iter(results.values())))
    lines = ["| variant | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for name, row in results.items():
        lines.append(
            f"| {name} | " + " | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in row.values()) + " |"
        )
    (args.out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

"""The GAN ablation's arms scored through the whole product path, with 95 % confidence intervals.

``experiments/gan_ablation.py`` trains the arms (ARD: augmented real slices; MD: half real, half
GAN slices; the same budget and hyper-parameters) and scores their networks on ROI slices. This
script asks the question a user has: does the cascade that ``cardiac-mi infer`` runs segment real
studies better with MD's network than with ARD's? For every finished run (``last.pt``, no epoch
selected) it makes a models folder (the run's network as ``segmentation.pt`` beside a fixed
localization model, the cascade's default post-processing), runs ``cardiac-mi infer`` on the real
studies of a split, at their own geometry, and scores each study as ``real_eval.py`` does (3D Dice
of EMIDEC's groups: cavity {1}, myocardium {2, 3, 4}, infarct {3, 4}, no-reflow {4}).

Statistics, per arm and group:

- **mean**: over the studies that have the group (infarct: studies with an infarct; no-reflow:
  studies with no-reflow), of each study's Dice averaged over the arm's seeds;
- **95 % CI**: percentile bootstrap over those studies (10,000 resamples, seeded), so it says how
  much the figure would move with other studies of the same kind;
- **seeds**: the mean of each seed's run, which shows how much training noise there is;
- **MD - ARD**: the paired difference per study, its mean and bootstrap CI. When the CI excludes
  0 the difference is larger than study-to-study noise.

    .venv/bin/python experiments/gan_ablation_infer.py --work runs/abl-infer --cases data/real-prep/nifti \\
        --split-from data/real-prep --split val [--localization models/localization.pt]

Writes ``infer-<split>.json`` and ``infer-<split>.md`` into the work folder and prints the table.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from experiments.gan_ablation import ARMS, load_design  # noqa: E402
from experiments.real_eval import GROUPS, run_infer, score, select_cases  # noqa: E402
from lgemri.atomic import write_text  # noqa: E402
from lgemri.training.run_folder import LAST  # noqa: E402
from lgemri.volume import read_nifti  # noqa: E402

logger = logging.getLogger("gan_ablation_infer")
#: Which studies a group's mean is taken over (real_eval's rule).
WHERE = {"cavity": None, "myocardium": None, "infarct": "has_infarct", "no_reflow": "has_no_reflow"}
RESAMPLES = 10_000


def bootstrap_ci(values: Sequence[float], seed: int = 0, resamples: int = RESAMPLES) -> tuple[float, float]:
    """95 % percentile bootstrap interval of the mean of ``values``."""
    x = np.asarray(values, dtype=float)
    if len(x) < 2:
        return (float("nan"), float("nan"))
    means = x[np.random.default_rng(seed).integers(0, len(x), size=(resamples, len(x)))].mean(axis=1)
    low, high = np.percentile(means, (2.5, 97.5))
    return float(low), float(high)


def finished_runs(work: Path, epochs: int) -> dict[str, dict[int, Path]]:
    """``{arm: {seed: last.pt}}`` of the runs that trained all ``epochs``."""
    import torch

    runs: dict[str, dict[int, Path]] = {}
    for arm in ARMS:
        for last in sorted(work.glob(f"runs/{arm}-s*/{LAST}")):
            if torch.load(last, map_location="cpu", weights_only=True).get("epoch", 0) < epochs:
                logger.warning("%s: unfinished; left out", last.parent)
                continue
            runs.setdefault(arm, {})[int(last.parent.name.rsplit("-s", 1)[1])] = last
    return runs


def models_folder(last: Path, localization: Path, dest: Path) -> Path:
    """A models folder serving ``last`` (as trained: no flip TTA, default post-processing)."""
    from experiments.publish_models import publish

    dest.mkdir(parents=True, exist_ok=True)
    if not (dest / "segmentation.pt").is_file():
        publish(last, dest / "segmentation.pt", flip_tta=False)
    shutil.copyfile(localization, dest / "localization.pt")
    return dest


def score_run(models: Path, cases_dir: Path, cases: list[str], out: Path) -> dict[str, dict]:
    """``cardiac-mi infer`` on the cases (skipped where its labels are there), each scored."""
    if not all((out / f"{c}.nii.gz").is_file() for c in cases):
        run_infer([cases_dir / c / "Images" / f"{c}.nii.gz" for c in cases], out, models)
    rows = {}
    for c in cases:
        pred, truth = read_nifti(out / f"{c}.nii.gz"), read_nifti(cases_dir / c / "Contours" / f"{c}.nii.gz")
        rows[c] = score(pred.array, truth.array)
    return rows


def summarise_arms(per_run: dict[str, dict[int, dict[str, dict]]], reference: str = "ard") -> dict:
    """Means, bootstrap CIs, per-seed means and the paired difference to ``reference`` per group."""
    out: dict[str, dict] = {}
    for arm, seeds in per_run.items():
        cases = sorted(next(iter(seeds.values())))
        out[arm] = {"seeds": sorted(seeds), "groups": {}}
        for group in GROUPS:
            where = WHERE[group]
            used = [c for c in cases if where is None or next(iter(seeds.values()))[c][where]]
            per_case = {c: float(np.mean([rows[c][group] for rows in seeds.values()])) for c in used}
            entry = {
                "studies": len(used),
                "mean": float(np.mean(list(per_case.values()))) if used else None,
                "ci95": bootstrap_ci(list(per_case.values())),
                "seed_means": [float(np.mean([rows[c][group] for c in used])) for rows in seeds.values()],
                "per_case": per_case,
            }
            if arm != reference and reference in out:
                ref = out[reference]["groups"][group]["per_case"]
                diff = [per_case[c] - ref[c] for c in used]
                entry["minus_" + reference] = {"mean": float(np.mean(diff)), "ci95": bootstrap_ci(diff)}
            out[arm]["groups"][group] = entry
    return out


def markdown(summary: dict, split: str, reference: str = "ard") -> str:
    groups = list(GROUPS)
    lines = [
        f"Real `{split}` studies through `cardiac-mi infer`: mean Dice [95 % bootstrap CI over studies]; "
        "seed means in parentheses",
        "",
        "| arm | " + " | ".join(f"{g} (n)" for g in groups) + " |",
        "| --- |" + " --- |" * len(groups),
    ]
    for arm, entry in summary.items():
        cells = []
        for g in groups:
            e = entry["groups"][g]
            low, high = e["ci95"]
            seeds = ", ".join(f"{v:.3f}" for v in e["seed_means"])
            cells.append(f"{e['mean']:.3f} [{low:.3f}, {high:.3f}] ({seeds}) n={e['studies']}")
        lines.append(f"| {arm} ({len(entry['seeds'])} seeds) | " + " | ".join(cells) + " |")
    for arm, entry in summary.items():
        if arm == reference:
            continue
        cells = []
        for g in groups:
            d = entry["groups"][g].get("minus_" + reference)
            cells.append("—" if d is None else f"{d['mean']:+.3f} [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}]")
        lines.append(f"| **{arm} − {reference}** (paired) | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", required=True, type=Path, help="gan_ablation.py work folder")
    parser.add_argument("--cases", required=True, type=Path, help="EMIDEC-layout folder of the real studies")
    parser.add_argument("--split-from", required=True, type=Path, help="prepared folder whose cases.json splits")
    parser.add_argument("--split", default="val")
    parser.add_argument("--localization", type=Path, default=ROOT / "models" / "localization.pt")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    design, config = load_design(args.work)
    cases = select_cases(args.cases, args.split_from, args.split)
    if not cases:
        parser.error(f"no case of split {args.split!r} in {args.cases}")
    runs = finished_runs(args.work, config.epochs)
    if "ard" not in runs:
        parser.error(f"{args.work}: no finished ard run to compare with")
    per_run: dict[str, dict[int, dict]] = {}
    for arm, seeds in runs.items():
        for seed, last in sorted(seeds.items()):
            models = models_folder(last, args.localization, args.work / "models" / f"{arm}-s{seed}")
            rows = score_run(models, args.cases, cases, args.work / "infer" / args.split / f"{arm}-s{seed}")
            per_run.setdefault(arm, {})[seed] = rows
    summary = summarise_arms(per_run)
    result = {"split": args.split, "cases": cases, "localization": str(args.localization), "arms": summary}
    write_text(args.work / f"infer-{args.split}.json", json.dumps(result, indent=1) + "\n")
    text = markdown(summary, args.split)
    write_text(args.work / f"infer-{args.split}.md", text)
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

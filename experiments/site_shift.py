"""How the shipped cascade holds up when real studies change in the ways scanners and sites differ.

The shipped models are judged on LGE from hospitals nobody here has seen (finer pixels, thicker
slices, a wider field of view, other intensity scales). This takes held-out real cases and
rewrites them as another site would have acquired them, the reference label carried along on
the same grid, then runs ``cardiac-mi infer`` (one process per shift, as a user would) and scores
every study as ``experiments/real_eval.py`` does:

- ``none``: the cases as prepared (the baseline row);
- ``fine-pixels``: resampled in-plane to 0.73 mm pixels (linear for the image, nearest for the label);
- ``nominal-pixels``: the same array read at square pixels of the same area, so with the stretch of
  an EMIDEC PNG whose geometry was not recovered (the heart up to a third wider than tall);
- ``wide-fov``: zero-padded in-plane to a 400 mm field of view, the heart off centre;
- ``sparse-slices``: every second slice kept, so slices twice as far apart (20 mm on EMIDEC);
- ``thick-slices``: two neighbouring slices averaged into one of twice the thickness (partial
  volume over 20 mm, harsher than the 8-10 mm slices sites use), the label of the first kept, so
  the reference itself is off where the two slices differ: a pessimistic bound;
- ``12-bit``: intensities scaled to 0–4095 with an offset (12-bit storage instead of 8-bit PNG);
- ``bias``: a smooth multiplicative bias field, 0.65–1.35 across the field of view (coil shading);
- ``rotated``: the image plane turned 90° about the slice normal (another planning of the short axis);
- ``site``: fine pixels, wide FOV, sparse slices, 12-bit and bias together.

    .venv/bin/python experiments/site_shift.py --cases data/real-prep/nifti --split-from data/real-prep \\
        --split test --out runs/site-shift-test [--models models] [--shifts fine-pixels,site]

Writes the shifted cases (EMIDEC layout, under ``--out``: derived from EMIDEC, keep them out of
git), ``results.json`` and ``results.md``, and prints per shift the means, each beside the
baseline's (the difference first), then the per-study table of every shift.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy import ndimage

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from experiments.real_eval import _table, add_case_arguments, run_infer, score, select_cases, summarise  # noqa: E402
from lgemri.volume import Volume, read_nifti, write_nifti  # noqa: E402

FINE_MM = 0.73
WIDE_FOV_MM = 400.0
METRICS = ("cavity", "myocardium", "infarct", "no_reflow", "call_accuracy")

Shift = Callable[[Volume, Volume, np.random.Generator], tuple[Volume, Volume]]


def _scaled(affine: np.ndarray, factors: tuple[float, float, float]) -> np.ndarray:
    out = affine.copy()
    out[:3, :3] = affine[:3, :3] * np.asarray(factors)
    return out


def fine_pixels(image: Volume, label: Volume, rng: np.random.Generator) -> tuple[Volume, Volume]:
    zoom = (image.spacing[0] / FINE_MM, image.spacing[1] / FINE_MM, 1.0)
    array = ndimage.zoom(image.array, zoom, order=1, grid_mode=True, mode="grid-constant")
    truth = ndimage.zoom(label.array, zoom, order=0, grid_mode=True, mode="grid-constant")
    factors = tuple(image.shape[a] / array.shape[a] for a in range(3))
    # grid_mode zoom keeps the outer edges of the field of view: the first voxel centre moves by half
    # the difference of the old and new voxel sizes
    affine = _scaled(image.affine, factors)
    shift = image.affine[:3, :3] @ (0.5 * (np.asarray(factors) - 1.0))
    affine[:3, 3] = image.affine[:3, 3] + shift
    return Volume(array.astype(np.float32), affine), Volume(truth.astype(np.uint8), affine)


def nominal_pixels(image: Volume, label: Volume, rng: np.random.Generator) -> tuple[Volume, Volume]:
    mean = float(np.sqrt(image.spacing[0] * image.spacing[1]))
    affine = _scaled(image.affine, (mean / image.spacing[0], mean / image.spacing[1], 1.0))
    return Volume(image.array, affine), Volume(label.array, affine)


def wide_fov(image: Volume, label: Volume, rng: np.random.Generator) -> tuple[Volume, Volume]:
    pads = []
    for axis in (0, 1):
        extra = max(0, int(round(WIDE_FOV_MM / image.spacing[axis])) - image.shape[axis])
        before = int(rng.integers(0, extra + 1))
        pads.append((before, extra - before))
    pads.append((0, 0))
    affine = image.affine.copy()
    affine[:3, 3] = image.affine[:3, 3] - image.affine[:3, :3] @ np.array([pads[0][0], pads[1][0], 0])
    return Volume(np.pad(image.array, pads), affine), Volume(np.pad(label.array, pads), affine)


def thick_slices(image: Volume, label: Volume, rng: np.random.Generator) -> tuple[Volume, Volume]:
    n = image.shape[2] // 2 * 2
    if n < 2:
        return image, label
    array = 0.5 * (image.array[:, :, 0:n:2] + image.array[:, :, 1:n:2])
    affine = _scaled(image.affine, (1.0, 1.0, 2.0))
    affine[:3, 3] = image.affine[:3, 3] + 0.5 * image.affine[:3, 2]  # centred between the two slices
    return Volume(array.astype(np.float32), affine), Volume(label.array[:, :, 0:n:2].copy(), affine)


def sparse_slices(image: Volume, label: Volume, rng: np.random.Generator) -> tuple[Volume, Volume]:
    if image.shape[2] < 4:
        return image, label
    affine = _scaled(image.affine, (1.0, 1.0, 2.0))
    return Volume(image.array[:, :, ::2].copy(), affine), Volume(label.array[:, :, ::2].copy(), affine)


def twelve_bit(image: Volume, label: Volume, rng: np.random.Generator) -> tuple[Volume, Volume]:
    top = float(image.array.max()) or 1.0
    array = image.array / top * 3800.0 + 120.0
    return Volume(np.round(array).astype(np.float32), image.affine), label


def bias(image: Volume, label: Volume, rng: np.random.Generator) -> tuple[Volume, Volume]:
    i, j = np.meshgrid(*(np.linspace(-1.0, 1.0, image.shape[a]) for a in (0, 1)), indexing="ij")
    angle = rng.uniform(0.0, 2.0 * np.pi)
    ramp = np.cos(angle) * i + np.sin(angle) * j
    field = 1.0 + 0.35 * ramp / np.abs(ramp).max()
    return Volume((image.array * field[:, :, None]).astype(np.float32), image.affine), label


def rotated(image: Volume, label: Volume, rng: np.random.Generator) -> tuple[Volume, Volume]:
    # the array turned, its axes keeping their directions: the pixel sizes of the two axes swap
    # with their content, so that the anatomy keeps its true shape and turns in the patient frame
    affine = image.affine.copy()
    directions = image.affine[:3, :2] / image.spacing[:2]
    affine[:3, 0], affine[:3, 1] = directions[:, 0] * image.spacing[1], directions[:, 1] * image.spacing[0]
    return (
        Volume(np.ascontiguousarray(np.rot90(image.array, 1, axes=(0, 1))), affine),
        Volume(np.ascontiguousarray(np.rot90(label.array, 1, axes=(0, 1))), affine),
    )


def site(image: Volume, label: Volume, rng: np.random.Generator) -> tuple[Volume, Volume]:
    for step in (fine_pixels, wide_fov, sparse_slices, twelve_bit, bias):
        image, label = step(image, label, rng)
    return image, label


SHIFTS: dict[str, Shift | None] = {
    "none": None,
    "fine-pixels": fine_pixels,
    "nominal-pixels": nominal_pixels,
    "wide-fov": wide_fov,
    "sparse-slices": sparse_slices,
    "thick-slices": thick_slices,
    "12-bit": twelve_bit,
    "bias": bias,
    "rotated": rotated,
    "site": site,
}


def write_shifted(
    cases_dir: Path, cases: list[str], shift: Shift | None, out: Path, seed: int
) -> tuple[list[Path], list[Volume]]:
    """The shifted cases in EMIDEC layout under ``out``: the image paths ``infer`` reads, and the
    shifted reference labels."""
    images, labels = [], []
    for n, case in enumerate(cases):
        image = read_nifti(cases_dir / case / "Images" / f"{case}.nii.gz")
        label = read_nifti(cases_dir / case / "Contours" / f"{case}.nii.gz")
        if shift is not None:
            image, label = shift(image, label, np.random.default_rng([seed, n]))
        images.append(write_nifti(image, out / case / "Images" / f"{case}.nii.gz"))
        write_nifti(label, out / case / "Contours" / f"{case}.nii.gz")
        labels.append(label)
    return images, labels


def _means(summary: dict) -> dict[str, float | None]:
    return {m: summary.get(m) for m in METRICS}


def _summary_table(means: dict[str, dict]) -> str:
    base = means["none"] if "none" in means else None
    lines = [
        "| shift | " + " | ".join(f"{m} (Δ, value)" for m in METRICS) + " |",
        "| --- |" + " --- |" * len(METRICS),
    ]
    for name, row in means.items():
        cells = []
        for m in METRICS:
            value = row[m]
            if value is None:
                cells.append("–")
            elif base is None or base[m] is None or name == "none":
                cells.append(f"{value:.3f}")
            else:
                cells.append(f"{value - base[m]:+.3f}, {value:.3f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_case_arguments(parser)
    parser.add_argument("--shifts", default=",".join(SHIFTS), help=f"comma-separated, of: {', '.join(SHIFTS)}")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random parts (padding, bias direction)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    names = [s for s in args.shifts.split(",") if s]
    unknown = sorted(set(names) - set(SHIFTS))
    if unknown:
        parser.error(f"unknown shift(s) {', '.join(unknown)}; choose from {', '.join(SHIFTS)}")
    cases = select_cases(args.cases, args.split_from, args.split)
    if not cases:
        parser.error(f"no case of split {args.split!r} in {args.cases}")

    results: dict = {"cases_dir": str(args.cases), "split": args.split, "cases": cases, "shifts": {}}
    means, tables = {}, []
    for name in names:
        work = args.out / name
        images, truths = write_shifted(args.cases, cases, SHIFTS[name], work / "cases", args.seed)
        seconds = run_infer(images, work / "predictions", args.models)
        rows = []
        for case, truth in zip(cases, truths):
            pred = read_nifti(work / "predictions" / f"{case}.nii.gz")
            if pred.shape != truth.shape:
                raise SystemExit(f"{case} ({name}): prediction shape {pred.shape} differs from the truth {truth.shape}")
            rows.append(score(pred.array, truth.array))
        summary = summarise(rows)
        means[name] = _means(summary)
        results["shifts"][name] = {"summary": summary, "seconds": seconds, "per_case": dict(zip(cases, rows))}
        tables.append(_table(name, rows, cases))
    title = f"# Site shifts of {args.cases} ({args.split}, {len(cases)} studies, models {args.models or 'shipped'})"
    text = "\n\n".join([title, _summary_table(means), *tables]) + "\n"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    (args.out / "results.md").write_text(text)
    sys.stdout.write(text)


if __name__ == "__main__":
    main()

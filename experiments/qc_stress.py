"""Studies the model should fail on, or doubt: real cases degraded in ways scans go wrong.

For the quality checks (docs/quality.md) a set of held-out results holds few failures: the shipped
models get nearly every real validation and test case right. This writes degraded copies of real
cases (EMIDEC layout, with their reference label, cut alike where the image is cut), so that how
often the checks catch a failed result can be measured:

- ``noise`` (id digit 1): Rician noise, sigma 30 % of the image's 99th percentile (low SNR);
- ``blur`` (2): in-plane Gaussian blur, sigma 3 voxels (motion blur, thick reconstruction);
- ``ghost`` (3): a respiratory ghost, the image shifted by a quarter of the field of view along
  the first axis added at 60 %;
- ``invert`` (4): intensities inverted (a wrong sequence or inversion time: dark scar, bright blood);
- ``cut`` (5): the field of view cut through the middle of the LV (the label cut alike).

A degraded case is named ``Case_<N|P><digit><number>`` (``Case_P1004`` is ``Case_P004`` with
noise); ``stress.json`` in ``--out`` maps each to its source and degradation. Written under the
git-ignored ``data/`` folder; nothing derived from EMIDEC is committed.

    .venv/bin/python experiments/qc_stress.py --cases data/real-prep/nifti --split-from data/real-prep \\
        --split val --out data/qc-stress-val
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from experiments.real_eval import select_cases  # noqa: E402
from lgemri.atomic import write_text  # noqa: E402
from lgemri.volume import Volume, read_nifti, write_nifti  # noqa: E402

DEGRADATIONS = ("noise", "blur", "ghost", "invert", "cut")


def degrade(kind: str, image: np.ndarray, label: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(image, label)`` after degradation ``kind`` (see the module docstring)."""
    image = image.astype(np.float32)
    top = float(np.percentile(image, 99)) or 1.0
    if kind == "noise":
        rng = np.random.default_rng(seed)
        sigma = 0.3 * top
        return np.hypot(image + rng.normal(0, sigma, image.shape), rng.normal(0, sigma, image.shape)).astype(
            np.float32
        ), label
    if kind == "blur":
        return ndimage.gaussian_filter(image, sigma=(3, 3, 0)), label
    if kind == "ghost":
        return image + 0.6 * np.roll(image, image.shape[0] // 4, axis=0), label
    if kind == "invert":
        return image.max() - image, label
    if kind == "cut":
        lv = np.argwhere(label > 0)
        stop = int(lv[:, 1].mean()) + 3 if len(lv) else image.shape[1] // 2
        return np.ascontiguousarray(image[:, :stop]), np.ascontiguousarray(label[:, :stop])
    raise ValueError(kind)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", required=True, type=Path, help="EMIDEC-layout folder")
    parser.add_argument("--split-from", type=Path, help="prepared folder whose cases.json gives the split")
    parser.add_argument("--split", default="val")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    index = {}
    for n, case in enumerate(select_cases(args.cases, args.split_from, args.split)):
        image = read_nifti(args.cases / case / "Images" / f"{case}.nii.gz")
        label = read_nifti(args.cases / case / "Contours" / f"{case}.nii.gz")
        kind_letter, number = case[5], case[6:]
        for digit, kind in enumerate(DEGRADATIONS, start=1):
            name = f"Case_{kind_letter}{digit}{number}"
            img, lab = degrade(kind, image.array, label.array, args.seed + 1000 * digit + n)
            write_nifti(Volume(img, image.affine), args.out / name / "Images" / f"{name}.nii.gz")
            write_nifti(Volume(lab.astype(np.uint8), label.affine), args.out / name / "Contours" / f"{name}.nii.gz")
            index[name] = {"source": case, "degradation": kind}
    write_text(args.out / "stress.json", json.dumps(index, indent=1) + "\n")
    print(f"wrote {len(index)} degraded studies to {args.out}")


if __name__ == "__main__":
    main()

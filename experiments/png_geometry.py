"""How well the PNG importer recovers the pixel size that the EMIDEC PNG copies lost.

Phantom studies (true geometry known) are degraded exactly like the PNG slices
(:func:`lgemri.emidec_png.degrade_like_png`: resized per slice to 256 x 256, 8-bit by the volume
maximum, rotated by 180 degrees), read back by the importer and their recovered in-plane pixel
size compared with the truth (the original spacing times original matrix / 256 per axis).

    .venv/bin/cardiac-mi phantom --out data/phantom-cal --cases 100 --seed 1000 --format emidec
    .venv/bin/cardiac-mi phantom --out data/phantom-test --cases 40 --seed 5000 --format emidec
    .venv/bin/python experiments/png_geometry.py --calibrate data/phantom-cal/emidec
    .venv/bin/python experiments/png_geometry.py --test data/phantom-test/emidec --out runs/png-geometry

``--calibrate`` prints the median mid-ventricular LV diameter (the importer's reference,
``REFERENCE_LV_DIAMETER_MM``); ``--test`` prints per case and overall the error of the stretch
(ratio of the two pixel sizes), of the scale (their geometric mean) and of each axis, and writes
``results.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np

from lgemri.emidec import find_cases, load_case
from lgemri.emidec_png import PNG_SIZE, degrade_like_png, lv_shape_stats, recover_spacing

logger = logging.getLogger("png_geometry")


def _degraded(root: Path, case_id: str) -> tuple[np.ndarray, tuple[float, float]]:
    case = load_case(root, case_id)
    _, labels = degrade_like_png(case.image, case.label)
    label = np.rot90(labels, 2, axes=(0, 1))  # what the importer does
    ni, nj, _ = case.image.shape
    truth = (float(case.image.spacing[0]) * ni / PNG_SIZE, float(case.image.spacing[1]) * nj / PNG_SIZE)
    return label, truth


def calibrate(root: Path) -> float:
    diameters = []
    for case_id in find_cases(root):
        case = load_case(root, case_id)
        sx, sy = (float(s) for s in case.image.spacing[:2])
        stats = lv_shape_stats(case.label.array)
        if stats is not None:
            diameters.append(stats[2] * np.sqrt(sx * sy))
    value = float(np.median(diameters))
    print(
        f"{len(diameters)} studies: mid-ventricular LV diameter median {value:.1f} mm "
        f"(IQR {np.percentile(diameters, 25):.1f}-{np.percentile(diameters, 75):.1f})"
    )
    return value


def test(root: Path, out: Path | None) -> dict:
    rows = []
    for case_id in find_cases(root):
        label, truth = _degraded(root, case_id)
        est = recover_spacing(label)
        stretch_err = (est[0] / est[1]) / (truth[0] / truth[1]) - 1
        scale_err = np.sqrt(est[0] * est[1]) / np.sqrt(truth[0] * truth[1]) - 1
        rows.append(
            {
                "case": case_id,
                "true_mm": [round(t, 4) for t in truth],
                "recovered_mm": [round(e, 4) for e in est],
                "true_stretch": round(truth[0] / truth[1], 4),
                "stretch_error": round(float(stretch_err), 4),
                "scale_error": round(float(scale_err), 4),
                "axis_error": [round(e / t - 1, 4) for e, t in zip(est, truth)],
            }
        )
    print(f"{'case':<12} {'true mm (i, j)':>16} {'recovered':>16} {'stretch err':>12} {'scale err':>10}")
    for r in rows:
        print(
            f"{r['case']:<12} {r['true_mm'][0]:>7.3f} {r['true_mm'][1]:>7.3f}  {r['recovered_mm'][0]:>7.3f} "
            f"{r['recovered_mm'][1]:>7.3f} {100 * r['stretch_error']:>+11.1f}% {100 * r['scale_error']:>+9.1f}%"
        )
    stretch = np.abs([r["stretch_error"] for r in rows])
    scale = np.abs([r["scale_error"] for r in rows])
    axis = np.abs([e for r in rows for e in r["axis_error"]])
    true_stretch = np.abs(np.log([r["true_stretch"] for r in rows]))
    summary = {
        "cases": len(rows),
        "stretch_abs_error_median": float(np.median(stretch)),
        "stretch_abs_error_p90": float(np.percentile(stretch, 90)),
        "scale_abs_error_median": float(np.median(scale)),
        "scale_abs_error_p90": float(np.percentile(scale, 90)),
        "axis_abs_error_median": float(np.median(axis)),
        "axis_abs_error_p90": float(np.percentile(axis, 90)),
        "baseline_no_recovery_stretch_abs_error_median": float(np.median(np.exp(true_stretch) - 1)),
    }
    print(f"\n|error| median / 90th percentile over {len(rows)} studies:")
    print(
        f"  stretch  {100 * summary['stretch_abs_error_median']:.1f} % / {100 * summary['stretch_abs_error_p90']:.1f} %"
        f"   (baseline, square pixels assumed: median {100 * summary['baseline_no_recovery_stretch_abs_error_median']:.1f} %)"
    )
    print(f"  scale    {100 * summary['scale_abs_error_median']:.1f} % / {100 * summary['scale_abs_error_p90']:.1f} %")
    print(f"  per axis {100 * summary['axis_abs_error_median']:.1f} % / {100 * summary['axis_abs_error_p90']:.1f} %")
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps({"summary": summary, "cases": rows}, indent=2) + "\n")
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calibrate", type=Path, help="EMIDEC-layout phantom folder to calibrate the reference on")
    parser.add_argument("--test", type=Path, help="EMIDEC-layout phantom folder to measure the recovery on")
    parser.add_argument("--out", type=Path, help="folder for results.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.calibrate:
        calibrate(args.calibrate)
    if args.test:
        test(args.test, args.out)


if __name__ == "__main__":
    main()

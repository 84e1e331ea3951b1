"""Quality on real LGE through the whole product path, beside a peer model, and on the phantom.

Runs ``cardiac-mi infer`` (one process, as a user would) on whole studies in the EMIDEC layout
and scores every study against its label:

- 3D Dice of EMIDEC's groups: cavity {1}, myocardium {2, 3, 4}, infarct {3, 4}, no-reflow {4};
- infarct % of the LV myocardium, predicted minus true (percentage points);
- the normal / pathological call (pathological when the infarct is at least 1 % of the LV
  myocardium, the rule of ``cardiac-mi infer``'s quantification).

Means: cavity and myocardium over all studies, infarct over the studies with an infarct, no-reflow
over those with no-reflow, the call over all. In the same run the peer, the EMIDEC model of the
``myopari`` 0.1.6 wheel (``experiments/peers``, its own venv ``.venv-peer``), segments the same
files; it was trained on all 100 EMIDEC training cases, so on EMIDEC cases its figures are
optimistic.

    .venv/bin/cardiac-mi prepare --emidec ../shared/data/emidec-png --out data/real-prep
    .venv/bin/python experiments/real_eval.py --cases data/real-prep/nifti --split-from data/real-prep \\
        --split test --out runs/real-eval-test [--models models] [--no-peer]
    .venv/bin/python experiments/real_eval.py --cases data/phantom-test/emidec --out runs/phantom-eval --no-peer

``--form`` chooses what ``infer`` reads: the NIfTI files as they are (``nifti``), the same
volumes rewritten as EMIDEC distributes its files (``emidec-distributed``: float64, an
identity-like sform with unit scaling, ``sform_code`` 2, ``qform_code`` 0, the spacing only in
``pixdim``), or converted to DICOM MR series (``dicom``, ``cardiac-mi convert``'s writer).

Writes ``results.json`` and ``results.md`` into ``--out`` and prints the tables.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from experiments.peers.run import run_myopari  # noqa: E402
from lgemri.dicom import write_dicom_series  # noqa: E402
from lgemri.emidec import find_cases  # noqa: E402
from lgemri.labels import infarct_mask, myocardium_mask  # noqa: E402
from lgemri.metrics import dice  # noqa: E402
from lgemri.volume import read_nifti  # noqa: E402

logger = logging.getLogger("real_eval")
PATHOLOGICAL_MIN_PERCENT = 1.0
GROUPS = {"cavity": (1,), "myocardium": (2, 3, 4), "infarct": (3, 4), "no_reflow": (4,)}


def infarct_percent(label: np.ndarray) -> float:
    myo = int(myocardium_mask(label).sum())
    return 100.0 * int(infarct_mask(label).sum()) / myo if myo else 0.0


def score(pred: np.ndarray, truth: np.ndarray) -> dict:
    """Per-study figures of a predicted label against the truth (same grid)."""
    row = {name: dice(np.isin(pred, c), np.isin(truth, c)) for name, c in GROUPS.items()}
    row["has_infarct"] = bool(infarct_mask(truth).any())
    row["has_no_reflow"] = bool((truth == 4).any())
    row["infarct_pct_true"] = infarct_percent(truth)
    row["infarct_pct_pred"] = infarct_percent(pred)
    row["infarct_pct_error"] = row["infarct_pct_pred"] - row["infarct_pct_true"]
    row["call_true"] = "pathological" if row["has_infarct"] else "normal"
    row["call_pred"] = "pathological" if row["infarct_pct_pred"] >= PATHOLOGICAL_MIN_PERCENT else "normal"
    return row


def summarise(rows: list[dict]) -> dict:
    def mean(key: str, where: str | None = None) -> float | None:
        values = [r[key] for r in rows if where is None or r[where]]
        return float(np.mean(values)) if values else None

    return {
        "studies": len(rows),
        "cavity": mean("cavity"),
        "myocardium": mean("myocardium"),
        "infarct": mean("infarct", "has_infarct"),
        "no_reflow": mean("no_reflow", "has_no_reflow"),
        "infarct_pct_abs_error": float(np.mean([abs(r["infarct_pct_error"]) for r in rows])),
        "call_accuracy": float(np.mean([r["call_true"] == r["call_pred"] for r in rows])),
        "with_infarct": sum(r["has_infarct"] for r in rows),
        "with_no_reflow": sum(r["has_no_reflow"] for r in rows),
    }


def select_cases(cases_dir: Path, split_from: Path | None, split: str | None) -> list[str]:
    cases = find_cases(cases_dir)
    if split_from is None:
        return cases
    info = json.loads((split_from / "cases.json").read_text())
    return [c for c in cases if info.get(c, {}).get("split") == split]


def write_emidec_distributed(src: Path, dst: Path) -> Path:
    """``src`` rewritten the way EMIDEC's files are: float64, unit-scaled sform (code 2), no qform."""
    import nibabel as nib

    volume = read_nifti(src)
    direction = volume.affine[:3, :3] / volume.spacing
    sform = np.eye(4)
    sform[:3, :3] = direction
    sform[:3, 3] = volume.affine[:3, 3]
    img = nib.Nifti1Image(volume.array.astype(np.float64), sform)
    img.set_sform(sform, code=2)
    img.set_qform(None, code=0)
    img.header["pixdim"][1:4] = volume.spacing
    dst.parent.mkdir(parents=True, exist_ok=True)
    nib.save(img, str(dst))
    return dst


def prepare_inputs(images: list[Path], form: str, work: Path) -> list[Path]:
    """The files or folders ``infer`` reads for ``form`` (see the module docstring)."""
    if form == "nifti":
        return images
    inputs = []
    for image in images:
        name = image.name.removesuffix(".nii.gz")
        if form == "emidec-distributed":
            inputs.append(write_emidec_distributed(image, work / f"{name}.nii.gz"))
        else:
            write_dicom_series(read_nifti(image), work / name, patient_id=name, patient_name=name)
            inputs.append(work / name)
    return inputs


def run_infer(images: list[Path], out: Path, models: Path | None) -> float:
    """``cardiac-mi infer`` on all images in one process; returns its wall time in seconds."""
    command = [
        str(Path(sys.executable).parent / "cardiac-mi"),
        "-q",
        "infer",
        "--input",
        *map(str, images),
        "--out",
        str(out),
    ]
    if models is not None:
        command += ["--models", str(models)]
    tick = time.perf_counter()
    subprocess.run(command, check=True, env={**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")})
    return time.perf_counter() - tick


def _table(title: str, rows: list[dict], names: list[str]) -> str:
    lines = [
        f"### {title}",
        "",
        "| study | cavity | myocardium | infarct | no-reflow | infarct % true | pred - true | call |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, r in zip(names, rows):
        inf = f"{r['infarct']:.3f}" if r["has_infarct"] else "—"
        mvo = f"{r['no_reflow']:.3f}" if r["has_no_reflow"] else "—"
        ok = "ok" if r["call_true"] == r["call_pred"] else f"**{r['call_pred']}**"
        lines.append(
            f"| {name} | {r['cavity']:.3f} | {r['myocardium']:.3f} | {inf} | {mvo} | "
            f"{r['infarct_pct_true']:.1f} | {r['infarct_pct_error']:+.1f} | {ok} |"
        )
    return "\n".join(lines)


def _summary_table(summaries: dict[str, dict]) -> str:
    lines = [
        "| model | studies | cavity | myocardium | infarct (with) | no-reflow (with) | |infarct % error| | call right |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    fmt = lambda v: "—" if v is None else f"{v:.3f}"  # noqa: E731
    for name, s in summaries.items():
        lines.append(
            f"| {name} | {s['studies']} | {fmt(s['cavity'])} | {fmt(s['myocardium'])} | "
            f"{fmt(s['infarct'])} ({s['with_infarct']}) | {fmt(s['no_reflow'])} ({s['with_no_reflow']}) | "
            f"{s['infarct_pct_abs_error']:.1f} | {100 * s['call_accuracy']:.0f} % |"
        )
    return "\n".join(lines)


def add_case_arguments(parser: argparse.ArgumentParser) -> None:
    """``--cases``, ``--split-from``, ``--split``, ``--models`` and ``--out``, shared with the
    other scripts that run ``infer`` on cases in the EMIDEC layout."""
    parser.add_argument("--cases", required=True, type=Path, help="EMIDEC-layout folder (Case_*/Images, Contours)")
    parser.add_argument("--split-from", type=Path, help="prepared folder whose cases.json gives the split")
    parser.add_argument("--split", default="val", help="split to evaluate with --split-from (default val)")
    parser.add_argument("--models", type=Path, help="models folder (default: the shipped models/)")
    parser.add_argument("--out", required=True, type=Path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_case_arguments(parser)
    parser.add_argument("--no-peer", action="store_true", help="skip the myopari peer")
    parser.add_argument(
        "--form",
        choices=("nifti", "emidec-distributed", "dicom"),
        default="nifti",
        help="what infer reads (see the module docstring; default nifti)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    cases = select_cases(args.cases, args.split_from, args.split)
    if not cases:
        parser.error(f"no case of split {args.split!r} in {args.cases}")
    images = [args.cases / c / "Images" / f"{c}.nii.gz" for c in cases]
    truths = {c: read_nifti(args.cases / c / "Contours" / f"{c}.nii.gz") for c in cases}
    args.out.mkdir(parents=True, exist_ok=True)

    predictions = {"cardiac_mi": args.out / "cardiac_mi"}
    inputs = prepare_inputs(images, args.form, args.out / "inputs")
    seconds = {"cardiac_mi": run_infer(inputs, predictions["cardiac_mi"], args.models)}
    if not args.no_peer:
        tick = time.perf_counter()
        peer = run_myopari(images, args.out / "myopari")
        if peer is not None:
            predictions["myopari 0.1.6 (trained on all 100 EMIDEC training cases)"] = args.out / "myopari"
            seconds["myopari"] = time.perf_counter() - tick

    results: dict = {
        "cases_dir": str(args.cases),
        "split": args.split if args.split_from else "all",
        "form": args.form,
        "cases": cases,
        "seconds": seconds,
        "models": {},
    }
    markdown = [f"# Evaluation on {args.cases} ({results['split']}, {len(cases)} studies, read as {args.form})", ""]
    summaries = {}
    for model, folder in predictions.items():
        rows = []
        for c in cases:
            pred = read_nifti(folder / f"{c}.nii.gz")
            truth = truths[c]
            if pred.shape != truth.shape:
                raise SystemExit(f"{folder / c}: prediction shape {pred.shape} differs from the truth {truth.shape}")
            rows.append(score(pred.array, truth.array))
        summaries[model] = summarise(rows)
        results["models"][model] = {"summary": summaries[model], "per_case": dict(zip(cases, rows))}
        markdown += [_table(model, rows, cases), ""]
    markdown = markdown[:2] + [_summary_table(summaries), ""] + markdown[2:]
    text = "\n".join(markdown) + "\n"
    (args.out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    (args.out / "results.md").write_text(text)
    sys.stdout.write(text)


if __name__ == "__main__":
    main()

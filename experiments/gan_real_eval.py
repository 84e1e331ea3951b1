"""A mask -> LGE GAN on real slices: a montage of real vs synthesized for the same masks, and references.

    python experiments/gan_real_eval.py --real data/real-prep --fake runs/gan-real/synth-val \
        --split val --rows 8 --out runs/gan-real/montage-val.png

Besides the montage (mask, real image, synthesized image per row) it prints the PSNR and SSIM, over
the ROI and over the LV (dilated by ``gan.metrics.psnr_ssim.LV_MARGIN_PX``), of the synthesized images
and of two references on the same slices, computed as ``cardiac-mi gan metrics`` computes them (the
GANs' [-1, 1] scale, data range 2): an **oracle** that paints each class of the mask with that class's
true mean intensity in the real image (what a generator that gets every class's brightness right but no
texture reaches), and a **flat** image at the real image's mean.

``--real`` is a prepared folder (``roi/images``, ``roi/labels``, ``manifest.csv``), ``--fake`` the output
of ``cardiac-mi gan synthesize`` for masks of that folder (the same slice names). Rows are spread over
the cases of ``--split``, infarcted slices first, so the montage shows the classes a GAN finds hardest.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lgemri.atomic import atomic_path  # noqa: E402
from lgemri.errors import InputError  # noqa: E402
from lgemri.preview import OUTLINE_COLOURS  # noqa: E402

logger = logging.getLogger("gan_real_eval")


def pick_slices(real: Path, fake: Path, split: str, rows: int) -> list[str]:
    """Names of ``rows`` slices of ``split`` that both folders hold: one per case in turn, infarcted first."""
    with open(real / "manifest.csv", newline="") as fh:
        manifest = [r for r in csv.DictReader(fh) if r["split"] == split]
    have = {p.stem for p in (fake / "roi" / "images").glob("*.npy")}
    manifest = [r for r in manifest if r["name"] in have]
    if not manifest:
        raise InputError(f"{fake}: no synthesized slice of the {split} split of {real} (same names expected)")
    manifest.sort(key=lambda r: (-int(r["no_reflow"]), -int(r["infarct"]), r["case_id"], int(r["slice"])))
    picked, cases = [], set()
    for row in manifest:  # one slice per case first, then more
        if row["case_id"] not in cases:
            picked.append(row["name"])
            cases.add(row["case_id"])
    picked += [r["name"] for r in manifest if r["name"] not in picked]
    return picked[:rows]


def references(real: Path, fake: Path, names: list[str]) -> dict[str, dict]:
    """PSNR/SSIM (ROI and LV) of the synthesized images, the class-mean oracle and a flat image."""
    from gan.data import to_gan_range
    from gan.metrics.psnr_ssim import lv_region, psnr_ssim

    masks = np.stack([np.load(real / "roi" / "labels" / f"{n}.npy") for n in names])
    truth = np.stack([to_gan_range(np.load(real / "roi" / "images" / f"{n}.npy")) for n in names])
    made = np.stack([to_gan_range(np.load(fake / "roi" / "images" / f"{n}.npy")) for n in names])
    oracle = np.zeros_like(truth)
    for image, mask, out in zip(truth, masks, oracle):
        for value in np.unique(mask):
            out[mask == value] = image[mask == value].mean()
    flat = np.broadcast_to(truth.mean(axis=(1, 2), keepdims=True), truth.shape).copy()
    region = lv_region(masks)
    return {
        name: psnr_ssim(images, truth, region=region)
        for name, images in (("synthesized", made), ("oracle class means", oracle), ("flat", flat))
    }


def _colour(mask: np.ndarray) -> np.ndarray:
    rgb = np.zeros((*mask.shape, 3))
    for value, hex_colour in OUTLINE_COLOURS.items():
        rgb[mask == value] = [int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    return rgb


def _scaled(image: np.ndarray) -> np.ndarray:
    low, high = np.percentile(image, (0.5, 99.5))
    return np.clip((image - low) / max(high - low, 1e-6), 0, 1)


def save_montage(real: Path, fake: Path, names: list[str], out: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(names), 3, figsize=(6, 2 * len(names)), squeeze=False)
    for row, name in zip(axes, names):
        mask = np.load(real / "roi" / "labels" / f"{name}.npy")
        panels = (
            (_colour(mask), "mask"),
            (_scaled(np.load(real / "roi" / "images" / f"{name}.npy")), "real"),
            (_scaled(np.load(fake / "roi" / "images" / f"{name}.npy")), "synthesized"),
        )
        for ax, (picture, label) in zip(row, panels):
            ax.imshow(picture, cmap=None if picture.ndim == 3 else "gray", interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if ax is row[0]:
                ax.set_ylabel(name.replace("EMIDEC_", "").replace("_slice_", " s"), fontsize=6)
            if row is axes[0]:
                ax.set_title(label, fontsize=9)
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--real", type=Path, required=True, help="prepared folder (roi/images, roi/labels, manifest)")
    parser.add_argument("--fake", type=Path, required=True, help="cardiac-mi gan synthesize output for its masks")
    parser.add_argument("--split", default="val", help="split of --real to show (default val)")
    parser.add_argument("--rows", type=int, default=8, help="slices to show (default 8)")
    parser.add_argument("--out", type=Path, required=True, help="PNG to write")
    parser.add_argument("--title", default="", help="title above the montage")
    parser.add_argument("--json", type=Path, help="also write the references to this JSON file")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        names = pick_slices(args.real, args.fake, args.split, args.rows)
        path = save_montage(args.real, args.fake, names, args.out, args.title or f"{args.fake.name}: {args.split}")
        every = pick_slices(args.real, args.fake, args.split, 10**9)
        table = references(args.real, args.fake, every)
    except InputError as exc:
        print(f"gan_real_eval: error: {exc}", file=sys.stderr)
        return 2
    logger.info("wrote %s (%d slices)", path, len(names))
    print(f"{len(every)} slices of the {args.split} split of {args.real} (GAN scale [-1, 1], data range 2)")
    print(f"{'':20s} {'PSNR dB':>8s} {'SSIM':>6s} {'PSNR LV':>8s} {'SSIM LV':>8s}")
    for name, row in table.items():
        print(f"{name:20s} {row['psnr']:8.2f} {row['ssim']:6.3f} {row['psnr_region']:8.2f} {row['ssim_region']:8.3f}")
    if args.json:
        with atomic_path(args.json) as tmp:
            tmp.write_text(json.dumps({"split": args.split, "slices": len(every), "results": table}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

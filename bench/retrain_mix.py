"""Benchmark: active-learning fine-tuning of the shipped model, real + GAN slices versus real only.

Phantom studies stand in for the datastore's final labels. Each run fine-tunes a copy of the
shipped ``models/segmentation.pt`` with :func:`cardiac_mi.retrain.retrain` for the same
number of optimizer steps (``--steps`` must not exceed the real-only epoch, ``real slices /
batch size``; the table prints the steps each run made), once with the synthetic ratio under test
and once with ratio 0 (the baseline), and never publishes. Prints, per seed and ratio, the validation Dice (mean of the foreground
classes, real held-out cases only) before and after, the infarct Dice after and the time; then
the mean over seeds.

    OMP_NUM_THREADS=1 .venv/bin/python bench/retrain_mix.py [--cases 15] [--phantom-seed 4242] \
        [--ratios 0.5,0] [--seeds 0,1] [--epochs 6] [--steps 10] [--batch-size 8] [--val-split 0.34] [--lr 5e-5]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
from pathlib import Path

from cardiac_mi.retrain import RetrainConfig, retrain
from lgemri.phantom import write_phantom

ROOT = Path(__file__).resolve().parents[1]


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=15, help="phantom studies with labels (default 15)")
    parser.add_argument("--phantom-seed", type=int, default=4242, help="phantom seed (default 4242: unused elsewhere)")
    parser.add_argument("--ratios", type=_floats, default=[0.5, 0.0], help="synthetic ratios (default 0.5,0)")
    parser.add_argument("--seeds", type=_ints, default=[0, 1], help="training seeds (default 0,1)")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--steps", type=int, default=10, help="batches per epoch (default 10)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--val-split", type=float, default=0.34)
    parser.add_argument(
        "--lr", type=float, default=RetrainConfig.lr, help=f"learning rate (default {RetrainConfig.lr:g})"
    )
    parser.add_argument("--models", type=Path, default=ROOT / "models")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="retrain_mix_") as tmp:
        tmp = Path(tmp)
        write_phantom(tmp / "phantom", args.cases, args.phantom_seed, formats=("emidec",))
        emidec = tmp / "phantom" / "emidec"
        pairs = [
            {"image": str(d / "Images" / f"{d.name}.nii.gz"), "label": str(d / "Contours" / f"{d.name}.nii.gz")}
            for d in sorted(emidec.iterdir())
        ]
        print(
            f"{len(pairs)} phantom studies (seed {args.phantom_seed}); {args.epochs} epochs x {args.steps} steps "
            f"x batch {args.batch_size}, lr {args.lr:g}; validation: real held-out cases only"
        )
        print(
            f"{'ratio':>5} {'seed':>4} {'real':>4} {'synth':>5} {'val':>4} {'Dice before':>11} {'Dice after':>10} "
            f"{'infarct after':>13} {'steps':>5} {'time s':>6}"
        )
        results: dict[float, list[dict]] = {r: [] for r in args.ratios}
        for seed in args.seeds:
            for ratio in args.ratios:
                models = tmp / f"models_{seed}_{ratio}"
                models.mkdir()
                shutil.copy(args.models / "segmentation.pt", models)
                config = RetrainConfig(
                    synthetic_ratio=ratio,
                    max_epochs=args.epochs,
                    max_steps_per_epoch=args.steps,
                    batch_size=args.batch_size,
                    lr=args.lr,
                    val_fraction=args.val_split,
                    seed=seed,
                    publish="never",
                )
                stats = retrain(pairs, models, tmp / f"run_{seed}_{ratio}", config)
                results[ratio].append(stats)
                s = stats["slices"]
                infarct = stats["val_dice_by_class"]["after"]["infarct"]
                print(
                    f"{ratio:5.2f} {seed:4d} {s['real_train']:4d} {s['synthetic']:5d} {s['real_val']:4d} "
                    f"{stats['val_dice_before']:11.4f} {stats['val_dice_after']:10.4f} "
                    f"{infarct if infarct is not None else float('nan'):13.4f} {stats['steps']:5d} {stats['duration_s']:6.1f}"
                )
        print("mean over seeds:")
        for ratio, runs in results.items():
            before = statistics.mean(r["val_dice_before"] for r in runs)
            after = statistics.mean(r["val_dice_after"] for r in runs)
            infarct = statistics.mean(r["val_dice_by_class"]["after"]["infarct"] or 0.0 for r in runs)
            seconds = statistics.mean(r["duration_s"] for r in runs)
            split = {k: statistics.mean(r["timings_s"][k] for r in runs) for k in runs[0]["timings_s"]}
            print(
                f"  ratio {ratio:.2f}: val Dice {before:.4f} -> {after:.4f}, infarct {infarct:.4f}, "
                f"{seconds:.1f} s per run ({', '.join(f'{k} {v:.1f}' for k, v in split.items())})"
            )


if __name__ == "__main__":
    main()

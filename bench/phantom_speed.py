"""Benchmark: seconds per LGE phantom study, against a naive renderer, in one run.

The target (issue: "a few seconds per case at most") is checked here, not in a timed test.
The baseline renders every sub-slice of the thickness over the whole field of view; the
product renders the thorax once per slice and only the heart's window per sub-slice.

    .venv/bin/python bench/phantom_speed.py [--cases 6] [--seed 0]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from lgemri.phantom import render, study
from lgemri.phantom.mr import smooth_field


class NaiveRenderer(render.Renderer):
    """Paints thorax and heart over the whole fine grid for every sub-slice."""

    def _fine_signal(self, z: float) -> np.ndarray:
        g = self.geometry
        texture = 1.0 + smooth_field(self.rng, self.fine_xy[0].shape, 8, 0.04)
        total = np.zeros(self.fine_xy[0].shape)
        for s in render.SUB_SLICES:
            tissue, _ = self.anatomy.paint(*self.fine_xy, z + s * g.thickness_mm)
            total += self.table[tissue] * texture
        return total / len(render.SUB_SLICES)


def time_cases(cases: int, seed: int) -> list[float]:
    times = []
    for number in range(1, cases + 1):
        start = time.perf_counter()
        study.make_case(number, seed)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    ours = time_cases(args.cases, args.seed)
    product = study.Renderer
    study.Renderer = NaiveRenderer
    try:
        naive = time_cases(args.cases, args.seed)
    finally:
        study.Renderer = product
    ratio = sum(naive) / sum(ours)
    print(f"speed-up over naive full-frame rendering: {ratio:.1f}x")
    print(f"cardiac_mi phantom: {np.mean(ours):.2f} s/case (max {max(ours):.2f} s)   target <= 3 s/case")
    print(f"naive baseline:     {np.mean(naive):.2f} s/case (max {max(naive):.2f} s)")
    print(f"({args.cases} cases, seed {args.seed}, 1 process)")


if __name__ == "__main__":
    main()

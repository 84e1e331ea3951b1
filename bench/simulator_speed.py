"""Benchmark: fully synthetic 128 x 128 infarct masks per second per core, against a naive
per-pixel region grower, in one run (the target of issue 4 is >= 500 masks/s per core).

Both generators draw the same rings (one mid-ventricular 128 x 128 slice per mask), infarct
parameters and no-reflow core, and measure the result for the manifest. The product grows the
infarct with a vectorised partial sort of the arrival times in wall coordinates
(simulator.infarct); the baseline is the textbook region grower: a priority queue seeded at the
subendocardial seed, popping one pixel at a time and pushing its 4-neighbours in the wall, with
the arrival time of each pixel computed in Python. Also printed: throughput on whole stacks,
end to end with the files written, and the peak memory of runs of two sizes (flat in N).

    .venv/bin/python bench/simulator_speed.py [--masks 600] [--seed 0]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse  # noqa: E402
import heapq  # noqa: E402
import math  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402

import numpy as np  # noqa: E402

from lgemri import aha  # noqa: E402
from simulator import api  # noqa: E402
from simulator.infarct import TERRITORY_PREVALENCE, Growth, InfarctSpec, grow_infarct  # noqa: E402
from simulator.rings import make_anatomy  # noqa: E402
from simulator.wall import Wall, enclose_no_reflow, measure  # noqa: E402


def naive_grow(wall: Wall, spec: InfarctSpec, rng: np.random.Generator) -> Growth:
    """Priority-queue region growing, one pixel at a time (the baseline)."""
    names = list(TERRITORY_PREVALENCE)
    territory = names[int(rng.choice(len(names), p=list(TERRITORY_PREVALENCE.values())))]
    tau = spec.transmurality_pct / 100.0
    h = spec.heterogeneity
    phases = [(m, rng.uniform(0, 2 * math.pi)) for m in (2, 3, 5, 7)]
    index = {(int(i), int(j), int(k)): n for n, (i, j, k) in enumerate(zip(wall.ii, wall.jj, wall.kk))}
    seeds = [n for n in range(wall.n) if wall.depth[n] <= 0.25 and wall.segment[n] in aha.TERRITORIES[territory]]
    seed = seeds[int(rng.integers(len(seeds)))]
    s_theta, s_z = float(wall.theta[seed]), float(wall.kk[seed] * wall.spacing[2])
    taper, spread = rng.uniform(0.08, 0.3), rng.uniform(0.7, 1.3)

    def arrival(n: int) -> float:
        d = abs((float(wall.theta[n]) - s_theta + 180.0) % 360.0 - 180.0)
        z = float(wall.kk[n] * wall.spacing[2])
        noise = sum(math.cos(m * math.radians(float(wall.theta[n])) + p) for m, p in phases) / math.sqrt(2.0)
        return d / (90.0 * spread) + abs(z - s_z) / 25.0 + taper * float(wall.depth[n]) / tau + 0.35 * h * noise

    target = int(round(spec.size_pct / 100.0 * wall.n))
    infarct = np.zeros(wall.n, dtype=bool)
    queued = {seed}
    heap = [(arrival(seed), seed)]
    times = []
    while heap and len(times) < target:
        t, n = heapq.heappop(heap)
        infarct[n] = True
        times.append((t, n))
        i, j, k = int(wall.ii[n]), int(wall.jj[n]), int(wall.kk[n])
        for nb in ((i + 1, j, k), (i - 1, j, k), (i, j + 1, k), (i, j - 1, k), (i, j, k + 1), (i, j, k - 1)):
            m = index.get(nb)
            if m is not None and m not in queued and wall.depth[m] <= tau:
                queued.add(m)
                heapq.heappush(heap, (arrival(m), m))
    no_reflow = np.zeros(wall.n, dtype=bool)
    for _, n in sorted(times)[: int(round(spec.no_reflow_pct / 100.0 * len(times)))]:
        no_reflow[n] = True
    return Growth(infarct, no_reflow, territory, int(wall.kk[seed]), s_theta, 1, 100.0)


def naive_case(config: api.SimulationConfig, index: int) -> np.ndarray:
    rng = np.random.default_rng([config.seed, index])
    rng.random()  # the normal-case draw, as in api.make_case
    anatomy, wall, _, _ = make_anatomy(rng, True, config.slices)
    spec = api._sample_spec(rng, config)
    growth = naive_grow(wall, spec, rng)
    label = wall.paint(anatomy, growth.infarct, growth.no_reflow)
    enclose_no_reflow(label)
    measure(wall, label)
    return label


def ours_case(config: api.SimulationConfig, index: int) -> np.ndarray:
    case = api.make_case(config, index)
    case.measurement()
    return case.label


def rate(make, config: api.SimulationConfig, count: int) -> float:
    start = time.perf_counter()
    masks = sum(make(config, i).shape[2] for i in range(count))
    return masks / (time.perf_counter() - start)


def growth_times(config: api.SimulationConfig, count: int) -> tuple[float, float]:
    """Seconds per mask of the region growing alone, ours and naive, on the same walls."""
    ours = naive = 0.0
    for index in range(count):
        rng = np.random.default_rng([config.seed, index])
        _, wall, _, _ = make_anatomy(rng, True, config.slices)
        spec = api._sample_spec(rng, config)
        start = time.perf_counter()
        grow_infarct(wall, spec, np.random.default_rng(index))
        middle = time.perf_counter()
        naive_grow(wall, spec, np.random.default_rng(index))
        naive += time.perf_counter() - middle
        ours += middle - start
    return ours / count, naive / count


def peak_mb(n: int, seed: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        tracemalloc.start()
        api.simulate(api.SimulationConfig(n=n, seed=seed, slices=1), tmp)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return peak / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--masks", type=int, default=600, help="2D masks per generator (default 600)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    config = api.SimulationConfig(n=args.masks, seed=args.seed, slices=1)
    config.validate()
    ours_case(config, 0), naive_case(config, 0)  # warm caches and imports
    ours = rate(ours_case, config, args.masks)
    naive = rate(naive_case, config, max(args.masks // 10, 20))
    stacks = api.SimulationConfig(n=args.masks, seed=args.seed)
    stack_rate = rate(ours_case, stacks, max(args.masks // 8, 10))
    e2e = {}
    for formats in (("npy", "nifti"), ("npy",)):
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            run = api.SimulationConfig(n=max(args.masks // 2, 10), seed=args.seed, slices=1, formats=formats)
            result = api.simulate(run, tmp)
            e2e[formats] = result.masks / (time.perf_counter() - start)
    grow_ours, grow_naive = growth_times(config, max(args.masks // 10, 20))
    small, large = peak_mb(50, args.seed), peak_mb(200, args.seed)
    print(f"speed-up over the naive per-pixel region grower: {ours / naive:.1f}x")
    print(f"cardiac_mi simulator: {ours:7.0f} synthetic 128x128 masks/s per core   target >= 500")
    print(f"naive baseline:       {naive:7.0f} synthetic 128x128 masks/s per core")
    print(
        f"region growing alone: {grow_ours * 1e6:.0f} us vs {grow_naive * 1e6:.0f} us per mask "
        f"({grow_naive / grow_ours:.1f}x)"
    )
    print(f"whole stacks (6-12 slices): {stack_rate:.0f} masks/s")
    print(
        f"end to end, files written: {e2e[('npy', 'nifti')]:.0f} masks/s with .npy + NIfTI + manifest "
        f"(2D cases: one NIfTI per mask), {e2e[('npy',)]:.0f} masks/s with --format npy"
    )
    print(f"peak traced memory of a run: {small:.1f} MB for 50 cases, {large:.1f} MB for 200 cases (streams to disk)")
    print(f"({args.masks} masks, seed {args.seed}, 1 process, OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']})")


if __name__ == "__main__":
    main()

"""Benchmark: the viewer as a clinician feels it, study list -> first image and Run -> overlay, in Chromium.

    .venv/bin/python bench/viewer_speed.py [--runs 3]

Each run is the browser loop test (``tests/browser/test_browser_loop.py::test_clinician_loop``: a real
``cardiac-mi serve`` with the sample studies, Debian's Chromium driven by Playwright), which keeps
the in-page times from the click to the first frame showing the image, and to the first frame
showing the model's overlay. Printed per figure: the ratio to its target first, then the median and
the range over the runs. The test itself checks what the viewer does, not how fast; the targets are
met here.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGETS = {"study list to first image": 5.0, "Run to overlay (first run of the server)": 3.0}


def one_run(folder: Path) -> dict[str, float]:
    env = {**os.environ, "CARDIAC_MI_ARTIFACTS": str(folder)}
    test = "tests/browser/test_browser_loop.py::test_clinician_loop"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    measured = folder / "browser" / "measurements.json"
    if done.returncode != 0 or not measured.is_file():
        sys.exit(f"the browser loop failed (exit {done.returncode}):\n{done.stdout[-3000:]}{done.stderr[-2000:]}")
    return json.loads(measured.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    results: dict[str, list[float]] = {name: [] for name in TARGETS}
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="viewer_speed_") as tmp:
            for name, seconds in one_run(Path(tmp)).items():
                results.setdefault(name, []).append(seconds)
    print(f"{args.runs} runs of the browser loop, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    for name, values in results.items():
        if not values:
            continue
        median = statistics.median(values)
        target = TARGETS.get(name)
        ratio = f"{median / target:.2f}x its {target:g} s target" if target else "no target"
        print(f"{name}: {ratio}; median {median:.2f} s (range {min(values):.2f}-{max(values):.2f} s)")


if __name__ == "__main__":
    main()

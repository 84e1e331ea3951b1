"""Benchmark: the study list and ``/info/`` while 16 infers queue up on ``cardiac-mi serve`` (issue 16, point 11).

Starts the real product, ``cardiac-mi serve`` (embedded Orthanc + MONAI Label server, temporary state,
the sample studies, free ports), infers each sample series once (models loaded, series fetched and
converted), then measures from the client:

- idle: the study list as OHIF asks it (``GET /proxy/dicom/qido/studies``, through the DICOMweb proxy to
  Orthanc) and ``GET /info/``, one probe of each every 0.1 s;
- busy: the same probes while ``--infers`` concurrent ``POST /infer/segmentation`` requests (spread over
  the sample series) run, and each infer's round trip.

It prints the ratio first (busy over idle, the baseline of the same run), then p50/p95/max of each.
``--infer-workers N`` sets ``$CARDIAC_MI_INFER_WORKERS`` (how many infers the server runs at a time;
default 1): with N = the number of infers, every infer runs at once, as when they ran on the shared
thread pool.

    .venv/bin/python bench/concurrent_infer.py [--infers 16] [--infer-workers N] [--idle-probes 20]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import logging
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path

import requests

from cardiac_mi.commands.serve import register
from cardiac_mi.orthanc import free_port
from cardiac_mi.serve import SAMPLE_DICOM, serve

STUDY_LIST = "/proxy/dicom/qido/studies?limit=101&offset=0&fuzzymatching=false&includefield=00081030,00080060"
PROBES = {"study list": STUDY_LIST, "/info/": "/info/"}


def _sample_series() -> list[str]:
    import pydicom

    uids = []
    for folder in sorted(p for p in SAMPLE_DICOM.iterdir() if p.is_dir()):
        first = sorted(folder.rglob("*.dcm"))[0]
        uids.append(str(pydicom.dcmread(first, stop_before_pixels=True).SeriesInstanceUID))
    return uids


def _infer(url: str, uid: str) -> float:
    tick = time.perf_counter()
    response = requests.post(f"{url}/infer/segmentation", params={"image": uid, "output": "json"}, timeout=900)
    elapsed = time.perf_counter() - tick
    response.raise_for_status()
    return elapsed


def _probe(url: str, path: str) -> float:
    tick = time.perf_counter()
    response = requests.get(f"{url}{path}", timeout=120)
    elapsed = time.perf_counter() - tick
    response.raise_for_status()
    return elapsed


def _probe_while(url: str, keep_going, pause: float = 0.1) -> dict[str, list[float]]:
    """Probe each of PROBES in turn, ``pause`` s apart, while ``keep_going()``."""
    times: dict[str, list[float]] = {name: [] for name in PROBES}
    while keep_going():
        for name, path in PROBES.items():
            times[name].append(_probe(url, path))
            time.sleep(pause)
    return times


def _stats(values: list[float]) -> tuple[float, float, float]:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return statistics.median(ordered), p95, ordered[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--infers", type=int, default=16, help="concurrent infers (default 16)")
    parser.add_argument(
        "--infer-workers",
        type=int,
        default=None,
        help="$CARDIAC_MI_INFER_WORKERS for the server (default: the server's, 1)",
    )
    parser.add_argument("--idle-probes", type=int, default=20, help="idle probes of each kind (default 20)")
    args = parser.parse_args()
    if args.infers < 1 or args.idle_probes < 1 or (args.infer_workers is not None and args.infer_workers < 1):
        parser.error("--infers, --idle-probes and --infer-workers must be 1 or more")
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    if args.infer_workers is not None:
        os.environ["CARDIAC_MI_INFER_WORKERS"] = str(args.infer_workers)
    workers = os.environ.get("CARDIAC_MI_INFER_WORKERS", "1 (default)")

    with tempfile.TemporaryDirectory() as tmp:
        sub = argparse.ArgumentParser()
        register(sub.add_subparsers())
        port = free_port()
        options = sub.parse_args(
            [
                "serve",
                "--state",
                str(Path(tmp) / "state"),
                "--port",
                str(port),
                "--orthanc-port",
                str(free_port(exclude=(port,))),
                "--auth",
                "off",
            ]
        )
        handle = serve(options, block=False)
        try:
            url = handle.url
            series = _sample_series()
            warm = [_infer(url, uid) for uid in series]  # models loaded, every series fetched and converted
            count = [0]
            idle = _probe_while(url, lambda: count.__setitem__(0, count[0] + 1) or count[0] <= args.idle_probes)

            done = threading.Event()
            with concurrent.futures.ThreadPoolExecutor(args.infers) as pool:
                tick = time.perf_counter()
                futures = [pool.submit(_infer, url, series[i % len(series)]) for i in range(args.infers)]
                prober = concurrent.futures.ThreadPoolExecutor(1)
                busy_future = prober.submit(_probe_while, url, lambda: not done.is_set())
                infers = [f.result() for f in futures]
                wall = time.perf_counter() - tick
                done.set()
                busy = busy_future.result()
                prober.shutdown()
        finally:
            handle.stop()

    print(
        f"cardiac-mi serve, {args.infers} concurrent POST /infer/segmentation over {len(series)} sample series, "
        f"CARDIAC_MI_INFER_WORKERS={workers}, OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}, "
        f"{os.cpu_count()} CPUs"
    )
    print(f"warm-up infers (one per series, sequential): {', '.join(f'{t:.2f}' for t in warm)} s")
    print(f"all {args.infers} infers answered in {wall:.1f} s ({args.infers / wall:.2f} per s)")
    print("latency ratio, during the infers / idle (same run):")
    for name in PROBES:
        (i50, i95, imax), (b50, b95, bmax) = _stats(idle[name]), _stats(busy[name])
        print(f"  {name:<11} p50 {b50 / i50:6.1f}x   p95 {b95 / i95:6.1f}x   max {bmax / imax:6.1f}x")
    print(f"{'':<34}{'n':>4}{'p50 s':>9}{'p95 s':>9}{'max s':>9}")
    rows = [(f"{name}, idle", idle[name]) for name in PROBES] + [
        (f"{name}, during the infers", busy[name]) for name in PROBES
    ]
    rows.append(("infer round trip, concurrent", infers))
    for label, values in rows:
        p50, p95, most = _stats(values)
        print(f"  {label:<32}{len(values):>4}{p50:9.3f}{p95:9.3f}{most:9.3f}")


if __name__ == "__main__":
    main()

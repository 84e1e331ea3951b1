"""Benchmark: the MONAI Label server's infer round trip for a phantom study over DICOMweb.

Starts ``cardiac-mi serve`` (embedded Orthanc + server, temporary state, free ports), uploads
phantom studies, then times, from the client, ``POST /infer/segmentation`` (request -> label
NIfTI returned): the first call after start (models load, series fetched from Orthanc and
converted) and later calls on studies already fetched, with the server's split (fetch, convert,
model, write). Baseline, side by side: the same study through ``cardiac-mi infer`` in a fresh
process (what a user without the server would run). Targets: first call <= 3 s, later <= 1 s,
start to ready <= 15 s, on 2 CPU cores.

    .venv/bin/python bench/server_speed.py [--repeats 5] [--studies 3]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests
from requests_toolbelt.multipart.decoder import MultipartDecoder

from cardiac_mi.commands.serve import register
from cardiac_mi.orthanc import free_port
from cardiac_mi.serve import serve
from cardiac_mi.store import DicomStore, upload
from lgemri.dicom import read_dicom_series
from lgemri.phantom import write_phantom


def _split(answer: dict) -> dict:
    t = answer.get("timings_s", {})
    model = sum(v for k, v in t.items() if k not in ("fetch", "convert", "write", "models", "read", "total"))
    return {
        "fetch": t.get("fetch", 0.0),
        "convert": t.get("convert", 0.0),
        "load models": t.get("models", 0.0),
        "read": t.get("read", 0.0),
        "model": model,
        "write": t.get("write", 0.0),
    }


def _infer(url: str, uid: str) -> tuple[float, dict]:
    """One request returning the label and its JSON (MONAI Label's multipart answer)."""
    tick = time.perf_counter()
    response = requests.post(f"{url}/infer/segmentation", params={"image": uid}, timeout=120)
    elapsed = time.perf_counter() - tick
    response.raise_for_status()
    parts = {}
    for part in MultipartDecoder.from_response(response).parts:
        disposition = part.headers.get(b"Content-Disposition", b"").decode()
        parts["image" if "filename" in disposition else "params"] = part.content
    assert parts["image"][:2] == b"\x1f\x8b", "expected a gzipped NIfTI label"
    return elapsed, json.loads(parts["params"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--studies", type=int, default=3)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("OMP_NUM_THREADS", "2")

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_phantom(tmp / "phantom", args.studies, seed=4242, formats=("dicom",))
        folders = sorted(p for p in (tmp / "phantom" / "dicom").iterdir() if p.is_dir())
        sub = argparse.ArgumentParser()
        register(sub.add_subparsers())
        port = free_port()
        options = sub.parse_args(
            [
                "serve",
                "--state",
                str(tmp / "state"),
                "--port",
                str(port),
                "--no-samples",
                "--orthanc-port",
                str(free_port(exclude=(port,))),
                "--auth",
                "off",
            ]
        )
        tick = time.perf_counter()
        handle = serve(options, block=False)
        ready = time.perf_counter() - tick
        try:
            upload(folders, DicomStore.from_orthanc(handle.orthanc))
            uids = [read_dicom_series(f).series_uid for f in folders]
            first, first_answer = _infer(handle.url, uids[0])
            later_times, later_answer = [], None
            for _ in range(args.repeats):
                elapsed, later_answer = _infer(handle.url, uids[0])
                later_times.append(elapsed)
            fresh_times, fresh_answers = [], []
            for uid in uids[1:]:  # studies not fetched yet: models warm, fetch + convert included
                elapsed, answer = _infer(handle.url, uid)
                fresh_times.append(elapsed)
                fresh_answers.append(answer)
        finally:
            handle.stop()

        tick = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "cardiac_mi.cli",
                "-q",
                "infer",
                "--input",
                str(folders[0]),
                "--out",
                str(tmp / "cli"),
            ],
            check=True,
        )
        cli = time.perf_counter() - tick

    later = statistics.median(later_times)
    print(f"server start to ready: {ready:.1f} s (target <= 15 s)")
    print("round trip (request -> label)        ratio to CLI  server   CLI fresh process  target")
    print(
        f"  first call after start             {first / cli:5.2f}x       {first:5.2f} s  {cli:5.2f} s            <= 3 s"
    )
    print(
        f"  later calls, same study (median)   {later / cli:5.2f}x       {later:5.2f} s  {cli:5.2f} s            <= 1 s"
    )
    if fresh_times:
        fresh = statistics.median(fresh_times)
        print(
            f"  later calls, new study (median)    {fresh / cli:5.2f}x       {fresh:5.2f} s  {cli:5.2f} s            <= 1 s"
        )
    print("server split (s):")
    rows = (
        [("first", first_answer)]
        + ([("new study", fresh_answers[0])] if fresh_answers else [])
        + [("same study", later_answer)]
    )
    names = list(_split(first_answer))
    print("  " + " " * 11 + "".join(f"{n:>12}" for n in names))
    for label, answer in rows:
        split = _split(answer)
        print(f"  {label:<11}" + "".join(f"{split[n]:12.3f}" for n in names))


if __name__ == "__main__":
    main()

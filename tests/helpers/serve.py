"""``cardiac-mi serve`` in tests: its options on free ports, the blocking command as a script, a process gone."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

# ``cardiac-mi serve`` as a command that blocks until a signal: ``python -c SERVE_SCRIPT serve --state ...``
SERVE_SCRIPT = """
import argparse, logging, sys
from cardiac_mi.commands.serve import register
logging.basicConfig(level=logging.INFO)
parser = argparse.ArgumentParser()
register(parser.add_subparsers())
args = parser.parse_args(sys.argv[1:])
args.func(args)
"""


def serve_options(state: Path, *extra: str) -> argparse.Namespace:
    """The options of ``cardiac-mi serve --state STATE``: free ports for MONAI Label and the embedded Orthanc,
    no login (``--auth off``: the login has tests of its own), then ``extra``. A restart with the same options
    keeps the ports."""
    from cardiac_mi.commands.serve import register
    from cardiac_mi.orthanc import free_port

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    port = free_port()
    return parser.parse_args(
        [
            "serve",
            "--state",
            str(state),
            "--port",
            str(port),
            "--orthanc-port",
            str(free_port(exclude=(port,))),
            "--auth",
            "off",
            *extra,
        ]
    )


def start_blocking_serve(state: Path, port: int) -> tuple[subprocess.Popen, Path]:
    """``cardiac-mi serve --state STATE --port PORT`` as its own process (a free Orthanc port, no samples, no
    login), its output in ``STATE/serve.out``; the caller stops it."""
    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, PYTHONPATH=str(root) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, "-c", SERVE_SCRIPT, "serve", "--state", str(state), "--port", str(port)]
    cmd += ["--orthanc-port", "0", "--no-samples", "--auth", "off"]
    output = state / "serve.out"
    with open(output, "wb") as sink:
        proc = subprocess.Popen(cmd, env=env, stdout=sink, stderr=subprocess.STDOUT)
    return proc, output


def process_gone(pid: int) -> bool:
    """Whether the process has ended (a zombie counts as ended)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")
    except OSError:
        return True

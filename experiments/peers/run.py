"""Call the peer model (myopari 0.1.6 TIRAMISU_EMIDEC) from the product's side.

The peer lives in its own venv (``.venv-peer``, see README.md beside this file) and is never a
dependency of the product; this module only starts ``myopari_emidec.py`` under that venv's
python by subprocess and reads back what it wrote. It imports nothing of the peer.

    from experiments.peers.run import run_myopari

    labels = run_myopari([Path("Case_P001.nii.gz")], Path("/tmp/peer"))
    if labels is None:
        ...  # peer venv absent: a warning with the install command was logged
    else:
        labels[Path("Case_P001.nii.gz")]  # -> /tmp/peer/Case_P001.nii.gz (EMIDEC classes 0-4)

``out_dir/peer.json`` also holds the per-file seconds, the package version and the caveat that
the peer must be taken as trained on all 100 EMIDEC training cases (its figures on EMIDEC cases
are optimistic).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
from pathlib import Path

LOG = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).resolve().with_name("myopari_emidec.py")
INSTALL = (
    "python3.11 -m venv .venv-peer && "
    ".venv-peer/bin/pip install --no-deps myopari==0.1.6 onnxruntime && "
    ".venv-peer/bin/pip install numpy nibabel scikit-image scipy flatbuffers packaging protobuf"
    "  (see experiments/peers/README.md)"
)


def _resolve_python(python: Path) -> Path:
    """An absolute path as given; a relative one against the working folder, else the repository."""
    python = Path(python)
    if python.is_absolute() or python.exists():
        return python.absolute()
    return REPO / python


def run_myopari(
    inputs: list[Path],
    out_dir: Path,
    python: Path = Path(".venv-peer/bin/python"),
    *,
    threads: int = 1,
    timeout: float | None = None,
) -> dict[Path, Path] | None:
    """Segment each NIfTI in ``inputs`` with the peer; return input -> output label path.

    Returns None (with a logged warning naming the install command) when the peer venv's python
    is absent. Raises ValueError when the peer rejects an input (its exit status 2, message
    included) and RuntimeError when it fails otherwise. Keys are the ``inputs`` as given.
    """
    inputs = [Path(p) for p in inputs]
    if not inputs:
        return {}
    exe = _resolve_python(python)
    if not exe.exists():
        LOG.warning("peer venv not found (%s): skipping the myopari peer; install it with: %s", exe, INSTALL)
        return None
    out_dir = Path(out_dir)
    cmd = [str(exe), str(SCRIPT), "--input", *map(str, inputs), "--out", str(out_dir), "--threads", str(threads)]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    env.pop("PYTHONPATH", None)  # the peer must not see the product's modules
    LOG.info("running peer myopari on %d file(s) -> %s", len(inputs), out_dir)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    for line in proc.stderr.splitlines():
        if line.strip():
            LOG.debug("peer: %s", line)
    if proc.returncode != 0:
        last = next((ln for ln in reversed(proc.stderr.splitlines()) if ln.strip()), "")
        if proc.returncode == 2:
            raise ValueError(f"peer myopari rejected the input: {last}")
        raise RuntimeError(f"peer myopari failed (exit {proc.returncode}): {last}")
    report = json.loads((out_dir / "peer.json").read_text())
    by_input = {Path(case["input"]): Path(case["output"]) for case in report["cases"]}
    result = {}
    for path in inputs:
        output = by_input.get(path.resolve())
        if output is None or not output.is_file():
            raise RuntimeError(f"peer myopari wrote no label for {path}")
        result[path] = output
    return result

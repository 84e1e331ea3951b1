"""Every benchmark and experiment script still starts: its imports resolve and ``--help`` answers.

The scripts are not part of the package, so a moved or renamed API breaks them without any other test
noticing; this runs each one's ``--help`` in a fresh interpreter (all in one batch, to share the cost
of starting Python and importing torch).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(
    p.relative_to(ROOT).as_posix() for folder in ("bench", "experiments") for p in (ROOT / folder).glob("*.py")
)

# Each script's main parses --help and exits 0 before any work: run them one after the other in one
# interpreter, each as __main__ with its own argv, and report what each did.
DRIVER = r"""
import contextlib, io, json, os, runpy, sys, traceback
results = {}
for script in sys.argv[1:]:
    sys.argv = [script, "--help"]
    sys.path.insert(0, os.path.abspath(os.path.dirname(script)))  # as when the script itself runs
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            runpy.run_path(script, run_name="__main__")
        code = 0
    except SystemExit as exc:
        code = exc.code or 0
    except BaseException:
        code, out = "error", io.StringIO(traceback.format_exc())
    sys.path.pop(0)
    results[script] = [code, out.getvalue()[-2000:]]
print(json.dumps(results))
"""


def test_every_script_answers_help():
    assert len(SCRIPTS) >= 15, SCRIPTS
    done = subprocess.run(
        [sys.executable, "-c", DRIVER, *SCRIPTS], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    broken = {s: text for s, (code, text) in results.items() if code != 0 or "usage:" not in text}
    assert not broken, "\n\n".join(f"{s}:\n{text}" for s, text in broken.items())

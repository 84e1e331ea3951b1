"""Times the browser tests measure: kept for the summary at the end of the run (tests/browser/conftest.py)
and written to the artifacts' ``measurements.json``."""

from __future__ import annotations

import json
from pathlib import Path

MEASURED: dict[str, float] = {}
ARTIFACTS: list[Path] = []  # the artifacts folder, once the ``artifacts`` fixture has made it


def record(name: str, seconds: float) -> None:
    """Keep a measured time for the summary and the artifacts' ``measurements.json``."""
    MEASURED[name] = round(seconds, 3)
    if ARTIFACTS:
        (ARTIFACTS[0] / "measurements.json").write_text(json.dumps(MEASURED, indent=2) + "\n")

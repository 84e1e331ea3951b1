"""The MONAI Label app in tests: where it, the shipped models and a sample case are, its class found as MONAI
Label finds it, and an instance in process on a local studies folder."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
APP_DIR = ROOT / "apps" / "cardiac_mi"
MODELS = ROOT / "models"
CASE = ROOT / "sample-data" / "emidec" / "Case_P001"
START_TIMEOUT_S = 90  # the real server's start (tests/app/conftest.py)


def app_class():
    """The app's class in apps/cardiac_mi/main.py, found as MONAI Label finds it (``None`` when there is none)."""
    from monailabel.utils.others.class_utils import get_class_of_subclass_from_file

    return get_class_of_subclass_from_file("main", str(APP_DIR / "main.py"), "MONAILabelApp")


def make_app(studies: Path, models: Path, **conf: str):
    """The app in process on the local ``studies`` folder, its models in ``models`` (``--conf models_dir``), and
    ``conf``: MONAI Label's other ``--conf`` pairs, values as strings."""
    return app_class()(app_dir=str(APP_DIR), studies=str(studies), conf={"models_dir": str(models), **conf})

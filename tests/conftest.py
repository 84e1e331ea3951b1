"""Shared fixtures, and the markers of every test.

Phantom studies are generated once per test session (each takes ~0.5-2 s).

Markers (declared in pyproject.toml, which runs pytest with ``--strict-markers``) come from what a test needs,
never from a decorator: ``integration`` for tests/integration and for tests that use a real server (the
fixtures in ``REAL_SERVER_FIXTURES``), ``browser`` for tests that drive Chromium, ``slow`` for the tests
named in ``SLOW``. Without Orthanc, the tests that need it (tests/integration, ``NEEDS_ORTHANC_FIXTURES``)
skip. The inner loop leaves the three out: ``pytest -m "not integration and not browser and not slow"``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from lgemri.phantom import PhantomCase, make_case, write_phantom

PHANTOM_SEED = 11
PHANTOM_CASES = 9  # three normal (3, 6, 9), six pathological
PHANTOM_DIR_CASES = 3  # Case_P001, Case_P002, Case_N003 on disk

TESTS = Path(__file__).resolve().parent
ORTHANC_MISSING = "Orthanc is not installed (apt-get install orthanc orthanc-dicomweb)"
INTEGRATION_FOLDERS = {"integration"}  # tests/integration: Orthanc and ``cardiac-mi serve``
# a real MONAI Label server (tests/app/conftest.py) or ``cardiac-mi serve`` (tests/integration/conftest.py,
# tests/browser/conftest.py)
REAL_SERVER_FIXTURES = {"server", "start_served"}
NEEDS_ORTHANC_FIXTURES = {"start_served"}  # serve with its embedded Orthanc (outside tests/integration)
BROWSER_FIXTURES = {"browser"}  # Chromium (tests/browser/conftest.py; ``page`` uses it)
# Tests over ~10 s on 2 cores (``pytest --durations=0``): file under tests/ -> test functions (all parameters).
# Measured 2026-12-02 on the 2-core machine while other test runs shared it (call time, seconds).
SLOW: dict[str, tuple[str, ...]] = {
    "lgemri/test_shipped_models.py": ("test_held_out_real_cases_through_infer",),  # 77 (needs the real data)
    "app/test_app_trainer.py": ("test_train_publishes_a_checkpoint_the_infer_task_reloads",),  # 26
    "lgemri/test_training.py": ("test_resume_gives_the_same_weights_as_an_uninterrupted_run",),  # 24
    "test_retrain.py": ("test_retrain_fine_tunes_the_shipped_model_and_publishes",),  # 16-28
    "viewer/test_training_review.py": ("test_a_review_run_writes_progress_and_waits_for_a_person",),  # 15-18
}


def _orthanc_missing() -> bool:
    from cardiac_mi.orthanc import OrthancError, find_orthanc_binary

    try:
        find_orthanc_binary()
    except OrthancError:
        return True
    return False


def pytest_collection_modifyitems(config, items) -> None:
    """Mark every test by what it needs (see the module's docstring); skip what needs a missing Orthanc."""
    orthanc_missing = None
    for item in items:
        path = Path(item.path).resolve()
        if not path.is_relative_to(TESTS):
            continue
        relative = path.relative_to(TESTS)
        fixtures = set(getattr(item, "fixturenames", ()))
        in_integration = relative.parts[0] in INTEGRATION_FOLDERS
        if in_integration or fixtures & REAL_SERVER_FIXTURES:
            item.add_marker(pytest.mark.integration)
        if fixtures & BROWSER_FIXTURES:
            item.add_marker(pytest.mark.browser)
        slow = SLOW.get(relative.as_posix(), ())
        if slow:
            unknown = [name for name in slow if not hasattr(getattr(item, "module", None), name)]
            if unknown:
                raise pytest.UsageError(f"tests/conftest.py SLOW names {unknown}, not in tests/{relative.as_posix()}")
            if getattr(item, "originalname", item.name) in slow:
                item.add_marker(pytest.mark.slow)
        if in_integration or fixtures & NEEDS_ORTHANC_FIXTURES:
            if orthanc_missing is None:
                orthanc_missing = _orthanc_missing()
            if orthanc_missing:
                item.add_marker(pytest.mark.skip(reason=ORTHANC_MISSING))


@pytest.fixture(scope="session")
def phantom_cases() -> list[PhantomCase]:
    """Cases 1-9 of seed 11, in memory."""
    return [make_case(n, seed=PHANTOM_SEED) for n in range(1, PHANTOM_CASES + 1)]


@pytest.fixture(scope="session")
def phantom_dir(tmp_path_factory) -> Path:
    """Cases 1-3 of seed 11 written by write_phantom: emidec/, dicom/ and phantom.json.

    Read-only for the tests: copy what needs changing.
    """
    out = tmp_path_factory.mktemp("phantom")
    write_phantom(out, PHANTOM_DIR_CASES, PHANTOM_SEED)
    return out


@pytest.fixture
def restore_logging():
    """Undo what ``cardiac_mi.cli.main`` does to logging (root handlers and level, pynetdicom's propagation)."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    for handler in root.handlers[:]:
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    for handler in handlers:
        if handler not in root.handlers:
            root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("pynetdicom").propagate = True

"""Shared fixtures: phantom studies are generated once per test session (each takes ~0.5-2 s)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from lgemri.phantom import PhantomCase, make_case, write_phantom

PHANTOM_SEED = 11
PHANTOM_CASES = 9  # three normal (3, 6, 9), six pathological
PHANTOM_DIR_CASES = 3  # Case_P001, Case_P002, Case_N003 on disk


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

"""Fixtures of the GAN tests: tiny prepared folders of synthetic ROI pairs (fast, no phantom)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.gan import write_prepared


@pytest.fixture(scope="session")
def lge_dir(tmp_path_factory) -> Path:
    """8 train + 4 val LGE-like ring pairs (read-only)."""
    return write_prepared(tmp_path_factory.mktemp("lge"), 8, 4, seed=1)


@pytest.fixture(scope="session")
def cine_dir(tmp_path_factory) -> Path:
    """6 train + 4 val cine-like ring pairs (scar invisible; read-only); val names match lge_dir's."""
    return write_prepared(tmp_path_factory.mktemp("cine"), 6, 4, seed=2, cine=True)

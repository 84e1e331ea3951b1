"""Fixtures of the integration tests: ``server``, a ``cardiac-mi serve`` for the module.

Free ports, a temporary state folder with the four sample studies, a copy of the shipped models
(``server.models``: training may publish there), no login (the login has tests of its own).
Every test here is marked ``integration`` and skips without Orthanc (tests/conftest.py).
"""

from __future__ import annotations

import shutil

import pytest

from tests.helpers.serve import serve_options


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from cardiac_mi.serve import serve
    from lgemri.inference import default_models_dir

    state = tmp_path_factory.mktemp("state")
    models = tmp_path_factory.mktemp("models")
    for name in ("localization.pt", "segmentation.pt"):
        shutil.copy2(default_models_dir() / name, models / name)
    handle = serve(serve_options(state, "--models", str(models)), block=False)
    handle.models = models
    yield handle
    handle.stop()

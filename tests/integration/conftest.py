"""Fixtures of the integration tests: ``server``, a ``cardiac-mi serve`` for the module.

Free ports, a temporary state folder with the four sample studies, a copy of the shipped models
(``server.models``: training may publish there), no login (the login has tests of its own).
"""

from __future__ import annotations

import argparse
import shutil

import pytest


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from cardiac_mi.commands.serve import register
    from cardiac_mi.orthanc import free_port
    from cardiac_mi.serve import serve
    from lgemri.inference import default_models_dir

    state = tmp_path_factory.mktemp("state")
    models = tmp_path_factory.mktemp("models")
    for name in ("localization.pt", "segmentation.pt"):
        shutil.copy2(default_models_dir() / name, models / name)
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    port = free_port()
    options = parser.parse_args(
        [
            "serve",
            "--state",
            str(state),
            "--port",
            str(port),
            "--models",
            str(models),
            "--orthanc-port",
            str(free_port(exclude=(port,))),
            "--auth",
            "off",
        ]
    )
    handle = serve(options, block=False)
    handle.models = models
    yield handle
    handle.stop()

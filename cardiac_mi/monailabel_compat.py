"""Where cardiac_mi reaches past MONAI Label's public interfaces, in one place, each with its reason.

cardiac_mi is built and tested against MONAI Label 0.8.5 (requirements.txt). Each function below
works around something that version lacks or does differently; with another version any of them may
be wrong or no longer needed, so :func:`check_version` warns at start when another one runs. The
other couplings are ordinary subclassing of MONAI Label's interfaces (``MONAILabelApp``,
``TaskConfig``, ``InferTask``, ``TrainTask``, ``Strategy``, ``ScoringMethod``, ``DICOMWebDatastore``)
and FastAPI's own ``dependency_overrides`` (the login, :mod:`cardiac_mi.viewer.login`).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import Any

logger = logging.getLogger(__name__)

TESTED_VERSION = "0.8.5"


def check_version() -> str:
    """The running MONAI Label version; a warning names it when it is not the tested one."""
    import monailabel

    version = getattr(monailabel, "__version__", "unknown")
    if str(version).split("+")[0] != TESTED_VERSION:
        logger.warning(
            "MONAI Label %s runs; cardiac_mi is tested with %s and works around some of its internals "
            "(cardiac_mi.monailabel_compat): check them before trusting this combination",
            version,
            TESTED_VERSION,
        )
    return str(version)


def use_seg_writer(writer: Callable[..., Any]) -> None:
    """Make the infer endpoint's ``output=dicom_seg`` answer with ``writer`` (the coded EMIDEC SEG).

    0.8.5 has no hook for it: ``monailabel.endpoints.infer`` calls its module-level
    ``nifti_to_dicom_seg``, which runs dcmqi with segment names the client sends. The function is
    replaced in that module.
    """
    import monailabel.endpoints.infer as infer_endpoint

    infer_endpoint.nifti_to_dicom_seg = writer


@contextlib.contextmanager
def scoring_paused(app: Any) -> Iterator[None]:
    """Run the block with the app's automatic rescoring off, and restore it after.

    0.8.5 keeps the switch in the private ``MONAILabelApp._auto_update_scoring``; with it on, the app rescores every
    study on start and after each ``next_sample`` request. cardiac_mi delays the first scoring and
    lets the strategy score only what it needs (apps/cardiac_mi/main.py).
    """
    auto, app._auto_update_scoring = app._auto_update_scoring, False
    try:
        yield
    finally:
        app._auto_update_scoring = auto


def auto_scoring(app: Any) -> bool:
    """Whether the app rescores by itself (see :func:`scoring_paused`)."""
    return bool(app._auto_update_scoring)


def put_routes_first(app: Any, include: Callable[[], None], drop: Callable[[Any], bool]) -> tuple[int, int]:
    """Routes that ``include()`` adds to ``app`` go in front of MONAI Label's, and its routes matching ``drop`` go.

    FastAPI matches the first route that fits, and 0.8.5 registers its own routes (among them a
    DICOMweb proxy that forwards any path and method to the archive) before the app can add any; there
    is no public way to put routes before them, so the router's list is reordered. Starlette caches
    its route table in recent versions (``_mark_routes_changed``), so it is told.

    Returns:
        How many routes were put in front, and how many were dropped.
    """
    before = len(app.router.routes)
    include()
    added = app.router.routes[before:]
    del app.router.routes[before:]
    rest = [route for route in app.router.routes if not drop(route)]
    dropped = len(app.router.routes) - len(rest)
    app.router.routes[:] = added + rest
    if hasattr(app.router, "_mark_routes_changed"):
        app.router._mark_routes_changed()
    return len(added), dropped


def is_monailabel_proxy(route: Any) -> bool:
    """Whether ``route`` is MONAI Label's DICOMweb proxy (a route, or its router as FastAPI includes it)."""
    from monailabel.endpoints import proxy as theirs

    if getattr(route, "original_router", None) is theirs.router:
        return True
    return getattr(getattr(route, "endpoint", None), "__module__", "") == theirs.__name__


def init_local_cache(datastore: Any, folder: str, images_dir: str = "images") -> None:
    """Set up ``datastore`` (a ``DICOMWebDatastore`` subclass) as the local-folder datastore of its cache.

    0.8.5's ``DICOMWebDatastore.__init__`` puts the cache in a folder named by a hash of the URL and
    turns on ``auto_reload`` (a file watcher over it); cardiac_mi's datastore keeps its cache where the
    server's state folder says and changes it only itself, so it skips that initialiser and runs only the
    ``LocalDatastore`` one beneath it, which keeps the cache's ``datastore.json`` as MONAI Label expects.
    """
    from monailabel.datastore.local import LocalDatastore

    LocalDatastore.__init__(datastore, datastore_path=folder, images_dir=images_dir, auto_reload=False)

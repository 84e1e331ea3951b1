"""What both infer tasks share: the checkpoints of the cascade, loaded once and reloaded on change.

``lgemri.inference.Cascade`` runs localization and segmentation together, so both tasks use the
same :class:`ModelCache` (one per models folder) and the one cascade it builds from the loaded
networks. The cache loads lazily on the first request, under a lock, and reloads when a
checkpoint's mtime or size changes, so a new ``segmentation.pt`` is picked up without restarting
the server.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from fastapi import HTTPException
from monailabel.interfaces.tasks.infer_v2 import InferTask, InferType

from lgemri.dicom import require_modality
from lgemri.errors import InputError
from lgemri.images import read_image
from lgemri.inference import Cascade, InferenceResult, Models, load_models
from lgemri.volume import Volume, write_nifti

logger = logging.getLogger(__name__)

CHECKPOINTS = ("localization.pt", "segmentation.pt", "cavity.pt")


class ModelCache:
    """The networks of one models folder, (re)loaded when a checkpoint file changes."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.loads = 0  # how many times the checkpoints were (re)loaded
        self.signature: tuple | None = None  # (name, mtime_ns, size) of each checkpoint loaded
        self._models: Models | None = None
        self._cascade: Cascade | None = None
        self._lock = threading.Lock()

    def _signature(self) -> tuple:
        sig = []
        for name in CHECKPOINTS:
            path = self.folder / name
            if path.is_file():
                st = path.stat()
                sig.append((name, st.st_mtime_ns, st.st_size))
        return tuple(sig)

    def is_valid(self) -> bool:
        return all((self.folder / name).is_file() for name in CHECKPOINTS[:2])

    def get(self) -> Models:
        with self._lock:
            sig = self._signature()
            if self._models is None or sig != self.signature:
                if self._models is not None:
                    logger.info("%s: checkpoints changed; reloading", self.folder)
                tick = time.perf_counter()
                self._models = load_models(self.folder)
                self._cascade = None
                self.signature = sig
                self.loads += 1
                logger.info(
                    "%s: models loaded in %.2f s (load #%d)", self.folder, time.perf_counter() - tick, self.loads
                )
            return self._models

    def cascade(self) -> Cascade:
        """The cascade of the current checkpoints (built once per load, with the checkpoints' settings)."""
        models = self.get()
        with self._lock:
            if self._cascade is None or self._cascade.models is not models:
                self._cascade = Cascade(models)
            return self._cascade


_caches: dict[Path, ModelCache] = {}
_caches_lock = threading.Lock()


def model_cache(folder: str | os.PathLike) -> ModelCache:
    """The one cache of ``folder`` in this process."""
    key = Path(folder).resolve()
    with _caches_lock:
        if key not in _caches:
            _caches[key] = ModelCache(key)
        return _caches[key]


class CascadeInfer(InferTask):
    """Base of the infer tasks: image path -> the cache's :class:`Cascade` -> (label NIfTI, result JSON).

    Subclasses choose which volume is the label (:meth:`label_of`) and what goes in the JSON
    (:meth:`result_json`).
    """

    def __init__(self, models_dir: str | os.PathLike, labels, description: str, checkpoint: str):
        super().__init__(type=InferType.SEGMENTATION, labels=labels, dimension=3, description=description)
        self.cache = model_cache(models_dir)
        self.checkpoint = checkpoint

    def is_valid(self) -> bool:
        return self.cache.is_valid()

    def get_path(self, validate=True):
        path = self.cache.folder / self.checkpoint
        return str(path) if path.is_file() or not validate else None

    def label_of(self, result: InferenceResult) -> Volume:
        raise NotImplementedError

    def result_json(self, image: Volume, result: InferenceResult) -> dict[str, Any]:
        raise NotImplementedError

    def __call__(self, request) -> tuple[str, dict[str, Any]]:
        path = request.get("image")
        if not isinstance(path, (str, os.PathLike)):
            raise InputError(
                f"{self.description}: 'image' must be a NIfTI file or a DICOM series folder, got {type(path).__name__}"
            )
        if os.path.isdir(path):  # a DICOM series: MR only, refused before the models load
            try:
                require_modality(path, request.get("series_uid"))
            except InputError as exc:
                raise HTTPException(status_code=422, detail=f"{self.description}: {exc}") from None
        timings = {}
        tick = time.perf_counter()
        cascade = self.cache.cascade()
        timings["models"] = time.perf_counter() - tick
        tick = time.perf_counter()
        try:
            image = read_image(path)
            timings["read"] = time.perf_counter() - tick
            result = cascade(image)
        except InputError as exc:  # names the file and the problem: the client's error, not the server's
            raise HTTPException(status_code=422, detail=f"{self.description}: {exc}") from None
        tick = time.perf_counter()
        fd, out = tempfile.mkstemp(suffix=".nii.gz", prefix=f"cardiac_mi_{Path(str(path)).name.split('.')[0]}_")
        os.close(fd)
        write_nifti(self.label_of(result), out)
        timings["write"] = time.perf_counter() - tick
        data = self.result_json(image, result)
        data["timings_s"] = {**{k: round(v, 4) for k, v in timings.items()}, **data.get("timings_s", {})}
        data["models"] = {"folder": str(self.cache.folder), "two_stage": cascade.two_stage, "loads": self.cache.loads}
        for warning in result.warnings:
            logger.warning("%s: %s", path, warning)
        return out, data

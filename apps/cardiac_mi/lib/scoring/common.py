"""What the scoring methods and the epistemic strategy share: model signatures, settings, image info.

A score is only as good as the model that made it, so every stored score carries the signature
of the checkpoints it came from (:func:`model_signature`); a score whose signature differs from
the current checkpoints is stale and is computed again.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import os
from collections.abc import Mapping
from typing import Any

from fastapi import HTTPException
from monailabel.interfaces.datastore import Datastore, DefaultLabelTag

from lgemri.errors import InputError
from lgemri.inference import Models
from lib.infers.cascade import model_cache

logger = logging.getLogger(__name__)


def current_models(models_dir: str | os.PathLike) -> tuple[Models, str]:
    """The cascade of ``models_dir`` (shared with the infer tasks) and its checkpoint signature.

    The signature is a short hash of each checkpoint's name, mtime and size: it changes when a
    trainer publishes a new checkpoint, in this process or in another one.
    """
    cache = model_cache(models_dir)
    models = cache.get()
    return models, signature_of(cache.signature or ())


def signature_of(checkpoints: tuple) -> str:
    """A short, stable hash of ``(name, mtime_ns, size)`` checkpoint tuples."""
    text = json.dumps([list(c) for c in checkpoints])
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def setting(request: Mapping[str, Any], key: str, default: int, minimum: int = 0) -> int:
    """An integer setting from the request (or the app's conf passed in as ``default``).

    Raises:
        InputError: The value is not an integer of at least ``minimum``.
    """
    value = request.get(key, default)
    try:
        number = int(value)
        if isinstance(value, bool) or float(value) != number:
            raise ValueError
    except (TypeError, ValueError):
        raise InputError(f"{key} must be an integer of at least {minimum}, got {value!r}") from None
    if number < minimum:
        raise InputError(f"{key} must be an integer of at least {minimum}, got {number}")
    return number


def request_setting(request: Mapping[str, Any], key: str, default: int, minimum: int = 0, where: str = "") -> int:
    """:func:`setting` for a client's request: a bad value is the client's error (HTTP 422)."""
    try:
        return setting(request, key, default, minimum)
    except InputError as exc:
        raise HTTPException(status_code=422, detail=f"{where}: {exc}" if where else str(exc)) from None


def store_info(datastore: Datastore, image_id: str, info: dict[str, Any]) -> bool:
    """``datastore.update_image_info``, logging (not raising) when the datastore cannot keep it."""
    try:
        datastore.update_image_info(image_id, info)
        return True
    except Exception as exc:  # a read-only or remote datastore: the score stays in memory only
        logger.warning("%s: could not store %s in the datastore (%s)", image_id, ", ".join(info), exc)
        return False


def final_label_uri(datastore: Datastore, image_id: str, label_id: str) -> str:
    """The final label's file; DICOMweb datastores need the image id to place the converted label."""
    getter = datastore.get_label_uri
    if "image_id" in inspect.signature(getter).parameters:
        return getter(label_id, DefaultLabelTag.FINAL, image_id=image_id)
    return getter(label_id, DefaultLabelTag.FINAL)

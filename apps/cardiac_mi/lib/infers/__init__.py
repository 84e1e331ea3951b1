"""Infer tasks: each reads an image, runs the shared cascade and writes a label NIfTI."""

from .localization import Localization
from .segmentation import Segmentation

__all__ = ["Localization", "Segmentation"]

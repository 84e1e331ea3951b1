"""Task configs: one per capability, each owning its labels, checkpoint paths and infer task."""

from .localization import Localization
from .segmentation import Segmentation

__all__ = ["Localization", "Segmentation"]

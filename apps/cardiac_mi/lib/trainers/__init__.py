"""Train tasks: each retrains one model of the app on the datastore's final labels."""

from .segmentation import Segmentation

__all__ = ["Segmentation"]

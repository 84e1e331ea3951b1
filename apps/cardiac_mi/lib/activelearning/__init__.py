"""Active-learning strategies of the app beyond MONAI Label's ``random`` and ``first``.

- ``epistemic`` (:class:`Epistemic`): the unlabelled study with the highest Monte-Carlo dropout
  uncertainty, scored on the fly when its stored score is missing or stale.
"""

from .epistemic import Epistemic

__all__ = ["Epistemic"]

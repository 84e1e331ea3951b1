"""Scoring methods: each stores a per-study figure in the datastore's image info.

- ``dice`` (:class:`Dice`): Dice between the current model's label and the final label of every
  labelled study, under the ``"dice"`` key;
- ``epistemic`` (:class:`Epistemic`): the Monte-Carlo dropout uncertainty of every unlabelled
  study, under the ``"epistemic"`` key, which the ``epistemic`` strategy ranks by.

Both record the checkpoint signature with each score and only recompute stale scores; one run
scores at most ``max_images`` studies.
"""

from .dice import Dice
from .epistemic import Epistemic

__all__ = ["Dice", "Epistemic"]

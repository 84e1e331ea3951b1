"""Helpers shared by test modules, imported as ``tests.helpers.<module>`` (fixtures live in the conftest.py files).

A test module never imports from another test module: what two of them share moves here.

- ``app``: the MONAI Label app in process, and where the app, the models and the sample case are
- ``gan``: tiny prepared folders of synthetic ROI pairs and a tiny GAN configuration
- ``retrain``: tiny segmentation checkpoints and phantom training pairs (retraining and its review)
- ``serve``: ``cardiac-mi serve`` options on free ports, the blocking command as a script, a process gone
- ``timings``: the times the browser tests measure (summary, ``measurements.json``)
- ``uploads``: STOW-RS bodies, a new MR instance of the samples, a label file and its ``PUT /datastore/label``
- ``viewer``: driving OHIF in Chromium (study list, Cardiac MI mode, the panel's Run, brush, Save)
"""

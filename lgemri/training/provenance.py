"""Where a model's training data came from: recorded in every checkpoint, checked by the tests.

The shipped models may learn only from the real EMIDEC slices beside the project
(``../shared/data/emidec-png``, licence CC BY-NC-SA 4.0) and from the project's own generators
(the phantom, the simulator and the GAN), and no case may be in two splits. To make that
checkable long after the data are gone, :func:`data_provenance` records, per source, what kind
of data it is and which case went to which split; the training loop stores it in the
checkpoint (``extra["provenance"]``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

__all__ = ["data_provenance", "origin_of", "ORIGINS"]

ORIGINS = ("emidec-png", "emidec-nifti", "phantom", "generated", "other")


def origin_of(image_path: str, layout: str | None) -> str:
    """The kind of data an image of a prepared folder came from.

    ``emidec-png``: the PNG copy of EMIDEC (a folder named ``emidec-png``); ``phantom``: a
    ``cardiac-mi phantom`` output (a ``phantom.json`` beside its ``emidec/`` folder);
    ``emidec-nifti``: any other EMIDEC-layout NIfTI; ``other``: anything else.
    """
    path = Path(image_path)
    if layout == "png":
        return "emidec-png" if any(part == "emidec-png" for part in path.parts) else "other"
    for parent in path.parents:
        if (parent / "phantom.json").is_file():
            return "phantom"
    return "emidec-nifti" if path.name.startswith("Case_") else "other"


def _source_path(source) -> Path:
    if isinstance(source, (tuple, list)):
        return Path(source[0])
    return Path(source)


def data_provenance(sources: Sequence) -> list[dict]:
    """Per training source: its name, origin(s) and the case ids of each split.

    A prepared folder is described from its ``cases.json``; a datalist JSON (the GAN's and the
    active-learning trainer's synthetic slices) by its case ids per split, with origin
    ``generated`` unless its entries say otherwise.
    """
    records = []
    for source in sources:
        path = _source_path(source)
        record: dict = {"source": path.name, "splits": {}, "origins": {}}
        if path.suffix.lower() == ".json":
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                data = {}
            for split, keys in (
                ("train", ("training", "train")),
                ("val", ("validation", "val")),
                ("test", ("test", "testing")),
            ):
                ids = sorted(
                    {str(e.get("case_id") or e.get("name") or "") for key in keys for e in data.get(key) or []}
                )
                if ids:
                    record["splits"][split] = ids
            record["origins"] = {"generated": sum(len(v) for v in record["splits"].values())}
        elif (path / "cases.json").is_file():
            cases = json.loads((path / "cases.json").read_text(encoding="utf-8"))
            for case_id, info in sorted(cases.items()):
                record["splits"].setdefault(info.get("split", "train"), []).append(case_id)
                origin = origin_of(info.get("image_path", ""), info.get("layout"))
                record["origins"][origin] = record["origins"].get(origin, 0) + 1
        else:
            record["origins"] = {"other": 0}
        records.append(record)
    return records

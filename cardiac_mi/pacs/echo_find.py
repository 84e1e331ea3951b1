"""C-ECHO and C-FIND (Study Root; series found study by study, as the hierarchical model requires)."""

from __future__ import annotations

import time
from typing import Any

from cardiac_mi.pacs.association import associate, c_find, lost, require, status_text
from cardiac_mi.pacs.config import LEVELS, PacsError, PacsSettings
from cardiac_mi.pacs.query import Match, Query, series_identifier, series_match, study_identifier, study_match
from lgemri.errors import InputError

__all__ = ["echo", "find"]


def echo(settings: PacsSettings) -> float:
    """C-ECHO the PACS; returns the round trip in seconds (association included).

    Raises:
        PacsError: the PACS cannot be reached, rejects the association or answers with a failure.
    """
    from pynetdicom import DEFAULT_TRANSFER_SYNTAXES
    from pynetdicom.sop_class import Verification

    tick = time.perf_counter()
    with associate(settings, [(Verification, DEFAULT_TRANSFER_SYNTAXES)]) as assoc:
        require(settings, assoc, Verification)
        status = assoc.send_c_echo()
        if not status:
            raise PacsError(lost(settings, assoc, "C-ECHO"))
        if int(status.Status) != 0x0000:
            raise PacsError(f"{settings}: {status_text('C-ECHO', status)}")
    return time.perf_counter() - tick


def find_studies(settings: PacsSettings, assoc: Any, query: Query) -> list[Match]:
    found = (study_match(ds) for ds in c_find(settings, assoc, study_identifier(query)))
    return sorted(found, key=lambda m: (m.study_date, m.patient_id, m.study_uid))


def find_series(settings: PacsSettings, assoc: Any, studies: list[Match], modality: str | None) -> list[Match]:
    series: list[Match] = []
    for study in studies:
        found = [
            series_match(study, ds) for ds in c_find(settings, assoc, series_identifier(study.study_uid, modality))
        ]
        if modality:  # a PACS may ignore the filter: keep only what matches
            found = [m for m in found if modality in m.modalities]
        series += sorted(
            found, key=lambda m: (m.series_number if m.series_number is not None else 1 << 30, m.series_uid or "")
        )
    return series


def _check_level(level: str) -> str:
    value = str(level).upper()
    if value not in LEVELS:
        raise InputError(f"query level {level!r}: choose one of {', '.join(v.lower() for v in LEVELS)}")
    return value


def find(settings: PacsSettings, query: Query, level: str = "STUDY") -> list[Match]:
    """C-FIND (Study Root) the studies or series matching ``query``; an empty list when nothing matches.

    Args:
        settings: the PACS.
        query: the filters.
        level: ``STUDY`` or ``SERIES`` (series of the matching studies, with ``query.modality`` applied to
            each series).

    Raises:
        PacsError: connection, association or C-FIND failure.
    """
    from pynetdicom import DEFAULT_TRANSFER_SYNTAXES
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind as FIND

    level = _check_level(level)
    with associate(settings, [(FIND, DEFAULT_TRANSFER_SYNTAXES)]) as assoc:
        require(settings, assoc, FIND)
        studies = find_studies(settings, assoc, query)
        return studies if level == "STUDY" else find_series(settings, assoc, studies, query.modality)

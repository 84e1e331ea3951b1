"""A DIMSE PACS connection (pynetdicom): C-ECHO, C-FIND, C-GET / C-MOVE into the product's store, a C-STORE listener.

The product's store is DICOMweb (the embedded Orthanc or any DICOMweb server, ``cardiac_mi.store``). A
DIMSE PACS is reached with four settings, ``PacsSettings``: its host, port and AE title, and our own AE
title, optionally over TLS::

    pacs = PacsSettings("pacs.example.org", 11112, "PACS", calling_aet="CARDIACMI")
    echo(pacs)
    for match in find(pacs, Query(patient_id="12345", date="20240101-20241231")):
        print(match.study_uid, match.modalities)
    report = retrieve(pacs, store, Query(study_uids=("1.2.3",)), spool=Spool("state/pacs-spool"))

Design:

- **One association per operation.** ``_associate`` asks for the presentation contexts the operation
  needs and turns every way it can fail into a ``PacsError`` that names the cause: unknown host,
  connection refused or timed out, TLS handshake failures, an association rejected (with the PACS's
  reason: called or calling AE title not recognised), no accepted service. pynetdicom reports connection
  and TLS failures only through its log, so a handler on the ``pynetdicom`` logger collects them for
  the message.
- **Retrieval goes through a spool** (``Spool``, on :class:`cardiac_mi.outbox.Outbox`, the datastore's SEG
  outbox too). C-GET (the default: the PACS sends the instances back over our own association, so no
  listening port is needed) and the C-STORE listener write every instance to
  ``SPOOL/incoming/<StudyUID>/<SOPInstanceUID>.dcm`` (write-then-rename, fsync) before they answer
  success, then send the spool to the store by STOW-RS. A file leaves the spool only once the store
  confirmed it (or already had it); files the store refuses move to ``SPOOL/refused/`` with a
  ``.reason.txt``. When the store is down the files stay, and the next ``retrieve``, ``listen`` or
  ``flush`` sends them: no study is lost.
- **C-MOVE** asks the PACS to send to a destination AE that the PACS knows by host and port: the
  product's own Orthanc (its DICOM port; nothing is spooled) or, with ``receive_port``, a listener we
  run for the duration of the move (spooled like C-GET).
- **Every retrieval is verified.** Before fetching, an IMAGE-level C-FIND lists the SOP instances the
  PACS holds for each study or series; afterwards a QIDO-RS query of the store counts how many of them
  it holds. The report gives both, with the PACS's sub-operation counts.
- Queries use the Study Root information model. Series-level matches are found study by study (a
  SERIES-level C-FIND below each matching study), as the hierarchical model requires.

The modules, in the order data goes through them: ``config`` (``PacsSettings``, ``Tls``, ``PacsError``),
``query`` (``Query``, ``Match``, the C-FIND identifiers), ``association`` (one association, its failures
named), ``echo_find`` (``echo``, ``find``), ``spool``, ``retrieval`` (``retrieve`` and its report),
``listener`` (``Listener``), and ``archive``: the only calls to the product's store (STOW-RS of the spool,
QIDO-RS to verify), so that its client can change there alone. The command line is
:mod:`cardiac_mi.commands.pacs`.

pynetdicom and pydicom are imported inside the functions that use them, and the store's client when first
needed, so that building the ``cardiac-mi`` parser stays fast.
"""

from __future__ import annotations

from cardiac_mi.pacs.config import PacsError, PacsSettings, Tls
from cardiac_mi.pacs.echo_find import echo, find
from cardiac_mi.pacs.listener import Listener
from cardiac_mi.pacs.query import Match, Query, normalize_date
from cardiac_mi.pacs.retrieval import Retrieved, RetrieveReport, retrieve
from cardiac_mi.pacs.spool import Spool

__all__ = [
    "PacsError",
    "Tls",
    "PacsSettings",
    "Query",
    "Match",
    "Retrieved",
    "RetrieveReport",
    "Spool",
    "Listener",
    "echo",
    "find",
    "retrieve",
    "normalize_date",
]

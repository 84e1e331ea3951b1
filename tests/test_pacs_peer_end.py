"""A PACS that ends the association is told apart from one that does not answer (issue 16, point 12).

The peer is a pynetdicom C-FIND SCP on loopback, so these run without Orthanc. The answer must come from
what the peer sent (A-ABORT, a closed connection, or nothing), never from the time the request waited.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest
from pynetdicom import AE, evt
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind as FIND

from cardiac_mi.orthanc import free_port
from cardiac_mi.pacs import PacsError, PacsSettings, Query, find

PEER_AET = "PEER"


def _peer(on_find):
    ae = AE(ae_title=PEER_AET)
    ae.add_supported_context(FIND)
    port = free_port()
    server = ae.start_server(("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_FIND, on_find)])
    return server, port


@pytest.fixture
def peer(request):
    servers = []

    def start(on_find):
        server, port = _peer(on_find)
        servers.append(server)
        return PacsSettings("127.0.0.1", port, PEER_AET, "CARDIACMI", timeout=1)

    yield start
    for server in servers:
        server.shutdown()


def test_silence_is_a_timeout(peer):
    release = threading.Event()

    def on_find(event):
        release.wait(5)
        yield 0x0000, None

    settings = peer(on_find)
    try:
        with pytest.raises(PacsError, match=r"did not answer our C-FIND within 1 s$"):
            find(settings, Query(patient_id="X"))
    finally:
        release.set()


def test_an_abort_is_the_peer_ending_the_association_however_long_it_took(peer, monkeypatch):
    def on_find(event):
        event.assoc.abort()
        yield 0x0000, None

    settings = peer(on_find)
    real_monotonic = time.monotonic  # a process stalled for a minute must not change the answer
    monkeypatch.setattr(time, "monotonic", lambda: real_monotonic() + 60.0)
    with pytest.raises(
        PacsError,
        match=r"ended the association instead of answering our C-FIND \(it sent an "
        r"A-ABORT\): the PACS may not allow AE 'CARDIACMI'",
    ):
        find(settings, Query(patient_id="X"))


def test_a_closed_connection_is_the_peer_ending_the_association(peer):
    def on_find(event):
        event.assoc.dul.socket.socket.shutdown(socket.SHUT_RDWR)
        yield 0x0000, None

    settings = peer(on_find)
    with pytest.raises(
        PacsError,
        match=r"ended the association instead of answering our C-FIND \(it closed the "
        r"connection\)",
    ):
        find(settings, Query(patient_id="X"))


def test_a_release_request_is_the_peer_ending_the_association(peer):
    def on_find(event):
        event.assoc.release()
        yield 0x0000, None

    settings = peer(on_find)
    with pytest.raises(
        PacsError,
        match=r"ended the association instead of answering our C-FIND \(it asked to "
        r"release the association\)",
    ):
        find(settings, Query(patient_id="X"))

"""The C-STORE listener: spools what it receives and forwards it to the store."""

from __future__ import annotations

import errno
import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cardiac_mi.orthanc import AE_TITLE
from cardiac_mi.outbox import Delivery
from cardiac_mi.pacs import archive
from cardiac_mi.pacs.config import PacsError, Tls, check_aet, check_port
from cardiac_mi.pacs.spool import Spool, store_handler
from lgemri.errors import InputError

if TYPE_CHECKING:
    from cardiac_mi.store import DicomStore, StowResult

__all__ = ["Listener"]

logger = logging.getLogger(__name__)


class Listener:
    """A C-STORE SCP that spools what it receives and forwards it to the store after each association.

    Args:
        store: the product's DICOMweb store; None with ``forward=False``.
        spool: where instances wait until the store has them.
        port: the TCP port (0 picks a free one; ``port`` tells which after ``start``).
        aet: our AE title; associations addressed to another one are rejected.
        bind: the address to listen on (``0.0.0.0`` for every interface).
        tls: our certificate and key (and the CA of the senders' certificates) for DICOM over TLS.
        allowed_aets: calling AE titles allowed to send; empty allows any.
        forward: send the spool to ``store`` when an association ends (and every ``retry_interval``
            seconds while files wait: the spool's outbox retry thread).
        retry_interval: seconds between attempts while the store is unreachable.
    """

    def __init__(
        self,
        store: DicomStore | None,
        spool: Spool,
        *,
        port: int,
        aet: str = AE_TITLE,
        bind: str = "127.0.0.1",
        tls: Tls | None = None,
        allowed_aets: Sequence[str] = (),
        forward: bool = True,
        retry_interval: float = 30.0,
    ) -> None:
        if forward and store is None:
            raise InputError("a forwarding listener needs a store")
        self.store = store
        self.spool = spool
        self.port = check_port(port, "listen port", allow_zero=True)
        self.aet = check_aet(aet, "our AE title")
        self.bind = bind
        self.tls = tls
        self.allowed_aets = [check_aet(a, "allowed AE title") for a in allowed_aets]
        self.forward = forward
        self.retry_interval = retry_interval
        self.received = 0
        self.forwarded: StowResult | None = None
        self.last_error: str | None = None
        self._server: Any = None
        self._handler = store_handler(spool)
        self._forwarding = False  # started with forward=True, not stopped yet
        self._stopping = threading.Event()
        self._count_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Listener({self.aet}@{self.bind}:{self.port})"

    def _on_store(self, event: Any) -> int:
        status = self._handler(event)
        if status == 0x0000:
            with self._count_lock:
                self.received += 1
        return status

    def _on_end(self, event: Any) -> None:
        if self._forwarding:
            self._retry(now=True)

    def _retry(self, now: bool) -> None:
        """Have the spool's retry thread send what waits (at once with ``now``), every ``retry_interval`` s."""
        self.spool.outbox.start_retry(now=now, send=self._send, delays=(self.retry_interval,))

    def _send(self, paths: list[Path]) -> Delivery:
        """The spool's send function while listening: STOW to the store, counting what it took."""
        assert self.store is not None
        try:
            delivery = archive.stow_sender(self.store)(paths)
        except archive.ArchiveError as exc:
            self.last_error = str(exc)
            raise
        self.last_error = None
        result = delivery.detail
        if result.total:
            logger.info("forwarded to %s: %s", self.store.url, result.summary())
            with self._count_lock:
                self.forwarded = self.forwarded + result if self.forwarded is not None else result
        return delivery

    def start(self) -> Listener:
        """Listen (in background threads) until ``stop``; raise ``PacsError`` when the port is taken."""
        from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt
        from pynetdicom.sop_class import Verification

        ssl_context = self.tls.server_context() if self.tls is not None else None
        ae = AE(ae_title=self.aet)
        ae.require_called_aet = True
        if self.allowed_aets:
            ae.require_calling_aet = self.allowed_aets
        ae.add_supported_context(Verification)
        for context in AllStoragePresentationContexts:
            ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)
        handlers = [
            (evt.EVT_C_STORE, self._on_store),
            (evt.EVT_RELEASED, self._on_end),
            (evt.EVT_ABORTED, self._on_end),
        ]
        try:
            self._server = ae.start_server(
                (self.bind, self.port), block=False, evt_handlers=handlers, ssl_context=ssl_context
            )
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                problem = (
                    "the port is already in use"
                    if exc.errno == errno.EADDRINUSE
                    else "permission denied (ports below 1024 need privileges)"
                )
                raise PacsError(f"cannot listen on {self.bind}:{self.port}: {problem}; choose another port") from None
            raise PacsError(f"cannot listen on {self.bind}:{self.port} ({exc.strerror or exc})") from None
        self.port = self._server.server_address[1]
        self.forwarded = archive.nothing_sent()
        if self.forward:
            self._forwarding = True
            if self.spool.pending():  # left by an earlier run: tried after retry_interval (or when woken)
                self._retry(now=False)
        logger.info(
            "listening for C-STORE to AE %s on %s:%d%s", self.aet, self.bind, self.port, " (TLS)" if ssl_context else ""
        )
        return self

    def flush(self) -> StowResult | None:
        """Send what the spool holds to the store now; None when the store cannot be reached (logged, and
        tried again every ``retry_interval`` s while listening)."""
        assert self.store is not None
        try:
            return self.spool.flush(self.store, send=self._send)
        except archive.ArchiveError as exc:
            left = len(self.spool.pending())
            logger.warning(
                "%s; %d files wait in %s (retrying every %g s)", exc, left, self.spool.incoming, self.retry_interval
            )
            if self._forwarding and not self._stopping.is_set():
                self._retry(now=False)
            return None

    def stop(self) -> None:
        """Stop listening, then send what is left in the spool (files stay there if the store is down)."""
        if self._server is not None:
            self._server.shutdown()
            self._server = None
        self._stopping.set()
        if self._forwarding:
            self._forwarding = False
            self.spool.outbox.stop_retry()
            self.flush()

    def serve_forever(self) -> None:
        """Block until interrupted (Ctrl-C or SIGTERM), then stop."""
        import signal

        previous = signal.getsignal(signal.SIGTERM)
        signal.signal(signal.SIGTERM, lambda *_: self._stopping.set())
        try:
            while not self._stopping.wait(1.0):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            signal.signal(signal.SIGTERM, previous)
            self.stop()

    def __enter__(self) -> Listener:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

"""One outbox: files that must reach an archive, kept on disk until the archive confirms them.

The datastore's SEG saves (``CACHE/outbox/``) and the PACS spool (``SPOOL/incoming/``) both use it::

    outbox = Outbox(folder, send, refused=folder / "refused", pattern="*.dcm")
    path = outbox.put("20250101T120000_1.2.3.dcm", data)  # durable before it returns
    outbox.flush()  # or outbox.start_retry(): a thread that tries again with back-off

How a file travels:

- **pending**: ``put`` writes it under a temporary name beside its place (a name starting with ``.``,
  never listed), fsyncs it, renames it into place and fsyncs the folder: once ``put`` returns, the file
  is whole and survives a crash. Folders are created readable by us only (0700): they hold patient data.
- **sent**: ``flush`` hands pending files to ``send``, the function the user of the outbox injects (a
  STOW-RS upload, or anything else). A file the send function confirms is deleted, and remembered (in
  memory) for the status listing.
- **refused**: a file the send function refuses moves to the ``refused`` folder (same relative name)
  with ``<file>.reason.txt`` beside it. It is never deleted.
- A file the send function neither confirms nor refuses stays pending. When ``send`` raises (the archive
  cannot be reached), the files of that batch and the ones after it stay pending, the error is recorded
  as their reason, and ``flush`` raises it again to its caller: the order is kept, nothing is lost.

``entries()`` lists all three states with their reasons and times, for status pages. Several threads
may flush at once: a file being sent by one is not sent again by another (the second waits for it).

Older layouts: ``legacy_reasons`` names reason-file suffixes that earlier versions wrote (the
datastore's ``<file>.txt``); they are renamed to ``<file>.reason.txt`` when the outbox is opened.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lgemri.errors import InputError

__all__ = ["Outbox", "Delivery", "Sender", "Flushed", "Entry", "RETRY_DELAYS_S", "REASON_SUFFIX"]

logger = logging.getLogger(__name__)

RETRY_DELAYS_S = (2.0, 5.0, 10.0, 20.0, 30.0)  # between tries while the archive is down; the last repeats
REASON_SUFFIX = ".reason.txt"
PENDING, REFUSED, SENT = "pending", "refused", "sent"
_RECENT = 200  # sent (and refused) outcomes remembered in memory for the listing


def _read_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()  # read once at import: os.umask is process-wide


@dataclass
class Delivery:
    """What a send function did with the files it was given.

    Attributes:
        sent: files the archive has now (stored, or it had them already); they leave the outbox.
        refused: files the archive will not take, with the reason; they move to the refused folder.
        detail: the send function's own answer (e.g. a ``StowResult``), handed back by ``flush``.

    Files in neither stay pending.
    """

    sent: list[Path] = field(default_factory=list)
    refused: dict[Path, str] = field(default_factory=dict)
    detail: Any = None


Sender = Callable[[list[Path]], Delivery]


@dataclass
class Flushed:
    """What a ``flush`` did: the files sent and refused (also those another thread finished meanwhile),
    how many files are still pending, and the send function's answers (``Delivery.detail``), one per batch."""

    sent: list[Path] = field(default_factory=list)
    refused: dict[Path, str] = field(default_factory=dict)
    left: int = 0
    details: list[Any] = field(default_factory=list)


@dataclass(frozen=True)
class Entry:
    """One file of the outbox for a status page.

    Attributes:
        state: ``pending``, ``refused`` or ``sent``.
        name: its name relative to the pending folder (``<study>/<sop>.dcm``, ``<time>_<series>.dcm``).
        path: where it is now (None once sent: it is deleted).
        reason: why it was refused, or for a pending file why its last try failed ("" when not tried).
        time: when it was written (pending), refused or sent (seconds since the epoch).
    """

    state: str
    name: str
    path: Path | None
    reason: str
    time: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "name": self.name,
            "path": str(self.path) if self.path else None,
            "reason": self.reason,
            "time": self.time,
        }


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def private_dir(folder: Path) -> Path:
    """Create ``folder`` and its missing parents readable by us only (0700), each made durable."""
    missing = []
    current = folder
    while not current.exists():
        missing.append(current)
        current = current.parent
    for path in reversed(missing):
        with contextlib.suppress(FileExistsError):
            path.mkdir(mode=0o700)
            _fsync_dir(path.parent)
    return folder


class Outbox:
    """Files kept on disk until ``send`` confirms them (see the module docstring).

    Args:
        folder: the pending files' folder.
        send: the default send function (``flush`` and ``start_retry`` may be given another one).
        refused: the folder of refused files (default ``folder/refused``).
        pattern: the glob, relative to ``folder``, that finds pending files (``*.dcm``, ``*/*.dcm``).
        batch: files per call of ``send`` (None: all pending files in one call).
        delays: seconds between the retry thread's tries while files stay pending; the last repeats.
        name: how logs name this outbox.
        thread_name: the retry thread's name.
        legacy_reasons: reason-file suffixes of older layouts, renamed to ``.reason.txt`` on opening.
    """

    def __init__(
        self,
        folder: str | os.PathLike,
        send: Sender | None = None,
        *,
        refused: str | os.PathLike | None = None,
        pattern: str = "*",
        batch: int | None = None,
        delays: Sequence[float] = RETRY_DELAYS_S,
        name: str | None = None,
        thread_name: str = "outbox-retry",
        legacy_reasons: Sequence[str] = (),
    ) -> None:
        self.folder = Path(folder)
        self.refused_folder = Path(refused) if refused is not None else self.folder / "refused"
        self.send = send
        self.pattern = pattern
        if batch is not None and batch < 1:
            raise ValueError(f"batch {batch} must be at least 1 (or None: everything at once)")
        self.batch = batch
        if not delays or any(d < 0 for d in delays):
            raise ValueError(f"retry delays {tuple(delays)} must be one or more seconds >= 0")
        self.delays = tuple(float(d) for d in delays)
        self.name = name or f"outbox {self.folder}"
        self.thread_name = thread_name
        self.last_error: str | None = None  # the last send error (None after a send that worked)
        self._cond = threading.Condition()
        self._busy: set[Path] = set()  # files a flush is sending now
        self._waiting: dict[Path, tuple[str, float]] = {}  # pending file -> why its last try failed, when
        self._recent: collections.OrderedDict[Path, Entry] = collections.OrderedDict()
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._migrate(legacy_reasons)

    def __repr__(self) -> str:
        return f"Outbox({str(self.folder)!r})"

    # ------------------------------------------------------------------------------ layout

    def _migrate(self, legacy_reasons: Sequence[str]) -> None:
        """Rename reason files of an older layout (``<file><suffix>``) to ``<file>.reason.txt``."""
        if not legacy_reasons or not self.refused_folder.is_dir():
            return
        for suffix in legacy_reasons:
            for old in self.refused_folder.rglob(f"*{suffix}"):
                if old.name.endswith(REASON_SUFFIX) or old.name.startswith("."):
                    continue
                refused = old.with_name(old.name[: -len(suffix)])
                new = refused.with_name(refused.name + REASON_SUFFIX)
                if refused.is_file() and not new.exists():
                    os.replace(old, new)
                    logger.info("%s: %s renamed to %s (the outbox's layout)", self.name, old.name, new.name)

    def path_of(self, name: str) -> Path:
        """The pending path of ``name``; ``ValueError`` for a name that leaves the folder or is hidden."""
        parts = Path(name).parts
        if not parts or Path(name).is_absolute() or any(p in ("..", ".") or p.startswith(".") for p in parts):
            raise ValueError(f"outbox name {name!r}: a relative name without '..' or hidden parts")
        return self.folder.joinpath(*parts)

    def _listed(self, path: Path) -> bool:
        return not path.name.startswith(".") and not path.name.endswith(REASON_SUFFIX)

    # ------------------------------------------------------------------------------ writing

    def put(self, name: str, data: bytes) -> Path:
        """Write ``data`` as the pending file ``name``, durably (see the module docstring); returns its path."""

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as handle:
                handle.write(data)

        return self.put_file(name, write)

    def put_file(self, name: str, write: Callable[[Path], None]) -> Path:
        """Like ``put``, with ``write(tmp)`` writing the file's content to the temporary path it is given.

        Whatever ``write`` raises is raised again, and nothing is left in the outbox."""
        path = self.path_of(name)
        self._durable(path, write)
        return path

    def _durable(self, path: Path, write: Callable[[Path], None]) -> None:
        for attempt in range(3):
            try:
                private_dir(path.parent)
                # a short temporary name (DICOM UIDs make long names, and writers may add their own)
                fd, name = tempfile.mkstemp(prefix=".tmp-", suffix=path.suffix, dir=path.parent)
                break
            except FileNotFoundError:
                # a flush removed the (empty) sub-folder between mkdir and write: make it again
                if attempt == 2:
                    raise
        os.close(fd)
        tmp = Path(name)
        try:
            write(tmp)
            _fsync_file(tmp)
            os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; what a plain open() would make
            os.replace(tmp, path)
            _fsync_dir(path.parent)
        finally:
            tmp.unlink(missing_ok=True)

    # ------------------------------------------------------------------------------ listing

    def pending(self) -> list[Path]:
        """The pending files, in name order (temporary files of writes in progress excluded)."""
        if not self.folder.is_dir():
            return []
        return sorted(p for p in self.folder.glob(self.pattern) if self._listed(p) and p.is_file())

    def refused(self) -> list[Entry]:
        """The refused files with their reasons, in name order."""
        if not self.refused_folder.is_dir():
            return []
        entries = []
        for path in sorted(self.refused_folder.rglob("*")):
            if not self._listed(path) or not path.is_file():
                continue
            reason_file = path.with_name(path.name + REASON_SUFFIX)
            try:
                reason = reason_file.read_text(encoding="utf-8").strip()
            except OSError:
                reason = ""
            when = 0.0
            with contextlib.suppress(OSError):
                when = path.stat().st_mtime
            entries.append(Entry(REFUSED, path.relative_to(self.refused_folder).as_posix(), path, reason, when))
        return entries

    def entries(self) -> list[Entry]:
        """Every file the outbox knows: pending (with why its last try failed), refused (with the reason),
        and the recently sent (remembered since this process opened the outbox)."""
        with self._cond:
            waiting = dict(self._waiting)
            sent = [e for e in self._recent.values() if e.state == SENT]
        entries = []
        for path in self.pending():
            reason, _ = waiting.get(path, ("", 0.0))
            try:
                when = path.stat().st_mtime
            except OSError:  # sent meanwhile
                continue
            entries.append(Entry(PENDING, path.relative_to(self.folder).as_posix(), path, reason, when))
        return entries + self.refused() + sent

    def counts(self) -> dict[str, int]:
        """How many files are pending, refused and (recently) sent."""
        found = collections.Counter(entry.state for entry in self.entries())
        return {state: found.get(state, 0) for state in (PENDING, REFUSED, SENT)}

    # ------------------------------------------------------------------------------ sending

    def flush(self, paths: Iterable[Path] | None = None, *, send: Sender | None = None) -> Flushed:
        """Send the pending files (or those of ``paths``) now, in ``batch``-sized calls of ``send``.

        Files that another thread is sending are waited for, not sent twice; the result counts them
        as that thread left them.

        Raises:
            whatever ``send`` raised: the files of that call and the later ones stay pending.
        """
        send = send or self.send
        if send is None:
            raise ValueError(f"{self.name}: no send function to flush with")
        result = Flushed()
        with self._cond:
            wanted = list(paths) if paths is not None else self.pending()
            self._cond.wait_for(lambda: not self._busy.intersection(wanted))
            mine = [p for p in wanted if p.exists()]
            for path in wanted:
                done = self._recent.get(path) if path not in mine else None
                if done is not None and done.state == SENT:
                    result.sent.append(path)
                elif done is not None:
                    result.refused[path] = done.reason
            self._busy.update(mine)
        try:
            step = self.batch or max(len(mine), 1)
            for start in range(0, len(mine), step):
                chunk = mine[start : start + step]
                try:
                    delivery = send(chunk)
                except Exception as exc:
                    self._note_failure(mine[start:], str(exc))
                    raise
                self._apply(chunk, delivery, result)
        finally:
            with self._cond:
                self._busy.difference_update(mine)
                self._cond.notify_all()
            self._tidy({p.parent for p in mine})
        result.left = len(self.pending())
        return result

    def _note_failure(self, paths: list[Path], reason: str) -> None:
        now = time.time()
        with self._cond:
            self.last_error = reason
            for path in paths:
                self._waiting[path] = (reason, now)

    def _apply(self, chunk: list[Path], delivery: Delivery, result: Flushed) -> None:
        now = time.time()
        sent = [p for p in delivery.sent if p in chunk]
        for path in sent:
            path.unlink(missing_ok=True)
        for path, reason in delivery.refused.items():
            if path in chunk and path not in sent:
                self._refuse(path, reason)
        kept = [p for p in chunk if p not in sent and p not in delivery.refused]
        with self._cond:
            self.last_error = None
            for path in sent:
                self._remember(Entry(SENT, self._name(path), None, "", now), path)
                self._waiting.pop(path, None)
            for path in chunk:
                if path in delivery.refused and path not in sent:
                    self._remember(Entry(REFUSED, self._name(path), None, delivery.refused[path], now), path)
                    self._waiting.pop(path, None)
            for path in kept:
                self._waiting[path] = ("the archive did not confirm it", now)
        result.sent += sent
        result.refused.update({p: r for p, r in delivery.refused.items() if p in chunk and p not in sent})
        result.details.append(delivery.detail)
        if sent:
            logger.info("%s: %d file(s) sent", self.name, len(sent))

    def _name(self, path: Path) -> str:
        with contextlib.suppress(ValueError):
            return path.relative_to(self.folder).as_posix()
        return path.name

    def _remember(self, entry: Entry, path: Path) -> None:
        self._recent[path] = entry
        self._recent.move_to_end(path)
        while len(self._recent) > _RECENT:
            self._recent.popitem(last=False)

    def _refuse(self, path: Path, reason: str) -> None:
        try:
            relative = path.relative_to(self.folder)
        except ValueError:
            relative = Path(path.name)
        target = self.refused_folder / relative
        private_dir(target.parent)
        os.replace(path, target)
        _fsync_dir(target.parent)

        def write(tmp: Path) -> None:
            tmp.write_text(reason + "\n", encoding="utf-8")

        self._durable(target.with_name(target.name + REASON_SUFFIX), write)
        logger.error("%s: %s refused: %s (kept in %s)", self.name, relative.as_posix(), reason, target.parent)

    def _tidy(self, folders: set[Path]) -> None:
        """Remove emptied sub-folders of the pending folder (never the folder itself)."""
        for folder in folders:
            if folder != self.folder and self.folder in folder.parents:
                with contextlib.suppress(OSError):
                    folder.rmdir()  # only when empty

    # ------------------------------------------------------------------------------ retry thread

    def start_retry(
        self, *, now: bool = False, send: Sender | None = None, delays: Sequence[float] | None = None
    ) -> None:
        """Keep trying in a background thread while files are pending, waiting ``delays`` between tries.

        The thread ends once nothing is pending. When it runs already, it tries again at once; otherwise its
        first try is after the first delay, or at once with ``now``. ``send`` and ``delays`` (default: the
        outbox's own) are what that thread sends with and waits.
        """
        send = send or self.send
        if send is None:
            raise ValueError(f"{self.name}: no send function to retry with")
        delays = tuple(float(d) for d in delays) if delays else self.delays
        with self._cond:
            if self._thread is not None:
                self._wake.set()
                return
            self._stopping.clear()
            if now:
                self._wake.set()
            self._thread = threading.Thread(
                target=self._retry_loop, args=(send, delays), name=self.thread_name, daemon=True
            )
            self._thread.start()

    @property
    def retrying(self) -> bool:
        """Whether the retry thread runs."""
        with self._cond:
            return self._thread is not None

    def stop_retry(self) -> None:
        """Stop the retry thread (after the send it may be doing) and wait for it."""
        with self._cond:
            thread = self._thread
            self._stopping.set()
            self._wake.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def _retry_loop(self, send: Sender, delays: tuple[float, ...]) -> None:
        attempt = 0
        try:
            while True:
                self._wake.wait(delays[min(attempt, len(delays) - 1)])
                self._wake.clear()
                if self._stopping.is_set():
                    return
                error: Exception | None = None
                try:
                    left = self.flush(send=send).left
                except Exception as exc:  # noqa: BLE001 - the thread must outlive one failed try
                    error, left = exc, len(self.pending())
                    if not isinstance(exc, (InputError, OSError)):  # not the archive being away: a bug
                        logger.exception("%s: sending failed", self.name)
                attempt = 0 if not left else attempt + 1
                with self._cond:
                    if self._stopping.is_set():
                        return
                    if not self.pending() and not self._wake.is_set():
                        self._thread = None  # in the same lock as start_retry's look: no wake-up is lost
                        logger.info("%s empty: every file sent", self.name)
                        return
                if left:
                    logger.warning(
                        "%s: %d file(s) wait (next try in %.0f s)%s",
                        self.name,
                        left,
                        delays[min(attempt, len(delays) - 1)],
                        f": {error}" if error is not None else "",
                    )
        finally:
            with self._cond:
                if self._thread is threading.current_thread():
                    self._thread = None

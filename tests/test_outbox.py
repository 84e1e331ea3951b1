"""The outbox (``cardiac_mi.outbox``): durable writes, the three states with reasons, retry, older layouts."""

from __future__ import annotations

import os
import stat
import threading
import time
from pathlib import Path

import pytest

import cardiac_mi.outbox as outbox_module
from cardiac_mi.outbox import REASON_SUFFIX, Delivery, Outbox
from lgemri.errors import InputError


class Archive:
    """A send function: takes every file, refuses names with 'bad', or is down (raises)."""

    def __init__(self) -> None:
        self.down = False
        self.calls: list[list[str]] = []
        self.held: dict[str, bytes] = {}

    def __call__(self, paths: list[Path]) -> Delivery:
        self.calls.append([p.name for p in paths])
        if self.down:
            raise InputError("cannot reach the archive (connection refused)")
        delivery = Delivery(detail=len(paths))
        for path in paths:
            if "bad" in path.name:
                delivery.refused[path] = f"{path.name}: not a DICOM file"
            else:
                self.held[path.name] = path.read_bytes()
                delivery.sent.append(path)
        return delivery


def wait_for(condition, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_put_is_durable_and_private(tmp_path, monkeypatch):
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    box = Outbox(tmp_path / "spool" / "incoming", pattern="*/*.dcm")
    path = box.put("1.2.3/4.5.6.dcm", b"DICM data")
    assert path == tmp_path / "spool" / "incoming" / "1.2.3" / "4.5.6.dcm"
    assert path.read_bytes() == b"DICM data"
    # the file's content (under its temporary name, before the rename) and the folder it was renamed in
    assert any(Path(name).name.startswith(".tmp-") for name in synced)
    assert str(path.parent) in synced
    for folder in (tmp_path / "spool", tmp_path / "spool" / "incoming", path.parent):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700  # patient data: ours only
    assert box.pending() == [path]
    assert [(e.state, e.name) for e in box.entries()] == [("pending", "1.2.3/4.5.6.dcm")]


def test_a_failed_write_leaves_nothing_and_temporary_files_are_not_pending(tmp_path):
    box = Outbox(tmp_path, pattern="*.dcm")

    def broken(tmp: Path) -> None:
        tmp.write_bytes(b"half")
        raise InputError("the label is empty")

    with pytest.raises(InputError, match="empty"):
        box.put_file("a.dcm", broken)
    assert list(tmp_path.iterdir()) == []
    (tmp_path / ".b.dcm.x1y2.tmp.dcm").write_bytes(b"being written")
    assert box.pending() == []
    for name in ("../x.dcm", "/etc/x.dcm", ".hidden.dcm", ""):
        with pytest.raises(ValueError):
            box.path_of(name)


def test_flush_sends_deletes_and_sets_refused_files_aside_with_the_reason(tmp_path):
    archive = Archive()
    box = Outbox(tmp_path / "incoming", archive, refused=tmp_path / "refused", pattern="*/*.dcm")
    good = box.put("s1/good.dcm", b"1")
    bad = box.put("s1/bad.dcm", b"2")
    other = box.put("s2/good2.dcm", b"3")
    flushed = box.flush()
    assert flushed.sent == [good, other] and list(flushed.refused) == [bad] and flushed.left == 0
    assert flushed.details == [3]  # one call for all: batch None
    assert archive.held == {"good.dcm": b"1", "good2.dcm": b"3"}
    kept = tmp_path / "refused" / "s1" / "bad.dcm"
    assert kept.read_bytes() == b"2"
    assert (tmp_path / "refused" / "s1" / f"bad.dcm{REASON_SUFFIX}").read_text() == "bad.dcm: not a DICOM file\n"
    assert not (tmp_path / "incoming" / "s1").exists() and not (tmp_path / "incoming" / "s2").exists()
    states = {(e.state, e.name, e.reason) for e in box.entries()}
    assert states == {
        ("refused", "s1/bad.dcm", "bad.dcm: not a DICOM file"),
        ("sent", "s1/good.dcm", ""),
        ("sent", "s2/good2.dcm", ""),
    }
    assert box.counts() == {"pending": 0, "refused": 1, "sent": 2}


def test_an_unreachable_archive_keeps_the_files_and_their_order_with_the_reason(tmp_path):
    archive = Archive()
    box = Outbox(tmp_path, archive, pattern="*.dcm", batch=1)
    first, second = box.put("1.dcm", b"a"), box.put("2.dcm", b"b")
    archive.down = True
    with pytest.raises(InputError, match="cannot reach"):
        box.flush()
    assert archive.calls == [["1.dcm"]]  # the first failure stops the flush: the order is kept
    assert box.pending() == [first, second]
    assert {e.name: e.reason for e in box.entries()} == {
        "1.dcm": "cannot reach the archive (connection refused)",
        "2.dcm": "cannot reach the archive (connection refused)",
    }
    assert box.last_error == "cannot reach the archive (connection refused)"
    archive.down = False
    assert box.flush().left == 0 and box.last_error is None
    assert archive.calls[1:] == [["1.dcm"], ["2.dcm"]]


def test_files_neither_sent_nor_refused_stay_pending(tmp_path):
    box = Outbox(tmp_path, lambda paths: Delivery(), pattern="*.dcm")
    path = box.put("1.dcm", b"a")
    assert box.flush().left == 1 and box.pending() == [path]
    assert box.entries()[0].reason == "the archive did not confirm it"


def test_a_file_is_not_sent_twice_by_two_flushes(tmp_path):
    entered, release = threading.Event(), threading.Event()
    calls: list[list[str]] = []

    def slow(paths: list[Path]) -> Delivery:
        calls.append([p.name for p in paths])
        entered.set()
        release.wait(5)
        return Delivery(sent=list(paths))

    box = Outbox(tmp_path, slow, pattern="*.dcm")
    path = box.put("1.dcm", b"a")
    first = threading.Thread(target=box.flush)
    first.start()
    assert entered.wait(5)
    answers = []
    second = threading.Thread(target=lambda: answers.append(box.flush([path])))
    second.start()
    time.sleep(0.1)
    assert second.is_alive()  # waits for the first flush's send of that file
    release.set()
    first.join(5)
    second.join(5)
    assert calls == [["1.dcm"]]
    assert answers[0].sent == [path]  # as the other flush left it


def test_retry_thread_backs_off_while_down_and_ends_when_empty(tmp_path, monkeypatch):
    archive = Archive()
    archive.down = True
    box = Outbox(tmp_path, archive, pattern="*.dcm", delays=(0.01, 0.05), thread_name="test-retry")
    box.put("1.dcm", b"a")
    box.start_retry(now=True)
    assert box.retrying
    assert wait_for(lambda: len(archive.calls) >= 3)
    assert box.pending()  # nothing lost while the archive is down
    archive.down = False
    assert wait_for(lambda: not box.pending() and not box.retrying)
    assert archive.held == {"1.dcm": b"a"}
    # a later file starts it again; a wake-up while it runs is a try at once
    box.put("2.dcm", b"b")
    box.start_retry()
    assert wait_for(lambda: not box.pending() and not box.retrying)


def test_retry_thread_survives_a_bug_in_the_send_function_and_stops(tmp_path):
    calls = []

    def buggy(paths: list[Path]) -> Delivery:
        calls.append(1)
        raise KeyError("oops")

    box = Outbox(tmp_path, buggy, pattern="*.dcm", delays=(0.01,))
    box.put("1.dcm", b"a")
    box.start_retry(now=True)
    assert wait_for(lambda: len(calls) >= 2)
    box.stop_retry()
    assert not box.retrying and box.pending()


def test_the_first_retry_waits_the_first_delay(tmp_path):
    archive = Archive()
    box = Outbox(tmp_path, archive, pattern="*.dcm", delays=(0.3,))
    box.put("1.dcm", b"a")
    box.start_retry()
    time.sleep(0.1)
    assert archive.calls == []
    assert wait_for(lambda: not box.pending())


def test_an_older_layout_of_reasons_is_migrated_on_opening(tmp_path):
    """The datastore's SEG outbox up to issue 15 kept ``refused/<file>.txt``; it is ``<file>.reason.txt`` now."""
    refused = tmp_path / "outbox" / "refused"
    refused.mkdir(parents=True)
    (refused / "20250101T120000000000_1.2.3.dcm").write_bytes(b"SEG")
    (refused / "20250101T120000000000_1.2.3.dcm.txt").write_text("refused: no answer\n")
    (refused / "notes.txt").write_text("someone's notes")  # no refused file of that name: left alone
    (tmp_path / "outbox" / "20250102T080000000000_1.2.4.dcm").write_bytes(b"SEG2")  # pending: unchanged
    box = Outbox(tmp_path / "outbox", pattern="*.dcm", legacy_reasons=(".txt",))
    assert [(e.name, e.reason) for e in box.refused()] == [
        ("20250101T120000000000_1.2.3.dcm", "refused: no answer"),
        ("notes.txt", ""),
    ]
    assert not (refused / "20250101T120000000000_1.2.3.dcm.txt").exists()
    assert (refused / "20250101T120000000000_1.2.3.dcm.reason.txt").is_file()
    assert (refused / "notes.txt").is_file()
    assert [p.name for p in box.pending()] == ["20250102T080000000000_1.2.4.dcm"]
    # opening again changes nothing more
    Outbox(tmp_path / "outbox", pattern="*.dcm", legacy_reasons=(".txt",))
    assert sorted(p.name for p in refused.iterdir()) == [
        "20250101T120000000000_1.2.3.dcm",
        "20250101T120000000000_1.2.3.dcm.reason.txt",
        "notes.txt",
    ]


def test_the_spool_layout_of_earlier_versions_is_read_as_it_is(tmp_path):
    """``SPOOL/incoming/<study>/<sop>.dcm`` and ``SPOOL/refused/<study>/<sop>.dcm.reason.txt`` are the layout."""
    (tmp_path / "incoming" / "1.2").mkdir(parents=True)
    (tmp_path / "incoming" / "1.2" / "3.dcm").write_bytes(b"x")
    (tmp_path / "refused" / "1.2").mkdir(parents=True)
    (tmp_path / "refused" / "1.2" / "4.dcm").write_bytes(b"y")
    (tmp_path / "refused" / "1.2" / "4.dcm.reason.txt").write_text("bad\n")
    box = Outbox(tmp_path / "incoming", refused=tmp_path / "refused", pattern="*/*.dcm")
    assert [(e.state, e.name, e.reason) for e in box.entries()] == [
        ("pending", "1.2/3.dcm", ""),
        ("refused", "1.2/4.dcm", "bad"),
    ]


def test_a_module_level_default_delay_list(tmp_path):
    assert outbox_module.RETRY_DELAYS_S == (2.0, 5.0, 10.0, 20.0, 30.0)
    with pytest.raises(ValueError):
        Outbox(tmp_path, delays=())
    with pytest.raises(ValueError):
        Outbox(tmp_path, batch=0)
    with pytest.raises(ValueError, match="no send function"):
        Outbox(tmp_path).flush()


def test_retry_with_the_callers_send_function_and_delays(tmp_path):
    """As the PACS listener uses it: the spool's outbox has no send function of its own."""
    archive = Archive()
    archive.down = True
    box = Outbox(tmp_path, pattern="*.dcm")
    box.put("1.dcm", b"a")
    box.start_retry(now=True, send=archive, delays=(0.01,))
    assert wait_for(lambda: len(archive.calls) >= 3)
    archive.down = False
    assert wait_for(lambda: not box.pending() and not box.retrying)

"""The MONAI Label datastore on a DICOMweb server (the embedded Orthanc or a site's PACS).

Images are the MR series of the server (QIDO-RS, ``search_filter``); labels are DICOM SEG
series in the same server. One rule decides which SEG is the label of an image series:
:func:`lgemri.seg.latest_final_seg` with ``allow_automatic=False`` — the most recent MANUAL SEG
referencing it (by ContentDate/ContentTime), never an automatic one. A SEG that references no
listed image series is ignored (and logged).

What this adds to MONAI Label 0.8.5's ``DICOMWebDatastore`` (whose contract it keeps, so the
server's ``output=dicom_seg`` path accepts it):

- **Fresh lists.** Series and SEG listings are cached for ``list_ttl`` seconds (default 30), not
  hours; a save invalidates them, and an unknown image id is looked up at once.
- **Exact geometry.** A series is fetched by WADO-RS into ``CACHE/images/<SeriesUID>/`` and
  converted with :mod:`lgemri.dicom` (the reader every other part uses) to
  ``CACHE/images/<SeriesUID>.nii.gz``. Non-MR series, single images, series without geometry
  and undecodable pixel data are refused with HTTP 422 and a message naming the problem.
- **Coded SEGs.** A final label is written with :func:`lgemri.seg.write_seg` (SNOMED CT codes,
  colours, MANUAL) and read back with :func:`lgemri.seg.read_seg`, which maps segments that a
  viewer wrote with generic codes back to classes by name or number.
- **No lost label.** A SEG is first written to ``CACHE/outbox/`` (atomically), then sent by
  STOW-RS; it leaves the outbox only once the server has it. While the server is unreachable
  the save still succeeds (the answer says ``stored: false``), a background thread retries
  with back-off, and the pending SEG already counts as the image's label. A SEG the server
  refuses moves to ``CACHE/outbox/refused/`` with the reason (``<file>.reason.txt``), never deleted.
  The outbox is :class:`cardiac_mi.outbox.Outbox` (the PACS spool's too): a SEG is fsynced before the
  save answers.
- **Clear errors.** Problems surface as :class:`DatastoreError` (an HTTP exception): 404 for
  an unknown series, 422 for bad input, 503 when the server cannot be reached.
- **A hung archive costs one time-out.** Every request to the server has time-outs
  (:class:`cardiac_mi.store.ArchiveSession`: 5 s to connect, ``$CARDIAC_MI_ARCHIVE_TIMEOUT`` (10 s) for
  an answer), and a heartbeat asks it every 2 s; once it has not answered, requests to it are refused
  at once (503) until a probe sees it answer, and then the outbox is flushed at once. No lock is held
  while the server is asked: one series being fetched, or a server that hangs, does not hold up
  listings, other series or :meth:`status` (``/info/``), which waits at most 1 s for fresh listings
  and otherwise answers from the last ones.
- **No path from a request.** Image and label ids must be series UIDs and tags match
  ``[A-Za-z0-9_-]{1,64}`` (:mod:`cardiac_mi.ids`) before they become part of a cache path or a
  request to the server; anything else is a 422 naming the argument.
- **This save's answer.** :meth:`OrthancDatastore.save_outcome` is what the last ``save_label`` of the
  calling thread did (stored, queued, or kept as a non-final tag), never an older save's answer.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pydicom
from fastapi import HTTPException
from monailabel.datastore.dicom import DICOMWebDatastore
from monailabel.datastore.local import LocalDatastore
from monailabel.interfaces.datastore import DefaultLabelTag
from pydicom.dataset import Dataset

from cardiac_mi import monailabel_compat as compat
from cardiac_mi.ids import tag_problem, uid_problem
from cardiac_mi.orthanc import describe_error
from cardiac_mi.outbox import RETRY_DELAYS_S, Delivery, Outbox
from cardiac_mi.store import (
    HEARTBEAT_S,
    ArchiveDown,
    DicomStore,
    DicomStoreError,
    StowResult,
    Summary,
    archive_gate,
    archive_timeout,
)
from lgemri.dicom import DicomSeries, read_dicom_series
from lgemri.errors import InputError
from lgemri.images import read_image
from lgemri.labels import as_label
from lgemri.seg import is_manual_seg, latest_final_seg, read_seg, seg_datetime, write_seg
from lgemri.volume import Volume, write_nifti

__all__ = ["OrthancDatastore", "DatastoreError", "seg_for_series"]

logger = logging.getLogger(__name__)

FINAL = DefaultLabelTag.FINAL.value
SAVE_TIMEOUT_S = 3.0  # a save's own STOW of its SEG (small); later tries from the outbox wait the full time-out
STATUS_WAIT_S = 1.0  # the longest status() waits for fresh listings before it answers from the last ones
_QIDO_FIELDS = [
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "Modality",
    "SeriesDescription",
    "PatientID",
    "StudyDate",
    "NumberOfSeriesRelatedInstances",
]


class DatastoreError(HTTPException):
    """A request the datastore cannot serve: an HTTP status and a message naming the problem."""

    def __init__(self, status: int, message: str):
        super().__init__(status_code=status, detail=message)

    def __str__(self) -> str:
        return str(self.detail)


def _uid(value: Any, name: str) -> str:
    """``value`` when it is a DICOM UID, else a 422 naming ``name`` (it becomes a path and a URL)."""
    problem = uid_problem(value, name)
    if problem:
        raise DatastoreError(422, problem)
    return value


def _tag(value: Any, name: str = "tag") -> str:
    problem = tag_problem(value, name)
    if problem:
        raise DatastoreError(422, problem)
    return value


def _down(exc: BaseException) -> bool:
    """Whether the archive's gate refused the request without asking (it did not answer a moment ago)."""
    return isinstance(exc, ArchiveDown) or bool(getattr(exc, "down", False))


def seg_for_series(series_dir: str | os.PathLike, label: str | os.PathLike, label_info: Any = None, **_: Any) -> str:
    """A model's label NIfTI as a coded AUTOMATIC DICOM SEG of the series in ``series_dir``.

    Has the signature of MONAI Label's ``nifti_to_dicom_seg`` (``label_info`` is not needed: the
    segments are always the four EMIDEC classes with their codes), so the server's
    ``output=dicom_seg`` answer is this SEG. Returns the path of a temporary file.
    """
    series = read_dicom_series(series_dir)
    volume = read_image(label)
    fd, out = tempfile.mkstemp(prefix="cardiac_mi_seg_", suffix=".dcm")
    os.close(fd)
    write_seg(Volume(as_label(volume.array, label), volume.affine), series, out, manual=False)
    return out


class OrthancDatastore(DICOMWebDatastore):
    """MONAI Label datastore: MR series of a DICOMweb server, labels as DICOM SEG there.

    Args:
        url: DICOMweb root, e.g. ``http://127.0.0.1:8042/dicom-web``.
        user, password: HTTP basic-auth credentials, or None.
        cache_dir: Folder for downloaded series, label NIfTIs and the outbox.
        search_filter: QIDO-RS filter of the image series (default ``{"Modality": "MR"}``).
        list_ttl: Seconds a series or SEG listing is reused before it is asked again.
        timeout: Seconds to wait for an answer of the server (default ``$CARDIAC_MI_ARCHIVE_TIMEOUT``, 10).
        heartbeat: Check that the server answers every so many seconds (a hung server is then found
            before a request waits for it; default 2); None checks only after a request got no answer.
    """

    def __init__(
        self,
        url: str,
        user: str | None = None,
        password: str | None = None,
        *,
        cache_dir: str | os.PathLike,
        search_filter: dict[str, Any] | None = None,
        list_ttl: float = 30.0,
        timeout: float | None = None,
        heartbeat: float | None = HEARTBEAT_S,
    ):
        self.url = url.rstrip("/")
        timeout = archive_timeout() if timeout is None else float(timeout)
        self._store = DicomStore(self.url, user, password, timeout=timeout)
        # a save's own attempt waits less: the request waits for it, and the outbox retries anyway
        self._quick_store = DicomStore(self.url, user, password, timeout=min(timeout, SAVE_TIMEOUT_S))
        self._timeout = timeout
        self._search_filter = dict(search_filter or {"Modality": "MR"})
        self._fetch_by_frame = False
        self._convert_to_nifti = True
        self.list_ttl = float(list_ttl)
        self.cache_dir = Path(cache_dir)
        self.outbox = self.cache_dir / "outbox"
        self.outbox.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.cache_dir.chmod(0o700)  # patient images, labels and SEGs: for this server's user only
        self.outbox.chmod(0o700)
        # one SEG per STOW, in the order saved; tried again with back-off, and at once when the server answers
        self.seg_outbox = Outbox(
            self.outbox,
            self._sender(self._store),
            refused=self.outbox / "refused",
            pattern="*.dcm",
            batch=1,
            delays=RETRY_DELAYS_S,
            name=f"SEG outbox of {self.url}",
            thread_name="seg-outbox",
            legacy_reasons=(".txt",),  # up to issue 15: refused/<file>.txt
        )
        self._lock = threading.RLock()  # the listings and the local datastore; never held while the server is asked
        self._image_locks: dict[str, threading.RLock] = {}  # one fetch or conversion per series at a time
        self._refreshing = False
        self._refresher: threading.Thread | None = None
        self._listed = {"series": False, "segs": False}  # a listing succeeded once (refresh() keeps what it got)
        self._series: dict[str, Summary] = {}
        self._series_time = -float("inf")
        self._seg_meta: dict[str, Dataset] = {}  # SEG SeriesInstanceUID -> header (immutable)
        self._segs_time = -float("inf")
        self.last_saves: dict[str, dict[str, Any]] = {}  # image id -> what the last save did
        self._this_save = threading.local()  # what the calling thread's last save_label did
        self.fetch_timings: dict[str, dict[str, float]] = {}  # image NIfTI -> seconds to fetch, convert
        self.on_final_label: list[Callable[[str, dict[str, Any]], None]] = []
        compat.init_local_cache(self, str(self.cache_dir))
        self.gate = archive_gate(self.url)
        self.gate.add_listener(self._archive_back)
        if heartbeat:
            self.gate.watch(heartbeat)
        if self._pending():
            self._start_retry()

    # ------------------------------------------------------------------------------ identity

    def name(self) -> str:
        return self.url

    def description(self) -> str:
        return f"LGE MR series and DICOM SEG labels of {self.url}"

    def _error(self, exc: BaseException, doing: str) -> DatastoreError:
        if isinstance(exc, DatastoreError):
            return exc
        code = exc.status if isinstance(exc, DicomStoreError) else None
        if code in (401, 403):
            return DatastoreError(503, f"{doing}: DICOMweb server {self.url} refused our credentials (HTTP {code})")
        if code is not None:
            return DatastoreError(502, f"{doing}: DICOMweb server {self.url} answered HTTP {code}")
        if isinstance(exc, InputError):
            return DatastoreError(503, f"{doing}: {exc}")
        return DatastoreError(503, f"{doing}: cannot reach DICOMweb server {self.url} ({describe_error(exc)})")

    # ------------------------------------------------------------------------------ listings

    def refresh(self) -> None:
        """Forget the listings: the next call asks the server again."""
        with self._lock:
            self._series_time = -float("inf")
            self._segs_time = -float("inf")

    def _listing(self, force: bool = False, cached_ok: bool = False) -> dict[str, Summary]:
        """The image series, listed at most every ``list_ttl`` s; the last list while the server is down.

        ``cached_ok``: a stale list is returned at once and refreshed in the background (the first
        listing is still waited for)."""
        with self._lock:
            listed = self._listed["series"]
            if not force and time.monotonic() - self._series_time < self.list_ttl:
                return self._series
            if cached_ok and listed and not force:
                self._refresh_in_background()
                return self._series
        try:
            series = self._store.search_series(self._search_filter, _QIDO_FIELDS)
        except Exception as exc:  # the server is the problem
            with self._lock:
                if self._listed["series"]:
                    log = logger.debug if _down(exc) else logger.warning
                    log(
                        "listing %s failed (%s); using the list from %.0f s ago",
                        self.url,
                        describe_error(exc),
                        time.monotonic() - self._series_time,
                    )
                    return self._series
            raise self._error(exc, "listing image series") from None
        with self._lock:
            self._series = {s.series_uid: s for s in series if s.series_uid}
            self._series_time = time.monotonic()
            self._listed["series"] = True
            return self._series

    def _refresh_in_background(self) -> threading.Thread:
        """List series and SEGs again in a thread (one at a time), for callers that must not wait long."""
        with self._lock:
            if self._refreshing and self._refresher is not None:
                return self._refresher
            self._refreshing = True

        def run() -> None:
            try:
                self._listing(force=True)
                self._seg_headers(force=True)
            except Exception as exc:  # noqa: BLE001 - logged; the next call tries again
                logger.warning("refreshing the listings of %s failed: %s", self.url, exc)
            finally:
                with self._lock:
                    self._refreshing = False

        with self._lock:
            self._refresher = threading.Thread(target=run, name="datastore-refresh", daemon=True)
            self._refresher.start()
            return self._refresher

    def list_images(self) -> list[str]:
        return list(self._listing())

    def _series_ref(self, image_id: str) -> Summary:
        """The listed series ``image_id``; asks the server again before saying it is unknown."""
        ref = self._listing().get(image_id) or self._listing(force=True).get(image_id)
        if ref is not None:
            return ref
        try:
            found = self._store.search_series({"SeriesInstanceUID": image_id}, _QIDO_FIELDS)
        except Exception as exc:
            raise self._error(exc, f"looking up series {image_id}") from None
        if not found:
            raise DatastoreError(404, f"series {image_id} is not in {self.url}")
        other = found[0]
        wanted = ", ".join(f"{k}={v}" for k, v in self._search_filter.items())
        raise DatastoreError(
            422,
            f"series {image_id} is a {other.modality or 'non-image'} series ({other.description or 'no description'}), "
            f"not an image series this server segments ({wanted})",
        )

    def _seg_headers(self, force: bool = False, cached_ok: bool = False) -> list[Dataset]:
        """Headers of every SEG on the server plus the pending ones in the outbox (``cached_ok``: see _listing)."""
        with self._lock:
            stale = force or time.monotonic() - self._segs_time >= self.list_ttl
            if stale and cached_ok and not force and self._listed["segs"]:
                self._refresh_in_background()
                stale = False
            known = dict(self._seg_meta)
        if stale:
            try:
                known = self._list_segs(known)
            except Exception as exc:  # the outbox still counts; the server's SEGs come back with it
                log = logger.debug if _down(exc) else logger.warning
                log("listing SEGs of %s failed (%s); using the last list and the outbox", self.url, describe_error(exc))
            else:
                with self._lock:
                    self._seg_meta = known
                    self._segs_time = time.monotonic()
                    self._listed["segs"] = True
        headers = list(known.values())
        pending_uids = {str(h.SeriesInstanceUID) for h in headers}
        for path in self._pending():
            try:
                header = pydicom.dcmread(path, stop_before_pixels=True)
            except Exception as exc:
                logger.error("outbox file %s is unreadable (%s)", path, exc)
                continue
            if str(header.SeriesInstanceUID) not in pending_uids:
                header.filename = str(path)
                headers.append(header)
        return headers

    def _list_segs(self, known: dict[str, Dataset]) -> dict[str, Dataset]:
        """The SEG series of the server by UID; headers in ``known`` are reused, new ones are read.

        Raises whatever the listing raised, or a connection error met while reading a header (the
        last complete list then stays in use, rather than one with labels missing)."""
        listed = {}
        for ref in self._store.search_series({"Modality": "SEG"}, _QIDO_FIELDS):
            if ref.series_uid in known:
                listed[ref.series_uid] = known[ref.series_uid]
                continue
            try:
                meta = self._store.retrieve_series_metadata(ref.study_uid, ref.series_uid)
            except DicomStoreError as exc:
                if not exc.reached:
                    raise
                logger.warning("SEG series %s: cannot read its metadata (%s); ignored", ref.series_uid, exc)
                continue
            except Exception as exc:
                logger.warning(
                    "SEG series %s: cannot read its metadata (%s); ignored", ref.series_uid, describe_error(exc)
                )
                continue
            if meta:
                header = Dataset.from_json(meta[0], bulk_data_uri_handler=lambda *_: None)
                header.StudyInstanceUID = header.get("StudyInstanceUID", ref.study_uid)
                listed[ref.series_uid] = header
        return listed

    def final_seg(self, image_id: str) -> Dataset | None:
        """The header of the SEG that is ``image_id``'s label (see the module docstring), or None."""
        _uid(image_id, "image")
        return latest_final_seg(self._seg_headers(), series_uid=image_id, allow_automatic=False)

    def _labels(self, cached_ok: bool = False) -> dict[str, Dataset]:
        images = set(self._listing(cached_ok=cached_ok))
        by_image: dict[str, list[Dataset]] = {}
        for header in self._seg_headers(cached_ok=cached_ok):
            refs = {str(r.get("SeriesInstanceUID", "")) for r in header.get("ReferencedSeriesSequence", [])}
            known = refs & images
            if not known:
                logger.debug(
                    "SEG %s references no listed image series (%s); ignored",
                    header.get("SeriesInstanceUID"),
                    ", ".join(sorted(refs)) or "none",
                )
            for uid in known:
                by_image.setdefault(uid, []).append(header)
        chosen = {}
        for uid, headers in by_image.items():
            seg = latest_final_seg(headers, series_uid=uid, allow_automatic=False)
            if seg is not None:
                chosen[uid] = seg
        return chosen

    def get_labeled_images(self, label_tag: str | None = None, labels: list[str] | None = None) -> list[str]:
        chosen = self._labels()
        return [uid for uid in self.list_images() if uid in chosen]

    def get_unlabeled_images(self, label_tag: str | None = None, labels: list[str] | None = None) -> list[str]:
        chosen = self._labels()
        return [uid for uid in self.list_images() if uid not in chosen]

    # ------------------------------------------------------------------------------ images

    def _series_dir(self, image_id: str) -> Path:
        return Path(self._datastore.image_path()) / _uid(image_id, "image")

    def _read_series(self, image_id: str) -> DicomSeries:
        try:
            series = read_dicom_series(self._series_dir(image_id))
        except InputError as exc:
            raise DatastoreError(422, f"series {image_id}: {exc}") from None
        if series.volume.shape[2] < 2:
            raise DatastoreError(
                422,
                f"series {image_id} holds a single image; segmentation needs a short-axis stack of 2 or more slices",
            )
        return series

    def _image_lock(self, image_id: str) -> threading.RLock:
        with self._lock:
            return self._image_locks.setdefault(image_id, threading.RLock())

    def _download(self, ref: Summary) -> None:
        folder = self._series_dir(ref.series_uid)
        if folder.is_dir() and any(folder.iterdir()):
            return
        tick = time.perf_counter()
        try:
            instances = self._store.retrieve_series(ref.study_uid, ref.series_uid)
        except Exception as exc:
            raise self._error(exc, f"fetching series {ref.series_uid}") from None
        if not instances:
            raise DatastoreError(422, f"series {ref.series_uid} has no instances on {self.url}")
        tmp = Path(tempfile.mkdtemp(prefix=f".{ref.series_uid}.", dir=folder.parent))
        try:
            for number, ds in enumerate(instances):
                ds.save_as(tmp / f"{number:05d}.dcm", write_like_original=False)
            shutil.rmtree(folder, ignore_errors=True)
            os.replace(tmp, folder)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        logger.info(
            "fetched series %s (%d instances) in %.2f s", ref.series_uid, len(instances), time.perf_counter() - tick
        )

    def get_image_uri(self, image_id: str) -> str:
        """The series as NIfTI (fetched and converted on first use); 404/422/503 otherwise."""
        _uid(image_id, "image")
        nifti = Path(self._datastore.image_path()) / f"{image_id}.nii.gz"
        if nifti.is_file() and image_id in self._datastore.objects:
            return str(nifti)
        with self._image_lock(image_id):
            if nifti.is_file() and image_id in self._datastore.objects:
                return str(nifti)  # fetched by another thread meanwhile
            tick = time.perf_counter()
            ref = self._series_ref(image_id)
            self._download(ref)
            fetched = time.perf_counter()
            series = self._read_series(image_id)
            with tempfile.TemporaryDirectory() as tmp:
                converted = Path(tmp) / f"{image_id}.nii.gz"
                write_nifti(series.volume, converted)
                with self._lock:
                    LocalDatastore.add_image(self, image_id, str(converted), ref.info())
            done = time.perf_counter()
            self.fetch_timings[str(nifti)] = {"fetch": round(fetched - tick, 4), "convert": round(done - fetched, 4)}
            logger.info("series %s -> %s in %.2f s", image_id, nifti.name, done - tick)
            return str(nifti)

    def get_image_info(self, image_id: str) -> dict[str, Any]:
        _uid(image_id, "image")
        info = LocalDatastore.get_image_info(self, image_id)
        if not info:
            ref = self._listing().get(image_id)
            info = ref.info() if ref else {}
        return info

    def update_image_info(self, image_id: str, info: dict[str, Any]) -> None:
        _uid(image_id, "image")
        if image_id not in self._datastore.objects:
            self.get_image_uri(image_id)
        LocalDatastore.update_image_info(self, image_id, info)

    def series_folder(self, image_id: str) -> Path:
        """The folder of the series' DICOM files (fetched on first use); 404/422/503 otherwise."""
        self.get_image_uri(image_id)
        return self._series_dir(image_id)

    def store_instances(self, paths: list[str | os.PathLike]) -> StowResult:
        """STOW-RS DICOM files (e.g. a report) to the archive; each is stored, skipped or refused.

        Raises:
            InputError: The archive is unreachable or refused the request."""
        return self._store.stow(paths)

    def add_image(self, image_id: str, image_filename: str, image_info: dict[str, Any]) -> str:
        raise DatastoreError(
            405, f"images are added to {self.url} as DICOM (cardiac-mi upload, or STOW-RS), not through this datastore"
        )

    def remove_image(self, image_id: str) -> None:
        raise DatastoreError(405, f"images are removed in {self.url} itself, not through this datastore")

    # ------------------------------------------------------------------------------ labels

    def _label_nifti(self, image_id: str) -> Path:
        return Path(self._datastore.label_path(FINAL)) / f"{image_id}.nii.gz"

    def get_label_uri(self, label_id: str, label_tag: str, image_id: str = "") -> str:
        """The final label of image ``label_id`` as NIfTI on the image grid, from its chosen SEG."""
        _uid(label_id, "label")
        _tag(label_tag)
        if image_id:
            _uid(image_id, "image")
        if label_tag != FINAL:
            return LocalDatastore.get_label_uri(self, label_id, label_tag)
        image_id = image_id or label_id
        seg = self.final_seg(image_id)
        if seg is None:
            return ""
        seg_uid = str(seg.SeriesInstanceUID)
        with self._image_lock(image_id):
            label = LocalDatastore.get_label_uri(self, image_id, FINAL)
            info = LocalDatastore.get_label_info(self, image_id, FINAL) if label else {}
            if label and info.get("seg_series_uid") == seg_uid and Path(label).is_file():
                return label
            self.get_image_uri(image_id)
            series = self._read_series(image_id)
            with tempfile.TemporaryDirectory() as tmp:
                path = seg.get("filename") or self._fetch_seg(seg, Path(tmp))
                try:
                    array = read_seg(path, series)
                except InputError as exc:
                    raise DatastoreError(422, f"SEG {seg_uid} of series {image_id}: {exc}") from None
                converted = Path(tmp) / f"{image_id}.nii.gz"
                write_nifti(Volume(array, series.volume.affine), converted)
                with self._lock:
                    LocalDatastore.save_label(self, image_id, str(converted), FINAL, self._seg_info(seg))
            return str(self._label_nifti(image_id))

    def get_label_info(self, label_id: str, label_tag: str) -> dict[str, Any]:
        """The label's info; for a final label, ``pending_upload`` says whether its SEG still waits in the
        outbox now (it is True when saved, until the archive takes the SEG)."""
        info = LocalDatastore.get_label_info(self, _uid(label_id, "label"), _tag(label_tag))
        if label_tag == FINAL and info.get("pending_upload"):
            info = {**info, "pending_upload": self._in_outbox(label_id, str(info.get("seg_series_uid", "")))}
        return info

    def _in_outbox(self, image_id: str, seg_series_uid: str) -> bool:
        for path in self._pending():
            if not path.name.endswith(f"_{image_id}.dcm"):
                continue
            try:
                header = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SeriesInstanceUID"])
            except Exception:  # noqa: BLE001 - being written or damaged: the retry loop deals with it
                continue
            if str(header.get("SeriesInstanceUID", "")) == seg_series_uid:
                return True
        return False

    def update_label_info(self, label_id: str, label_tag: str, info: dict[str, Any]) -> None:
        return LocalDatastore.update_label_info(self, _uid(label_id, "label"), _tag(label_tag), info)

    def _fetch_seg(self, seg: Dataset, folder: Path) -> Path:
        try:
            instances = self._store.retrieve_series(str(seg.StudyInstanceUID), str(seg.SeriesInstanceUID))
        except Exception as exc:
            raise self._error(exc, f"fetching SEG {seg.SeriesInstanceUID}") from None
        if not instances:
            raise DatastoreError(502, f"SEG {seg.SeriesInstanceUID} has no instance on {self.url}")
        path = folder / "seg.dcm"
        instances[0].save_as(path, write_like_original=False)
        return path

    @staticmethod
    def _seg_info(seg: Dataset) -> dict[str, Any]:
        when = seg_datetime(seg)
        return {
            "seg_series_uid": str(seg.SeriesInstanceUID),
            "seg_sop_instance_uid": str(seg.get("SOPInstanceUID", "")),
            "seg_datetime": when.isoformat() if when else None,
            "manual": is_manual_seg(seg),
            "creator": str(seg.get("ContentCreatorName", "") or ""),
            "pending_upload": bool(seg.get("filename")),
        }

    def datalist(self, full_path: bool = True) -> list[dict[str, Any]]:
        """``{"image", "label"}`` NIfTI pairs of every image with a final label (fetched as needed)."""
        items = []
        for image_id in self.get_labeled_images():
            try:
                image = self.get_image_uri(image_id)
                label = self.get_label_uri(image_id, FINAL)
            except DatastoreError as exc:
                logger.warning("training data: %s skipped (%s)", image_id, exc)
                continue
            if label:
                items.append({"image": image, "label": label, "image_id": image_id})
        return items

    def _read_label(self, image_id: str, label_filename: str, series: DicomSeries) -> Volume:
        path = Path(label_filename)
        suffix = "".join(path.suffixes).lower()
        try:
            if suffix.endswith(".bin"):
                from monailabel.datastore.utils.convert import binary_to_image

                path = Path(binary_to_image(self.get_image_uri(image_id), str(path)))
            elif suffix.endswith(".dcm") or (not suffix.endswith((".nii", ".nii.gz")) and pydicom.misc.is_dicom(path)):
                return Volume(read_seg(path, series), series.volume.affine)
            volume = read_image(path)
        except InputError as exc:
            raise DatastoreError(422, f"label for series {image_id}: {exc}") from None
        if volume.shape != series.volume.shape:
            raise DatastoreError(
                422, f"label for series {image_id} has shape {volume.shape}; the series is {series.volume.shape}"
            )
        try:
            array = as_label(volume.array, path.name)
        except InputError as exc:
            raise DatastoreError(422, f"label for series {image_id}: {exc}") from None
        return Volume(array, volume.affine)

    def save_label(
        self, image_id: str, label_filename: str, label_tag: str, label_info: dict[str, Any], label_id: str = ""
    ) -> str:
        """Save a label; a ``final`` one becomes a MANUAL SEG in the server (queued if it is down).

        What this save did is :meth:`save_outcome` afterwards (in the same thread)."""
        self._this_save.result = None  # an error below leaves no answer, rather than an older save's
        _uid(image_id, "image")
        label_tag = _tag(label_tag or FINAL)
        label_info = dict(label_info or {})
        self.get_image_uri(image_id)
        series = self._read_series(image_id)
        label = self._read_label(image_id, label_filename, series)
        if label_tag != FINAL:
            with tempfile.TemporaryDirectory() as tmp:
                converted = Path(tmp) / f"{image_id}.nii.gz"
                write_nifti(label, converted)
                with self._lock:
                    saved = LocalDatastore.save_label(self, image_id, str(converted), label_tag, label_info)
            self._record_save(
                image_id,
                {
                    "tag": label_tag,
                    "stored": False,
                    "seg_series_uid": None,
                    "pending": None,
                    "message": f"kept as a {label_tag!r} label in this server's cache, not sent to {self.url} "
                    "(only 'final' labels become SEGs there)",
                },
            )
            return saved
        if not label.array.any():
            raise DatastoreError(
                422, f"label for series {image_id} is empty: nothing to save (draw or run a model first)"
            )
        user = str(label_info.get("user") or "").strip()

        def write(path: Path) -> None:
            write_seg(
                label,
                series,
                path,
                manual=True,
                content_creator=user or None,
                series_description="LGE segmentation (corrected)",
            )

        try:
            pending = self.seg_outbox.put_file(f"{_dt.datetime.now():%Y%m%dT%H%M%S%f}_{image_id}.dcm", write)
        except InputError as exc:
            raise DatastoreError(422, f"label for series {image_id}: {exc}") from None
        header = pydicom.dcmread(pending, stop_before_pixels=True)
        header.filename = str(pending)
        with tempfile.TemporaryDirectory() as tmp:
            converted = Path(tmp) / f"{image_id}.nii.gz"
            write_nifti(Volume(label.array, series.volume.affine), converted)
            with self._lock:
                LocalDatastore.save_label(
                    self, image_id, str(converted), FINAL, {**label_info, **self._seg_info(header)}
                )
        stored, problem = self._send(pending, quick=True)
        if not stored:
            self._start_retry()
        result = {
            "tag": FINAL,
            "seg_series_uid": str(header.SeriesInstanceUID),
            "stored": stored,
            "pending": None if stored else str(pending),
            "message": "stored in " + self.url
            if stored
            else f"kept locally and retried until {self.url} takes it ({problem})",
        }
        self._record_save(image_id, result)
        with self._lock:
            self._segs_time = -float("inf")
        for callback in list(self.on_final_label):
            try:
                callback(image_id, result)
            except Exception:  # a listener must not lose the save
                logger.exception("final-label listener failed")
        return image_id

    def _record_save(self, image_id: str, result: dict[str, Any]) -> None:
        self.last_saves[image_id] = result
        self._this_save.result = (image_id, result)

    def save_outcome(self, image_id: str) -> dict[str, Any]:
        """What the calling thread's last ``save_label`` of ``image_id`` did; {} when it did not finish."""
        found = getattr(self._this_save, "result", None)
        return dict(found[1]) if found and found[0] == image_id else {}

    def remove_label(self, label_id: str, label_tag: str) -> None:
        _uid(label_id, "label")
        _tag(label_tag)
        if label_tag == FINAL:
            raise DatastoreError(
                405, f"final labels are DICOM SEGs in {self.url}; a newer correction replaces one, nothing is deleted"
            )
        LocalDatastore.remove_label(self, label_id, label_tag)

    # ------------------------------------------------------------------------------ outbox

    def _pending(self) -> list[Path]:
        return self.seg_outbox.pending()

    def _sender(self, store: DicomStore) -> Callable[[list[Path]], Delivery]:
        """The outbox's send function: STOW-RS to ``store``; a file it neither stores nor refuses is refused
        as "no answer"; the SEG listing is asked afresh after each try."""

        def send(paths: list[Path]) -> Delivery:
            result = store.stow(paths)
            with self._lock:
                self._segs_time = -float("inf")
            sent = result.stored + result.skipped
            reason = "; ".join(str(r) for r in result.refused) or "no answer"
            for path in sent:
                logger.info("SEG %s stored in %s", path.name, self.url)
            return Delivery(sent=sent, refused={p: reason for p in paths if p not in sent}, detail=result)

        return send

    def _send(self, path: Path, quick: bool = False) -> tuple[bool, str]:
        """STOW one outbox file; True when the server has it (the file then leaves the outbox).

        ``quick``: wait ``SAVE_TIMEOUT_S`` at most for each answer (a save's own attempt)."""
        try:
            flushed = self.seg_outbox.flush([path], send=self._sender(self._quick_store) if quick else None)
        except InputError as exc:
            logger.warning("%s not sent: %s", path.name, exc)
            return False, str(exc)
        if path in flushed.refused:
            return False, f"refused: {flushed.refused[path]}"
        return not path.exists(), ""  # sent (by this call, or by another thread meanwhile)

    def flush(self) -> int:
        """Send what waits in the outbox now; returns how many are still pending."""
        try:
            self.seg_outbox.flush()
        except InputError as exc:  # the server is down: the order is kept, the retry thread tries later
            logger.debug("outbox not sent: %s", exc)
        with self._lock:
            self._segs_time = -float("inf")
        return len(self._pending())

    def _archive_back(self) -> None:
        """The server answers again (its gate says so): send what waits, and list afresh."""
        self.refresh()
        if self._pending():
            self._start_retry()

    def _start_retry(self) -> None:
        self.seg_outbox.start_retry()

    # ------------------------------------------------------------------------------ status

    def status(self) -> dict[str, Any]:
        """Counts for ``/info/`` and ``/datastore/?output=stats``; from the last listings (refreshed in the
        background, waited for at most ``STATUS_WAIT_S``), so it answers at once while the server hangs or is
        down (``archive`` says which)."""
        with self._lock:
            now = time.monotonic()
            stale = now - self._series_time >= self.list_ttl or now - self._segs_time >= self.list_ttl
            listed = self._listed["series"] and self._listed["segs"]
        if stale and listed:
            self._refresh_in_background().join(STATUS_WAIT_S)
        try:
            images = self._listing(cached_ok=True)
            chosen = self._labels(cached_ok=True)
        except DatastoreError as exc:  # never listed, and the server does not answer: say so, with no counts
            logger.warning("datastore status without listings: %s", exc)
            images, chosen = {}, {}
        labelled = [uid for uid in images if uid in chosen]
        return {
            "total": len(images),
            "completed": len(labelled),
            "label_tags": {FINAL: len(labelled)},
            "pending_uploads": len(self._pending()),
            "server": self.url,
            "archive": self.gate.describe(),
        }

    def json(self) -> dict[str, Any]:
        labels = self._labels()
        objects = {}
        for uid, ref in self._listing().items():
            entry: dict[str, Any] = {
                "image": {"info": {**ref.info(), **LocalDatastore.get_image_info(self, uid)}},
                "labels": {},
            }
            if uid in labels:
                entry["labels"][FINAL] = {"info": self._seg_info(labels[uid])}
            objects[uid] = entry
        return {"name": self.name(), "description": self.description(), "objects": objects}

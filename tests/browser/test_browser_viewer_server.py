"""The viewer's server side without a browser: voxel order of the panel's NRRD, the STOW body, the save's checks."""

from __future__ import annotations

import io

import numpy as np
import pytest

pytest.importorskip("monailabel")
nrrd = pytest.importorskip("nrrd")

import pydicom  # noqa: E402
from fastapi import HTTPException  # noqa: E402

from cardiac_mi.serve import SAMPLE_DICOM  # noqa: E402
from cardiac_mi.viewer.labels import _drop_unused_segments, save_viewer_seg, split_multipart  # noqa: E402
from cardiac_mi.viewer.panel import viewer_order, write_viewer_nrrd  # noqa: E402
from lgemri.dicom import read_dicom_series  # noqa: E402
from lgemri.errors import InputError  # noqa: E402
from lgemri.seg import write_seg  # noqa: E402
from lgemri.volume import Volume  # noqa: E402


def _cornerstone_order(series) -> np.ndarray:
    """The k of each slice in the order Cornerstone3D stacks them: increasing position along row x column."""
    first = series.datasets[0]
    iop = np.array([float(v) for v in first.ImageOrientationPatient])
    normal = np.cross(iop[:3], iop[3:])
    positions = [np.array([float(v) for v in ds.ImagePositionPatient]) @ normal for ds in series.datasets]
    return np.argsort(positions)


@pytest.mark.parametrize("case", sorted(p.name for p in SAMPLE_DICOM.iterdir() if p.is_dir()))
def test_viewer_order_is_cornerstones_slice_order(case):
    series = read_dicom_series(SAMPLE_DICOM / case)
    shape = series.volume.shape
    marks = np.broadcast_to(np.arange(shape[2], dtype=np.uint8), shape)
    array, affine = viewer_order(Volume(np.ascontiguousarray(marks), series.volume.affine))
    assert list(array[0, 0, :]) == list(_cornerstone_order(series))
    # the reordered affine still maps each voxel where the series' does
    k = int(array[0, 0, 0])
    assert np.allclose(affine @ [3, 5, 0, 1], series.volume.affine @ [3, 5, k, 1])


def test_viewer_order_keeps_a_stack_already_along_the_normal():
    volume = Volume(np.arange(24, dtype=np.uint8).reshape(2, 3, 4), np.diag([1.5, 1.5, 8.0, 1.0]))
    array, affine = viewer_order(volume)
    assert np.array_equal(array, volume.array) and np.array_equal(affine, volume.affine)


def test_nrrd_holds_columns_fastest_then_rows_then_slices(tmp_path):
    series = read_dicom_series(SAMPLE_DICOM / "Case_P001")
    label = np.zeros(series.volume.shape, dtype=np.uint8)
    label[10, 20, 2] = 3  # column 10, row 20 of slice k=2
    path = write_viewer_nrrd(Volume(label, series.volume.affine), tmp_path / "label.nrrd")
    data, header = nrrd.read(str(path), index_order="F")
    assert header["encoding"] == "raw" and header["type"] in ("uint8", "unsigned char")
    raw = path.read_bytes()[-label.size :]
    viewer_k = int(np.nonzero(_cornerstone_order(series) == 2)[0][0])
    rows, columns = label.shape[1], label.shape[0]
    assert raw.index(3) == viewer_k * rows * columns + 20 * columns + 10
    # the pixel is where the DICOM image of slice k=2 has its (row 20, column 10)
    origin = np.asarray(header["space origin"]) + np.asarray(header["space directions"]).T @ [10, 20, viewer_k]
    ds = series.datasets[2]
    ipp, iop = np.array(ds.ImagePositionPatient, float), np.array(ds.ImageOrientationPatient, float)
    spacing = np.array(ds.PixelSpacing, float)  # row spacing, column spacing
    expected = ipp + iop[:3] * spacing[1] * 10 + iop[3:] * spacing[0] * 20
    assert np.allclose(origin, expected, atol=1e-3)


def test_nrrd_refuses_values_beyond_8_bits(tmp_path):
    with pytest.raises(InputError, match="8-bit"):
        write_viewer_nrrd(Volume(np.full((2, 2, 2), 300, dtype=np.int16), np.eye(4)), tmp_path / "x.nrrd")


def _stow_body(*files: bytes, boundary: str = "b0und4ry") -> tuple[str, bytes]:
    """A STOW-RS body as OHIF's DICOMweb client makes it."""
    body = b"".join(
        b"--" + boundary.encode() + b"\r\nContent-Type: application/dicom\r\n\r\n" + f + b"\r\n" for f in files
    )
    return (
        f'multipart/related; type="application/dicom"; boundary="{boundary}"',
        body + b"--" + boundary.encode() + b"--",
    )


def test_split_multipart_returns_the_files_byte_for_byte():
    one, two = b"\x00\r\n--not-a-boundary\r\n\xff" * 50, b"DICM" * 10
    content_type, body = _stow_body(one, two)
    assert split_multipart(content_type, body) == [one, two]
    assert split_multipart("application/dicom", one) == [one]


@pytest.mark.parametrize(
    "content_type, body, problem",
    [
        ("multipart/related", b"--x\r\n\r\nA\r\n--x--", "boundary"),
        ("multipart/related; boundary=x", b"--x\r\n\r\nA\r\n", "closing boundary"),
        ("multipart/related; boundary=x", b"--x\r\nno separator\r\n--x--", "separator"),
        ("text/plain", b"hello", "expected multipart/related"),
    ],
)
def test_split_multipart_names_the_problem(content_type, body, problem):
    with pytest.raises(InputError, match=problem):
        split_multipart(content_type, body)


@pytest.fixture(scope="module")
def p001_seg(tmp_path_factory) -> bytes:
    """A SEG of Case_P001 with cavity and myocardium only (infarct and no-reflow segments have no frames)."""
    series = read_dicom_series(SAMPLE_DICOM / "Case_P001")
    label = np.zeros(series.volume.shape, dtype=np.uint8)
    label[90:110, 90:110, 3] = 1
    label[85:90, 90:110, 3] = 2
    path = write_seg(label, series, tmp_path_factory.mktemp("seg") / "seg.dcm", manual=True)
    return path.read_bytes()


def test_segments_without_frames_are_dropped(p001_seg):
    ds = pydicom.dcmread(io.BytesIO(p001_seg))
    assert len(ds.SegmentSequence) == 4
    assert _drop_unused_segments(ds) == ["lv_cavity", "myocardium"]
    assert [int(item.SegmentNumber) for item in ds.SegmentSequence] == [1, 2]


def test_save_refuses_what_is_not_one_seg_of_one_series(p001_seg):
    image = (next((SAMPLE_DICOM / "Case_P001").rglob("*.dcm"))).read_bytes()
    with pytest.raises(HTTPException) as error:
        save_viewer_seg(*_stow_body(image))
    assert error.value.status_code == 400 and "Segmentation" in error.value.detail
    with pytest.raises(HTTPException) as error:
        save_viewer_seg(*_stow_body(p001_seg, p001_seg))
    assert error.value.status_code == 400 and "one DICOM SEG" in error.value.detail
    with pytest.raises(HTTPException) as error:
        save_viewer_seg(*_stow_body(b"not DICOM at all"))
    assert error.value.status_code == 400 and "not readable DICOM" in error.value.detail

    ds = pydicom.dcmread(io.BytesIO(p001_seg))
    ds.ReferencedSeriesSequence.append(pydicom.Dataset())
    ds.ReferencedSeriesSequence[-1].SeriesInstanceUID = "1.2.3"
    buffer = io.BytesIO()
    ds.save_as(buffer, write_like_original=False)
    with pytest.raises(HTTPException) as error:
        save_viewer_seg(*_stow_body(buffer.getvalue()))
    assert error.value.status_code == 400 and "exactly one image series" in error.value.detail


def test_save_refuses_an_empty_segmentation(tmp_path):
    series = read_dicom_series(SAMPLE_DICOM / "Case_P001")
    label = np.zeros(series.volume.shape, dtype=np.uint8)
    label[0, 0, 0] = 1
    seg = pydicom.dcmread(write_seg(label, series, tmp_path / "seg.dcm", manual=True))
    # no frame at all: what OHIF sends for a segmentation without a voxel
    seg.PerFrameFunctionalGroupsSequence = []
    seg.NumberOfFrames = 0
    del seg.PixelData
    buffer = io.BytesIO()
    seg.save_as(buffer, write_like_original=False)
    with pytest.raises(HTTPException) as error:
        save_viewer_seg(*_stow_body(buffer.getvalue()))
    assert error.value.status_code == 422 and "nothing to save" in error.value.detail

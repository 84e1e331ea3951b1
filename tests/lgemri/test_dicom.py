"""Tests for lgemri.dicom: DICOM MR series <-> Volume with exact geometry."""

from __future__ import annotations

import re
import shutil

import numpy as np
import pydicom
import pytest
from pydicom import config
from pydicom.dataset import validate_file_meta
from pydicom.uid import UID, ExplicitVRLittleEndian, MRImageStorage

from lgemri import dicom
from lgemri.dicom import (
    dicom_to_nifti,
    nifti_to_dicom,
    read_dicom_series,
    write_dicom_series,
)
from lgemri.errors import InputError
from lgemri.volume import Volume, read_nifti, write_nifti

SHAPE = (40, 32, 6)


@pytest.fixture(autouse=True)
def strict_pydicom(monkeypatch):
    """Make pydicom raise on any invalid value written or read."""
    monkeypatch.setattr(config.settings, "writing_validation_mode", config.RAISE)
    monkeypatch.setattr(config.settings, "reading_validation_mode", config.RAISE)


def make_affine(spacing=(1.4, 1.4, 10.0), left_handed=False, seed=0):
    """An oblique affine from a random rotation, with a non-trivial origin."""
    rng = np.random.default_rng(seed)
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] *= -1
    affine = np.eye(4)
    affine[:3, :3] = q * np.asarray(spacing)
    affine[:3, 3] = [-83.123456789, 41.987654321, 12.5]
    if left_handed:
        affine[:3, 2] *= -1
    return affine


def int_volume(low=-1000, high=3000, left_handed=False, seed=0, shape=SHAPE):
    rng = np.random.default_rng(seed)
    array = rng.integers(low, high + 1, size=shape).astype(np.int16 if high < 32768 else np.int32)
    return Volume(array, make_affine(left_handed=left_handed, seed=seed))


def float_volume(seed=1):
    rng = np.random.default_rng(seed)
    array = (rng.normal(size=SHAPE) * 123.4 + 10.0).astype(np.float32)
    return Volume(array, make_affine(seed=seed))


def write(volume, folder, **kwargs):
    defaults = {"patient_id": "P001", "patient_name": "Test^Patient", "uid_entropy": "seed"}
    return write_dicom_series(volume, folder, **{**defaults, **kwargs})


def edit(path, change):
    """Read ``path``, apply ``change`` to the dataset and save it back."""
    with config.disable_value_validation():
        ds = pydicom.dcmread(path)
        change(ds)
        ds.save_as(path)


# --- writing ----------------------------------------------------------------------------


def test_written_files_are_valid_mr_images(tmp_path):
    files = write(int_volume(), tmp_path / "series", series_description="LGE PSIR")
    assert [f.name for f in files] == [f"IM_{k:04d}.dcm" for k in range(1, SHAPE[2] + 1)]
    datasets = [pydicom.dcmread(f) for f in files]
    for k, ds in enumerate(datasets):
        validate_file_meta(ds.file_meta)
        assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
        assert ds.file_meta.MediaStorageSOPClassUID == ds.SOPClassUID == MRImageStorage
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert ds.InstanceNumber == k + 1
        assert ds.Modality == "MR" and ds.SeriesDescription == "LGE PSIR"
        assert ds.pixel_array.shape == (ds.Rows, ds.Columns) == (SHAPE[1], SHAPE[0])
        for uid in (ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID):
            assert UID(uid).is_valid
        for elem in ds.iterall():
            if elem.VR == "DS":
                values = elem.value if elem.VM > 1 else [elem.value]
                assert all(len(str(v)) <= 16 for v in values), elem
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID"):
        assert len({ds[keyword].value for ds in datasets}) == 1
    assert len({ds.SOPInstanceUID for ds in datasets}) == SHAPE[2]
    assert float(datasets[0].SliceThickness) == pytest.approx(10.0)


def test_extra_overrides_and_formats_ds(tmp_path):
    files = write(
        int_volume(),
        tmp_path / "s",
        extra={"SliceThickness": 8.0, "InversionTime": 0.1 + 0.2, "EchoTime": 9.999999999999998},
    )
    ds = pydicom.dcmread(files[0])
    assert float(ds.SliceThickness) == 8.0
    assert float(ds.EchoTime) == 10.0  # pydicom 2.4's formatter alone gives 17 characters
    assert float(ds.SpacingBetweenSlices) == pytest.approx(10.0)
    assert str(ds.InversionTime) == "0.30000000000000"
    with pytest.raises(InputError, match="NotAKeyword"):
        write(int_volume(), tmp_path / "t", extra={"NotAKeyword": 1})


def test_non_ascii_names_use_utf8(tmp_path):
    files = write(int_volume(), tmp_path / "s", patient_name="Müller^Jörg")
    ds = pydicom.dcmread(files[0])
    assert ds.SpecificCharacterSet == "ISO_IR 192"
    assert str(ds.PatientName) == "Müller^Jörg"
    assert read_dicom_series(tmp_path / "s").patient_name == "Müller^Jörg"


def test_write_rejects_bad_affines(tmp_path):
    volume = int_volume()
    skewed = volume.affine.copy()
    skewed[:3, 1] += 0.1 * skewed[:3, 0]
    with pytest.raises(InputError, match="orthogonal"):
        write(Volume(volume.array, skewed), tmp_path / "a")
    flat = volume.affine.copy()
    flat[:3, 2] = 0
    with pytest.raises(InputError, match="zero voxel spacing"):
        write(Volume(volume.array, flat), tmp_path / "b")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_failed_write_leaves_previous_series(tmp_path, monkeypatch):
    folder = tmp_path / "series"
    before = {f.name: f.read_bytes() for f in write(int_volume(), folder)}
    calls = []
    dcmwrite = pydicom.dcmwrite

    def failing_dcmwrite(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise OSError("disk full")
        dcmwrite(*args, **kwargs)

    monkeypatch.setattr(dicom.pydicom, "dcmwrite", failing_dcmwrite)
    with pytest.raises(OSError, match="disk full"):
        write(int_volume(seed=5), folder)
    assert {f.name: f.read_bytes() for f in folder.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["series"]


def test_same_uid_entropy_gives_identical_files(tmp_path):
    a = write(float_volume(), tmp_path / "a", uid_entropy="case-7")
    b = write(float_volume(), tmp_path / "b", uid_entropy="case-7")
    assert [f.read_bytes() for f in a] == [f.read_bytes() for f in b]
    c = write(float_volume(), tmp_path / "c", uid_entropy="case-8")
    d = write(float_volume(), tmp_path / "d", uid_entropy=None)
    uids = {pydicom.dcmread(f[0]).SeriesInstanceUID for f in (a, c, d)}
    assert len(uids) == 3


# --- round trips ------------------------------------------------------------------------


@pytest.mark.parametrize("left_handed", [False, True])
@pytest.mark.parametrize(("low", "high", "dtype"), [(-1000, 3000, np.int16), (0, 60000, np.int32)])
def test_nifti_dicom_nifti_round_trip_integer(tmp_path, left_handed, low, high, dtype):
    volume = int_volume(low, high, left_handed=left_handed)
    write_nifti(volume, tmp_path / "case01.nii.gz")
    files = nifti_to_dicom(tmp_path / "case01.nii.gz", tmp_path / "dcm")
    assert pydicom.dcmread(files[0]).PatientID == "case01"
    dicom_to_nifti(tmp_path / "dcm", tmp_path / "back.nii.gz")
    back = read_nifti(tmp_path / "back.nii.gz")
    assert back.shape == volume.shape
    assert back.array.dtype == dtype
    np.testing.assert_array_equal(back.array, volume.array)
    np.testing.assert_allclose(back.affine, volume.affine, atol=1e-4)
    np.testing.assert_allclose(back.array[..., 0], volume.array[..., 0])  # slice order kept


def test_round_trip_float_within_quantisation(tmp_path):
    volume = float_volume()
    write(volume, tmp_path / "dcm")
    series = read_dicom_series(tmp_path / "dcm")
    assert series.volume.array.dtype == np.float32
    values = volume.array.astype(np.float64)
    slope = (values.max() - values.min()) / 65535
    error = np.abs(series.volume.array - values).max()
    assert error <= slope / 2 + 1e-6 * np.abs(values).max()
    np.testing.assert_allclose(series.volume.affine, volume.affine, atol=1e-4)


def test_read_returns_identifiers_and_files_in_order(tmp_path):
    files = write(
        int_volume(left_handed=True),
        tmp_path / "dcm",
        study_uid="1.2.3.4",
        series_description="SAX LGE",
    )
    series = read_dicom_series(tmp_path / "dcm")
    assert series.files == files
    assert [ds.InstanceNumber for ds in series.datasets] == list(range(1, SHAPE[2] + 1))
    assert series.study_uid == "1.2.3.4"
    assert series.patient_id == "P001" and series.patient_name == "Test^Patient"
    assert series.modality == "MR" and series.series_description == "SAX LGE"
    assert series.series_uid == series.datasets[0].SeriesInstanceUID
    assert series.frame_of_reference_uid == series.datasets[0].FrameOfReferenceUID


def test_shuffled_renamed_files_and_file_lists_give_same_volume(tmp_path):
    volume = int_volume(left_handed=True)
    files = write(volume, tmp_path / "dcm")
    shuffled = tmp_path / "shuffled"
    shuffled.mkdir()
    order = np.random.default_rng(3).permutation(len(files))
    copies = [shuffled / f"x{n:02d}" for n in range(len(files))]
    for n, index in enumerate(order):
        shutil.copy(files[index], copies[n])
    (shuffled / "notes.txt").write_text("not DICOM")
    (shuffled / "DICOMDIR").write_bytes(b"\0" * 200)
    for source in (shuffled, [str(p) for p in copies]):
        series = read_dicom_series(source)
        np.testing.assert_array_equal(series.volume.array, volume.array)
        np.testing.assert_allclose(series.volume.affine, volume.affine, atol=1e-4)


def test_non_image_objects_are_ignored(tmp_path):
    volume = int_volume()
    files = write(volume, tmp_path / "dcm")
    report = pydicom.dcmread(files[0])
    del report.PixelData
    report.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.22"  # Enhanced SR
    report.Modality = "SR"
    report.save_as(tmp_path / "dcm" / "SR.dcm")
    np.testing.assert_array_equal(read_dicom_series(tmp_path / "dcm").volume.array, volume.array)
    for f in files:
        f.unlink()
    with pytest.raises(InputError, match="empty series.*SR.dcm"):
        read_dicom_series(tmp_path / "dcm")


def test_single_slice_uses_slice_thickness(tmp_path):
    volume = Volume(int_volume().array[..., :1], make_affine(spacing=(1.4, 1.4, 8.0)))
    write(volume, tmp_path / "dcm")
    series = read_dicom_series(tmp_path / "dcm")
    np.testing.assert_allclose(series.volume.affine, volume.affine, atol=1e-4)


def test_rescaled_integers_are_read_as_float(tmp_path):
    files = write(int_volume(0, 100), tmp_path / "dcm")
    edit(files[2], lambda ds: setattr(ds, "RescaleSlope", "2"))
    array = read_dicom_series(tmp_path / "dcm").volume.array
    assert array.dtype == np.float32
    np.testing.assert_array_equal(array[..., 2], 2 * int_volume(0, 100).array[..., 2])


# --- bad input --------------------------------------------------------------------------


def test_missing_and_empty_folders(tmp_path):
    with pytest.raises(InputError, match="nowhere.*no such folder"):
        read_dicom_series(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("hello")
    with pytest.raises(InputError, match="empty.*empty series"):
        read_dicom_series(empty)


def test_mixed_series_need_series_uid(tmp_path):
    first = write(int_volume(), tmp_path / "a", uid_entropy="a", series_description="first")
    second = write(int_volume(seed=2), tmp_path / "b", uid_entropy="b", series_description="2nd")
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for tag, files in (("a", first), ("b", second)):
        for f in files:
            shutil.copy(f, mixed / f"{tag}_{f.name}")
    uid_a, uid_b = (pydicom.dcmread(files[0]).SeriesInstanceUID for files in (first, second))
    with pytest.raises(InputError) as info:
        read_dicom_series(mixed)
    message = str(info.value)
    assert str(mixed) in message and "mixed series" in message and "series_uid" in message
    for uid, description in ((uid_a, "first"), (uid_b, "2nd")):
        assert uid in message and description in message
    assert "6 images" in message
    series = read_dicom_series(mixed, series_uid=uid_b)
    np.testing.assert_array_equal(series.volume.array, int_volume(seed=2).array)
    with pytest.raises(InputError, match="1.2.3.4.5 is not there"):
        read_dicom_series(mixed, series_uid="1.2.3.4.5")


def _broken(tmp_path, change, index=2):
    files = write(int_volume(), tmp_path / "dcm")
    edit(files[index], change)
    return tmp_path / "dcm", files[index]


def _set(keyword, value):
    return lambda ds: setattr(ds, keyword, value)


def test_inconsistent_orientation(tmp_path):
    folder, _ = _broken(tmp_path, _set("ImageOrientationPatient", [1, 0, 0, 0, 1, 0]))
    message = re.escape(f"{folder}: inconsistent ImageOrientationPatient")
    with pytest.raises(InputError, match=message):
        read_dicom_series(folder)


def test_inconsistent_pixel_spacing(tmp_path):
    folder, _ = _broken(tmp_path, _set("PixelSpacing", [1.5, 1.4]))
    with pytest.raises(InputError, match=re.escape(f"{folder}: inconsistent PixelSpacing")):
        read_dicom_series(folder)


def test_missing_geometry(tmp_path):
    folder, path = _broken(tmp_path, lambda ds: delattr(ds, "ImagePositionPatient"))
    message = re.escape(f"{path}: missing geometry: no valid ImagePositionPatient")
    with pytest.raises(InputError, match=message):
        read_dicom_series(folder)


def test_duplicate_positions(tmp_path):
    files = write(int_volume(), tmp_path / "dcm")
    position = pydicom.dcmread(files[1]).ImagePositionPatient
    edit(files[2], _set("ImagePositionPatient", position))
    with pytest.raises(InputError, match="same position.*IM_0002.dcm and IM_0003.dcm"):
        read_dicom_series(tmp_path / "dcm")


def test_non_uniform_spacing(tmp_path):
    files = write(int_volume(), tmp_path / "dcm")
    ds = pydicom.dcmread(files[-1])
    iop = np.array(ds.ImageOrientationPatient, dtype=float)
    shifted = np.array(ds.ImagePositionPatient, dtype=float) + 1.0 * np.cross(iop[:3], iop[3:])
    edit(files[-1], _set("ImagePositionPatient", [f"{x:.6f}" for x in shifted]))
    message = re.escape(f"{tmp_path / 'dcm'}: non-uniform slice spacing")
    with pytest.raises(InputError, match=message):
        read_dicom_series(tmp_path / "dcm")


def test_corrupt_pixel_data(tmp_path):
    folder, path = _broken(tmp_path, lambda ds: setattr(ds, "PixelData", ds.PixelData[:100]))
    with pytest.raises(InputError, match=re.escape(f"{path}: corrupt pixel data")):
        read_dicom_series(folder)


def test_multi_frame_not_supported(tmp_path):
    folder, path = _broken(tmp_path, _set("NumberOfFrames", 2))
    with pytest.raises(InputError, match=re.escape(f"{path}: multi-frame")):
        read_dicom_series(folder)

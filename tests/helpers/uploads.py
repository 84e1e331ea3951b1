"""What tests send to a running ``cardiac-mi serve``: STOW-RS bodies, a new MR instance of the samples, a label
file and its ``PUT /datastore/label``."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import numpy as np

LABEL_CASE = "Case_P001"


def multipart(*files: bytes) -> tuple[str, bytes]:
    """A STOW-RS body: (content type, body)."""
    boundary = uuid.uuid4().hex
    body = (
        b"".join(
            b"--" + boundary.encode() + b"\r\nContent-Type: application/dicom\r\n\r\n" + data + b"\r\n"
            for data in files
        )
        + b"--"
        + boundary.encode()
        + b"--\r\n"
    )
    return f'multipart/related; type="application/dicom"; boundary={boundary}', body


def new_study_instance(tmp_path: Path) -> tuple[str, bytes]:
    """An MR slice of the samples with new UIDs: (its StudyInstanceUID, the file's bytes)."""
    import pydicom
    from pydicom.uid import generate_uid

    from cardiac_mi.serve import SAMPLE_DICOM

    ds = pydicom.dcmread(sorted((SAMPLE_DICOM / "Case_N003").rglob("*.dcm"))[0])
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    path = tmp_path / "new.dcm"
    ds.save_as(path)
    return str(ds.StudyInstanceUID), path.read_bytes()


def label_file(tmp_path: Path) -> Path:
    """The ground truth of the sample ``Case_P001`` as a NIfTI label on its DICOM series' grid."""
    from cardiac_mi.serve import SAMPLE_DICOM
    from lgemri.dicom import read_dicom_series
    from lgemri.emidec import load_case
    from lgemri.volume import Volume, write_nifti

    truth = np.asarray(load_case(SAMPLE_DICOM.parent / "emidec", LABEL_CASE).label.array)
    path = tmp_path / "label.nii.gz"
    write_nifti(Volume(truth.astype(np.uint8), read_dicom_series(SAMPLE_DICOM / LABEL_CASE).volume.affine), path)
    return path


def put_label(served, label: Path, **params):
    """``PUT /datastore/label`` of ``label`` with ``params`` (``image``, ``tag``) as the user ``reader``."""
    import requests

    with open(label, "rb") as fh:
        return requests.put(
            f"{served.url}/datastore/label",
            params=params,
            files={"label": ("label.nii.gz", fh)},
            data={"params": json.dumps({"user": "reader"})},
            timeout=120,
        )

"""Run the peer model, myopari 0.1.6's TIRAMISU_EMIDEC, on NIfTI studies (peer venv only).

This script runs under the PEER venv's python (``.venv-peer/bin/python``, see README.md beside
it), never the product's: it imports only numpy, nibabel, onnxruntime, scikit-image (through
myopari) and myopari itself — nothing of lgemri / cardiac_mi, and no torch.

    .venv-peer/bin/python experiments/peers/myopari_emidec.py \\
        --input /data/Case_P001/Images/Case_P001.nii.gz [FILE ...] --out /tmp/peer-out

For each input ``DIR/<stem>.nii.gz`` (stem = file name less ``.nii.gz`` / ``.nii``) holds the
predicted EMIDEC label (uint8, 0 background, 1 LV cavity, 2 healthy myocardium, 3 infarct,
4 no-reflow) on the input's voxel grid, with the input's affine, sform/qform and pixdim.
``DIR/peer.json`` records the package version, the model file and its SHA-256, the per-file
seconds and the training-data caveat. The one line on stdout is the path of ``peer.json``.
Bad input (missing or unreadable file, not 2-D/3-D, no positive voxel, two inputs with one stem):
a one-line error on stderr and exit status 2, before any output is written.

What the peer is (read from the installed wheel, myopari 0.1.6, MIT licence)
---------------------------------------------------------------------------
* A napari plugin. Its whole pipeline is ``myopari.processors.SEG_module().segment(volume)``
  (``processors/SEGProcessor.py``); the napari widget (``_segmentation_widget.py``) takes the
  layer array (ITK order z, y, x), transposes it to (x, y, z) = the NIfTI voxel order i, j, k,
  i.e. exactly what nibabel's ``img.dataobj`` gives, calls ``segment`` on it and transposes back.
  The author's training code (``emidec2npz.py`` in their EMIDEC repository) likewise feeds
  ``nib.load(path).get_fdata()`` unchanged. So no reorientation: the array goes in as stored.
* Model file ``myopari/Resources/tiramisu_emidec_fp32.onnx`` (5.7 MB, a 2-D FC-DenseNet
  "Tiramisu" exported from PyTorch): input ``input`` float32 ``[batch, 1, 256, 256]``, output
  ``output`` float32 ``[batch, 5, 256, 256]`` (class scores, argmax taken). One slice at a time,
  batches of 8 slices.
* Preprocessing (``processors/functions_utils.py``, ``preprocess_data_array``):
  1. intensity: percentiles 0.05 and 99.05 of the voxels > 0, clip to them, min-max to 0..1
     (``min_max_normalize``) — per volume;
  2. crop to the bounding box of the non-zero voxels (so all-zero border rows/columns/slices
     are dropped), then a CENTRE SQUARE crop of side min(rows, cols) — in a non-square image the
     strips outside that square are never segmented (label 0 there);
  3. resize the square to 256 x 256 (bilinear, anti-aliased), every slice kept.
  It does NOT localise the heart and does NOT use the voxel spacing at all: it assumes an
  EMIDEC-style field of view (the whole image already a crop around the heart, ~150-300
  pixels of ~1.25-2 mm). A full-FOV scan would be shrunk to 256 pixels as a whole.
  The spacing (pixdim, as ITK reads it) is only recorded in peer.json, for information.
* Post-processing (``predict_data_model_emidec``): argmax; remove 3-D connected foreground
  components smaller than 500 voxels (in the 256 x 256 x slices grid); if infarct + no-reflow
  is under 2.5 % of the myocardium {2,3,4}, set them to healthy myocardium 2; resize back
  (nearest) into the crop, zeros elsewhere.
* Output labels: 0 background, 1 cavity, 2 myocardium, 3 infarction, 4 no-reflow — the EMIDEC
  classes themselves (``Resources/model_label_map.json``: cavity [1], myocardium [2,3,4],
  infarction [3,4], no_reflow [4]), so no mapping is needed; we only cast to uint8.

How this script calls it
------------------------
``import myopari`` would run the package ``__init__``, which imports the napari widget (napari,
Qt, magicgui: not installed in the peer venv). So the ``myopari`` package is registered without
running its ``__init__`` and ``myopari.processors`` (pure numpy / scikit-image / onnxruntime) is
imported from the installed files. ``SEG_module`` is used as the plugin uses it, with
``model_name = TIRAMISU_EMIDEC``, ``myo_only = False`` and ``edge_device = RASBERRY_PI`` (the
plugin's CPU-only choice: ``CPUExecutionProvider``). The only interposition: ``SEG_module``
builds ``onnxruntime.InferenceSession(path, providers=...)`` with default threading, so the
module's ``ort`` is given a thin stand-in whose ``InferenceSession`` adds SessionOptions with
``--threads`` intra-op threads (default 1); the model, the pre- and post-processing are the
package's own. The print of the providers at its import goes to the log, not stdout.

Caveat for comparisons: the shipped weights must be taken as trained on all 100 EMIDEC training
cases (the wheel does not say which cases it saw; the author's training code splits those 100
cases in several ways), so any figure on an EMIDEC training case is optimistic for the peer.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib
import importlib.metadata
import importlib.util
import json
import logging
import sys
import time
import types
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np

LOG = logging.getLogger("myopari_emidec")

PACKAGE = "myopari"
PACKAGE_VERSION = "0.1.6"
MODEL_NAME = "TIRAMISU_EMIDEC"
MODEL_FILE = "tiramisu_emidec_fp32.onnx"
TRAINING_CAVEAT = (
    "The peer model (myopari 0.1.6 TIRAMISU_EMIDEC) is taken as trained on all 100 EMIDEC "
    "training cases (the wheel does not record which cases it saw), so its figures on EMIDEC "
    "cases are optimistic."
)
GEOMETRY_FIELDS = (
    "pixdim",
    "xyzt_units",
    "qform_code",
    "sform_code",
    "quatern_b",
    "quatern_c",
    "quatern_d",
    "qoffset_x",
    "qoffset_y",
    "qoffset_z",
    "srow_x",
    "srow_y",
    "srow_z",
)
LABELS = {0: "background", 1: "LV cavity", 2: "healthy myocardium", 3: "infarct", 4: "no-reflow"}


class BadInput(Exception):
    """An input the peer cannot be run on; reported as one line, exit status 2."""


class _OrtWithThreads(types.ModuleType):
    """Stand-in for ``onnxruntime`` inside myopari's SEGProcessor: same module, but every
    ``InferenceSession`` gets SessionOptions with a fixed number of threads."""

    def __init__(self, ort: types.ModuleType, threads: int):
        super().__init__("onnxruntime")
        self._ort = ort
        self._threads = threads

    def __getattr__(self, name: str):
        return getattr(self._ort, name)

    def InferenceSession(self, path, sess_options=None, providers=None, **kwargs):  # noqa: N802
        if sess_options is None:
            sess_options = self._ort.SessionOptions()
            sess_options.intra_op_num_threads = self._threads
            sess_options.inter_op_num_threads = 1
        return self._ort.InferenceSession(path, sess_options, providers=providers, **kwargs)


def load_processors(threads: int):
    """Import ``myopari.processors`` without the package ``__init__`` (the napari widget)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"{PACKAGE} is not installed in this python ({sys.executable})")
    package_dir = Path(list(spec.submodule_search_locations)[0])
    if PACKAGE not in sys.modules:
        stub = types.ModuleType(PACKAGE)
        stub.__path__ = [str(package_dir)]
        stub.__file__ = str(package_dir / "__init__.py")
        sys.modules[PACKAGE] = stub
    out = _LogWriter(logging.DEBUG)
    with contextlib.redirect_stdout(out):  # SEGProcessor prints the providers at import
        processors = importlib.import_module(f"{PACKAGE}.processors")
        seg_processor = importlib.import_module(f"{PACKAGE}.processors.SEGProcessor")
    out.flush()
    seg_processor.ort = _OrtWithThreads(seg_processor.ort, threads)
    return processors, seg_processor, package_dir


class _LogWriter:
    """File-like object that sends what is printed to the log."""

    def __init__(self, level: int):
        self.level = level
        self.buffer = ""

    def write(self, text: str) -> int:
        self.buffer += text
        while "\n" in self.buffer:
            line, self.buffer = self.buffer.split("\n", 1)
            if line.strip():
                LOG.log(self.level, "myopari: %s", line)
        return len(text)

    def flush(self) -> None:
        if self.buffer.strip():
            LOG.log(self.level, "myopari: %s", self.buffer)
        self.buffer = ""


def stem(path: Path) -> str:
    name = path.name
    for suffix in (".nii.gz", ".nii"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def spacing_itk(header) -> list[float]:
    """Voxel spacing as ITK reads it: the NIfTI ``pixdim`` (EMIDEC files carry a unit-scaled sform
    while pixdim holds the real spacing)."""
    dims = int(header["dim"][0])
    return [float(v) for v in header["pixdim"][1 : 1 + min(dims, 3)]]


def read_volume(path: Path) -> tuple[nib.Nifti1Image, np.ndarray]:
    """Load a NIfTI image and return it with its data as a float32 (i, j, k) array."""
    if not path.is_file():
        raise BadInput(f"{path}: no such file")
    try:
        img = nib.load(str(path))
        data = np.asarray(img.dataobj, dtype=np.float32)
    except Exception as exc:  # nibabel raises several kinds for a non-NIfTI file
        raise BadInput(f"{path}: not a readable NIfTI image ({type(exc).__name__}: {exc})") from None
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        raise BadInput(f"{path}: not a NIfTI image ({type(img).__name__})")
    shape = data.shape
    squeezed = data.reshape([n for i, n in enumerate(shape) if i < 3 or n != 1])
    if squeezed.ndim == 2:
        squeezed = squeezed[:, :, None]
    if squeezed.ndim != 3:
        raise BadInput(f"{path}: shape {shape}: the peer takes one 2-D or 3-D image (x, y[, z])")
    if min(squeezed.shape[:2]) < 16:
        raise BadInput(f"{path}: shape {shape}: an in-plane size under 16 pixels is no image")
    if not np.all(np.isfinite(squeezed)):
        raise BadInput(f"{path}: the image has NaN or infinite voxels")
    if not np.any(squeezed > 0):
        raise BadInput(f"{path}: no voxel above 0 (myopari normalises over the positive voxels)")
    return img, squeezed


def segment(seg_processor, volume: np.ndarray) -> np.ndarray:
    """myopari's own pipeline on one (x, y, z) array; returns the EMIDEC label, uint8."""
    module = seg_processor.SEG_module()
    module.model_name = seg_processor.SegModel.TIRAMISU_EMIDEC.value
    module.myo_only = False
    module.edge_device = seg_processor.EdgeDevice.RASBERRY_PI.value  # CPU provider only
    out = _LogWriter(logging.DEBUG)
    with contextlib.redirect_stdout(out):
        label = module.segment(volume)
    out.flush()
    label = np.asarray(label)
    if label.shape != volume.shape:
        raise RuntimeError(f"myopari returned shape {label.shape} for input {volume.shape}")
    if label.min() < 0 or label.max() > 4:
        raise RuntimeError(f"myopari returned labels outside 0..4: {np.unique(label).tolist()}")
    return label.astype(np.uint8)  # myopari's labels are the EMIDEC classes 0..4 already


def write_label(label: np.ndarray, like: nib.Nifti1Image, path: Path) -> None:
    """Write ``label`` with the geometry (affine, sform/qform, pixdim) of ``like``."""
    header = like.header.copy()
    header.set_data_dtype(np.uint8)
    header.set_slope_inter(1.0, 0.0)
    header["cal_min"], header["cal_max"] = 0, 4
    header["descrip"] = f"{PACKAGE} {PACKAGE_VERSION} {MODEL_NAME} EMIDEC label".encode()[:79]
    image = type(like)(label.reshape(like.shape), like.affine, header)
    # nibabel may rewrite sform/qform/pixdim from the affine on construction; put the input's
    # raw geometry fields back (pixdim matters: EMIDEC keeps the real spacing only there).
    # The affine equals the header's best affine, so nib.save leaves these fields as they are.
    for field in GEOMETRY_FIELDS:
        image.header[field] = like.header[field]
    nib.save(image, str(path))


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--input",
        nargs="+",
        required=True,
        type=Path,
        metavar="FILE",
        help="NIfTI images (.nii.gz or .nii), one study each",
    )
    parser.add_argument(
        "--out", required=True, type=Path, metavar="DIR", help="output folder for <stem>.nii.gz labels and peer.json"
    )
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads (default 1)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.captureWarnings(True)
    # scikit-image >= 0.26 deprecates remove_small_objects(min_size=...), which myopari uses;
    # the parameter still means "remove objects smaller than", as myopari intends.
    warnings.filterwarnings("ignore", message="Parameter `min_size` is deprecated", category=FutureWarning)
    try:
        if args.threads < 1:
            raise BadInput(f"--threads {args.threads}: must be at least 1")
        stems: dict[str, Path] = {}
        for path in args.input:
            s = stem(path)
            if s in stems:
                raise BadInput(f"{path} and {stems[s]} would both write {s}.nii.gz")
            stems[s] = path
        volumes = {path: read_volume(path) for path in args.input}
        if args.out.exists() and not args.out.is_dir():
            raise BadInput(f"--out {args.out}: exists and is not a folder")
    except BadInput as exc:
        LOG.error("%s", exc)
        return 2

    version = importlib.metadata.version(PACKAGE)
    if version != PACKAGE_VERSION:
        LOG.warning("%s %s installed; this runner was written for %s", PACKAGE, version, PACKAGE_VERSION)
    _, seg_processor, package_dir = load_processors(args.threads)
    model_path = package_dir / "Resources" / MODEL_FILE
    args.out.mkdir(parents=True, exist_ok=True)

    cases = []
    for path, (img, volume) in volumes.items():
        start = time.perf_counter()
        label = segment(seg_processor, volume)
        seconds = time.perf_counter() - start
        out_path = args.out / f"{stem(path)}.nii.gz"
        write_label(label, img, out_path)
        counts = {LABELS[c]: int(np.sum(label == c)) for c in range(1, 5)}
        LOG.info("%s -> %s: %.2f s, shape %s, voxels %s", path, out_path, seconds, img.shape, counts)
        cases.append(
            {
                "input": str(path.resolve()),
                "output": str(out_path.resolve()),
                "seconds": round(seconds, 3),
                "shape": list(img.shape),
                "spacing_pixdim_mm": spacing_itk(img.header),
                "voxels": counts,
            }
        )

    import onnxruntime  # the real module, for its version

    report = {
        "peer": PACKAGE,
        "version": version,
        "licence": "MIT",
        "model": MODEL_NAME,
        "model_file": MODEL_FILE,
        "model_sha256": sha256(model_path),
        "input": "float32 [batch, 1, 256, 256]: per-volume 0.05-99.05 percentile min-max, "
        "non-zero bounding box, centre square crop, resize to 256",
        "labels": {str(k): v for k, v in LABELS.items()},
        "onnxruntime": onnxruntime.__version__,
        "provider": "CPUExecutionProvider",
        "threads": args.threads,
        "trained_on": "all 100 EMIDEC training cases",
        "caveat": TRAINING_CAVEAT,
        "cases": cases,
    }
    report_path = args.out / "peer.json"
    report_path.write_text(json.dumps(report, indent=2) + "\n")
    print(report_path.resolve())
    return 0


if __name__ == "__main__":
    sys.exit(main())

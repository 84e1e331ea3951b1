"""The inference cascade: geometry, robustness to bad input, outputs (tiny untrained networks)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from cardiac_mi.cli import main
from lgemri.errors import InputError
from lgemri.geometry import resample_inplane
from lgemri.inference import Cascade, Models, _to_input_grid, infer_file, load_models, recentred, segment_volume
from lgemri.nets import build_network
from lgemri.nets.checkpoint import save_checkpoint
from lgemri.volume import Volume, read_nifti

SAMPLE = Path(__file__).resolve().parents[2] / "sample-data"
CASE = "Case_P001"


class FixedLocalizer(torch.nn.Module):
    """Says 'LV' inside a fixed disc of the localization grid (or nowhere)."""

    def __init__(self, centre=(64, 64), radius=12, anywhere=True):
        super().__init__()
        self.centre, self.radius, self.anywhere = centre, radius, anywhere

    def forward(self, x):
        n, _, h, w = x.shape
        ii, jj = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        disc = ((ii - self.centre[0]) ** 2 + (jj - self.centre[1]) ** 2 <= self.radius**2) & self.anywhere
        logits = torch.zeros(n, 2, h, w)
        logits[:, 1] = torch.where(disc, 5.0, -5.0)
        return logits


def tiny_models(tmp_path: Path, two_stage: bool = False) -> Path:
    folder = tmp_path / "models"
    torch.manual_seed(0)
    loc_kwargs = {"channels": (4, 8, 8, 8)}
    save_checkpoint(
        folder / "localization.pt",
        build_network("localizer", **loc_kwargs),
        task="localization",
        network={"name": "localizer", "kwargs": loc_kwargs},
    )
    seg_kwargs = {"in_channels": 2 if two_stage else 1, "channels": (4, 4, 8, 8, 8, 8)}
    save_checkpoint(
        folder / "segmentation.pt",
        build_network("resatt_unet", **seg_kwargs),
        task="segmentation",
        network={"name": "resatt_unet", "kwargs": seg_kwargs},
        extra={"two_stage": two_stage},
    )
    if two_stage:
        cav_kwargs = {"out_channels": 2, "channels": (4, 4, 8, 8, 8, 8)}
        save_checkpoint(
            folder / "cavity.pt",
            build_network("resatt_unet", **cav_kwargs),
            task="cavity",
            network={"name": "resatt_unet", "kwargs": cav_kwargs},
        )
    return folder


@pytest.fixture(scope="module")
def sample_image() -> Volume:
    return read_nifti(SAMPLE / "emidec" / CASE / "Images" / f"{CASE}.nii.gz")


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Models:
    return load_models(tiny_models(tmp_path_factory.mktemp("tiny")))


def with_localizer(models: Models, localizer: torch.nn.Module) -> Models:
    return Models(localizer, models.segmenter, models.cavity, models.meta, models.device)


def test_label_on_input_grid(sample_image, models):
    result = segment_volume(sample_image, with_localizer(models, FixedLocalizer()))
    assert result.label.shape == sample_image.shape
    assert np.allclose(result.label.affine, sample_image.affine)
    assert result.label.array.dtype == np.uint8
    assert set(np.unique(result.label.array)) <= {0, 1, 2, 3, 4}
    assert result.roi["size_mm"] == 128 and len(result.roi["box_corners_ras_mm"]) == 4
    assert {"resample", "localization", "segmentation", "paste_back", "total"} <= set(result.timings)


def test_roi_centre_follows_localization(sample_image, models):
    """A localizer that marks the disc at coarse (40, 50) puts the ROI centre at 1 mm (i, j) of that point."""
    result = segment_volume(sample_image, with_localizer(models, FixedLocalizer(centre=(40, 50), radius=6)))
    grid = resample_inplane(sample_image, 1.0, order=0)
    ci, cj = result.roi["localization_centre_voxel_1mm"]
    # Coarse index c maps to 1 mm index (c - offset) * 3 + 1, offset centring the 3 mm slice in 128.
    offset = [(128 - (-(-n // 3))) // 2 for n in grid.shape[:2]]
    assert ci == pytest.approx((40 - offset[0]) * 3 + 1, abs=0.01)
    assert cj == pytest.approx((50 - offset[1]) * 3 + 1, abs=0.01)
    assert result.lv_mask.array.any()


def test_probabilities_return_to_the_input_grid(sample_image):
    """Resampling a label to 1 mm and back (nearest) reproduces it: the paste-back geometry is exact."""
    label = read_nifti(SAMPLE / "emidec" / CASE / "Contours" / f"{CASE}.nii.gz")
    grid = resample_inplane(Volume(label.array.astype(np.float32), label.affine), 1.0, order=0)
    back = _to_input_grid(grid.array, grid, label, order=0, fill=0.0)
    lv = label.array > 0
    agreement = (back[lv] == label.array[lv]).mean()
    assert agreement > 0.9


def test_no_lv_found_gives_empty_label_with_warning(sample_image, models):
    result = segment_volume(sample_image, with_localizer(models, FixedLocalizer(anywhere=False)))
    assert not result.label.array.any()
    assert any("no LV" in w for w in result.warnings)


def test_constant_and_blank_images(models):
    affine = np.diag([1.5, 1.5, 10.0, 1.0])
    for value in (0.0, 7.0):
        result = segment_volume(Volume(np.full((160, 150, 6), value, np.float32), affine), models)
        assert not result.label.array.any()
        assert any("constant" in w for w in result.warnings)


def test_single_slice_nonsquare_and_large_matrix(sample_image, models):
    single = Volume(sample_image.array[:, :, 3:4], sample_image.affine)
    result = segment_volume(single, with_localizer(models, FixedLocalizer()))
    assert result.label.shape == single.shape
    assert any("single slice" in w for w in result.warnings)
    rng = np.random.default_rng(0)
    big = Volume(rng.random((620, 300, 2)).astype(np.float32), np.diag([0.7, 1.3, 10.0, 1.0]))
    assert segment_volume(big, with_localizer(models, FixedLocalizer())).label.shape == big.shape


def test_odd_orientation(sample_image, models):
    """A volume stored with flipped and swapped in-plane axes still segments on its own grid."""
    flipped = sample_image.array[::-1].swapaxes(0, 1)
    affine = sample_image.affine.copy()
    affine[:, 3] = sample_image.affine @ np.array([sample_image.shape[0] - 1, 0, 0, 1])
    affine[:, 0] = -sample_image.affine[:, 0]
    affine[:, [0, 1]] = affine[:, [1, 0]]
    odd = Volume(np.ascontiguousarray(flipped), affine)
    result = segment_volume(odd, with_localizer(models, FixedLocalizer()))
    assert result.label.shape == odd.shape and np.allclose(result.label.affine, odd.affine)


def test_bad_images_raise(models):
    affine = np.eye(4)
    with pytest.raises(InputError, match="NaN"):
        segment_volume(Volume(np.full((64, 64, 3), np.nan, np.float32), affine), models)
    with pytest.raises(InputError, match="too small"):
        segment_volume(Volume(np.ones((8, 8, 3), np.float32), affine), models)


def test_two_stage_models(tmp_path, sample_image):
    models = load_models(tiny_models(tmp_path, two_stage=True))
    assert models.two_stage
    result = segment_volume(sample_image, with_localizer(models, FixedLocalizer()))
    assert result.label.shape == sample_image.shape


def test_missing_models_folder(tmp_path):
    with pytest.raises(InputError, match="no models folder"):
        load_models(tmp_path / "nowhere")


def test_infer_file_dicom_and_nifti(tmp_path, models):
    loc = with_localizer(models, FixedLocalizer())
    for source in (SAMPLE / "dicom" / CASE, SAMPLE / "emidec" / CASE / "Images" / f"{CASE}.nii.gz"):
        label_path, json_path = infer_file(source, tmp_path / "out", loc)
        assert label_path.name == f"{CASE}.nii.gz" and json_path.name == f"{CASE}.json"
        summary = json.loads(json_path.read_text())
        assert {"roi", "volumes_mm3", "timings_s", "warnings"} <= set(summary)
        assert {"read", "write", "total"} <= set(summary["timings_s"])
        assert read_nifti(label_path).shape == read_nifti(SAMPLE / "emidec" / CASE / "Images" / f"{CASE}.nii.gz").shape


def test_infer_cli(tmp_path, capsys):
    folder = tiny_models(tmp_path)
    code = main(
        ["-q", "infer", "--input", str(SAMPLE / "dicom" / CASE), "--out", str(tmp_path / "o"), "--models", str(folder)]
    )
    assert code == 0 and (tmp_path / "o" / f"{CASE}.nii.gz").is_file()
    code = main(
        ["-q", "infer", "--input", str(tmp_path / "missing"), "--out", str(tmp_path / "o"), "--models", str(folder)]
    )
    err = capsys.readouterr().err
    assert code == 2 and "missing" in err and "Traceback" not in err


def test_flip_tta_is_mirror_equivariant_and_changes_an_asymmetric_network():
    torch.manual_seed(0)
    net = build_network(
        "resatt_unet", spatial_dims=2, in_channels=1, out_channels=5, channels=(4, 8, 8), strides=(2, 2)
    ).eval()
    plain = Models(FixedLocalizer(), net, None, {}, torch.device("cpu"))
    tta = Models(FixedLocalizer(), net, None, {}, torch.device("cpu"), flip_tta=True)
    batch = np.random.default_rng(1).random((2, 1, 32, 32)).astype(np.float32)
    mirrored = np.ascontiguousarray(batch[..., ::-1])
    out = Cascade(tta).probabilities(net, batch)
    assert out.shape == (2, 5, 32, 32)
    assert np.allclose(Cascade(tta).probabilities(net, mirrored), out[..., ::-1], atol=1e-5)
    assert np.allclose(out.sum(axis=1), 1.0, atol=1e-5)
    assert not np.allclose(Cascade(plain).probabilities(net, batch), out, atol=1e-4)


class RingSegmenter(torch.nn.Module):
    """Cavity disc and myocardial ring at the ROI centre; half of the ring is infarct at
    P(infarct) + P(no-reflow) = 0.54, the most likely class but not a sure one."""

    def forward(self, x):
        n, _, h, w = x.shape
        ii, jj = torch.meshgrid(torch.arange(h) - h / 2, torch.arange(w) - w / 2, indexing="ij")
        r = torch.sqrt(ii.float() ** 2 + jj.float() ** 2)
        logits = torch.zeros(n, 5, h, w)
        cavity, ring = r < 15, (r >= 15) & (r < 24)
        logits[:, 0] = torch.where(cavity | ring, 0.0, 5.0)
        logits[:, 1] = torch.where(cavity, 5.0, 0.0)
        logits[:, 2] = torch.where(ring, 1.0, 0.0)
        logits[:, 3] = torch.where(ring & (jj > 0), 1.5, 0.0)
        return logits


def test_infarct_needs_the_minimum_probability(sample_image, models):
    located = Models(FixedLocalizer(), RingSegmenter(), None, {}, torch.device("cpu"))
    argmax = segment_volume(sample_image, located, min_infarct_ml=0.0).label.array
    assert np.isin(argmax, (3, 4)).any()
    kept = segment_volume(sample_image, located, 0.0, infarct_min_probability=0.5).label.array
    assert np.isin(kept, (3, 4)).sum() >= 0.8 * np.isin(argmax, (3, 4)).sum()  # edges mix with background
    sure = segment_volume(sample_image, located, 0.0, infarct_min_probability=0.6).label.array
    assert not np.isin(sure, (3, 4)).any()
    assert (sure[np.isin(argmax, (3, 4))] == 2).all()  # it becomes healthy myocardium


def test_one_cascade_serves_many_studies_and_its_steps_compose(sample_image, models):
    located = with_localizer(models, FixedLocalizer())
    cascade = Cascade(located, mc_passes=0)
    first, again = cascade(sample_image), cascade.predict(sample_image)
    assert np.array_equal(first.label.array, again.label.array) and first.roi == again.roi
    assert np.array_equal(first.label.array, segment_volume(sample_image, located, mc_passes=0).label.array)
    grid = resample_inplane(Volume(sample_image.array.astype(np.float32), sample_image.affine), 1.0, order=3)
    centre, _ = cascade.localize(grid.array)
    assert [round(c, 2) for c in centre] == first.roi["localization_centre_voxel_1mm"]
    roi_pass = cascade.segment_at(grid.array, centre)
    refined = recentred(roi_pass.full, centre)
    if refined is not None:
        roi_pass = cascade.segment_at(grid.array, refined)
    assert list(roi_pass.box) == first.roi["box_voxel_1mm"]
    assert np.array_equal(cascade.paste_back(roi_pass, grid, sample_image), first.label.array)

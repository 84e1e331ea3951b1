"""Tests for gan.metrics: FID/KID, IS, LPIPS, PSNR/SSIM on known cases, extractors, compute_metrics."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from gan.base_model import create_model, load_model
from gan.metrics import compute_metrics, load_image_set
from gan.metrics.alexnet import AlexNet
from gan.metrics.extractor import FeatureExtractor, extract
from gan.metrics.features import load_extractor
from gan.metrics.fid import fid_from_features, fid_kid, frechet_distance, gaussian_stats, kid_from_features
from gan.metrics.inception_score import inception_score
from gan.metrics.inception_v3 import InceptionV3
from gan.metrics.lge_encoder import LgeEncoder, encoder_extractor, save_encoder
from gan.metrics.lpips import lpips, lpips_distance
from gan.metrics.psnr_ssim import lv_region, psnr, psnr_ssim, ssim
from lgemri.errors import InputError
from tests.helpers.gan import TINY


def _images(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = np.clip(rng.normal(0, 0.5, (n, 1, 64, 64)), -1, 1)
    return base.astype(np.float32)


# --------------------------------------------------------------------------------------------
# PSNR / SSIM


def test_psnr_ssim_equal_scikit_image():
    a, b = _images(3, 0), _images(3, 1)
    b = np.clip(0.7 * a + 0.3 * b, -1, 1)
    p, s = psnr(b, a, data_range=2.0), ssim(b, a, data_range=2.0)
    for i in range(3):
        ref_p = peak_signal_noise_ratio(a[i, 0].astype(np.float64), b[i, 0].astype(np.float64), data_range=2.0)
        ref_s = structural_similarity(a[i, 0].astype(np.float64), b[i, 0].astype(np.float64), data_range=2.0)
        assert float(p[i]) == pytest.approx(ref_p, abs=1e-9)
        assert float(s[i]) == pytest.approx(ref_s, abs=1e-9)


def test_identical_images_psnr_inf_ssim_one():
    a = _images(2, 3)
    out = psnr_ssim(a, a.copy())
    assert out["psnr"] == float("inf") and out["identical"] == 2
    assert out["ssim"] == pytest.approx(1.0)
    with pytest.raises(InputError, match="differ in shape"):
        psnr(a, a[:1])


def test_region_psnr_ssim():
    a, b = _images(2, 0), _images(2, 1)
    everywhere = np.ones((2, 64, 64))
    assert torch.allclose(psnr(b, a, region=everywhere), psnr(b, a))
    assert torch.allclose(ssim(b, a, region=everywhere), ssim(b, a))
    c = b.copy()
    c[:, :, :32] = a[:, :, :32]
    top = np.zeros((2, 64, 64))
    top[:, :32] = 1
    assert torch.isinf(psnr(c, a, region=top)).all() and torch.isfinite(psnr(c, a)).all()
    assert float(ssim(c, a, region=top).min()) > float(ssim(c, a).max())
    mask = np.zeros((1, 128, 128), np.uint8)
    mask[0, 60:70, 60:70] = 2
    region = lv_region(mask, 5)
    assert region.shape == (1, 1, 128, 128) and int(region.sum()) == 20 * 20
    out = psnr_ssim(c, a, region=top)
    assert out["psnr_region"] == float("inf") and out["psnr"] < float("inf")


# --------------------------------------------------------------------------------------------
# FID / KID


def test_frechet_distance_closed_form_diagonal():
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    v1, v2 = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(v1 + v2 - 2 * np.sqrt(v1 * v2))  # 5 + 4 + 1 + 0
    assert frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2)) == pytest.approx(expected) == pytest.approx(10.0)


def test_frechet_distance_general_covariances_against_sqrtm():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(4, 4)), rng.normal(size=(4, 4))
    s1, s2 = a @ a.T + 0.1 * np.eye(4), b @ b.T + 0.1 * np.eye(4)
    mu1, mu2 = rng.normal(size=4), rng.normal(size=4)
    ref = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * scipy.linalg.sqrtm(s1 @ s2).real)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(ref, rel=1e-8)
    assert frechet_distance(mu1, s1, mu1, s1) == 0.0


def test_fid_of_two_shifted_gaussians_and_identical_sets():
    rng = np.random.default_rng(1)
    shift = np.array([2.0, 0.0, -1.0])
    x = rng.normal(size=(20000, 3))
    y = rng.normal(size=(20000, 3)) * np.array([1.0, 2.0, 1.0]) + shift
    expected = float(shift @ shift) + (1 + 4 - 2 * 2)  # |mu|^2 + tr(S1 + S2 - 2 sqrt(S1 S2)) = 5 + 1
    assert fid_from_features(x, y) == pytest.approx(expected, rel=0.05)
    assert fid_from_features(x, x.copy()) == pytest.approx(0.0, abs=1e-9)
    mu, sigma = gaussian_stats(x)
    assert mu.shape == (3,) and sigma.shape == (3, 3)
    with pytest.raises(InputError, match="two"):
        gaussian_stats(x[:1])


def test_kid_identical_near_zero_and_shifted_positive():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(400, 8))
    same, _ = kid_from_features(x, x.copy(), subsets=20, subset_size=200)
    shifted, _ = kid_from_features(x, x + 1.0, subsets=20, subset_size=200)
    assert abs(same) < 0.01 * shifted and shifted > 0
    result = fid_kid(x, x.copy(), "test-extractor", kid_subsets=5, kid_subset_size=100)
    assert result["extractor"] == "test-extractor" and result["fid"] == pytest.approx(0.0, abs=1e-9)


# --------------------------------------------------------------------------------------------
# IS, LPIPS, extractors


def test_inception_score_known_cases():
    uniform = np.full((20, 4), 0.25)
    assert inception_score(uniform, splits=2)["is"] == pytest.approx(1.0)
    confident = np.eye(4)[np.arange(20) % 4]
    result = inception_score(confident, splits=1, extractor="x")
    assert result["is"] == pytest.approx(4.0, rel=1e-6) and result["extractor"] == "x"
    with pytest.raises(InputError, match="probabilities"):
        inception_score(np.ones((3, 2)))


def test_lge_encoder_extractor_views_and_lpips():
    torch.manual_seed(0)
    ext = encoder_extractor(LgeEncoder(channels=(4, 8, 8)))
    x = torch.as_tensor(_images(3, 4))
    x = torch.nn.functional.interpolate(x, size=128)
    assert ext.pooled(x).shape == (3, 8)
    probs = ext.probabilities(x)
    assert probs.shape == (3, 3) and torch.allclose(probs.sum(1), torch.ones(3))
    assert [m.shape[1] for m in ext.feature_maps(x)] == [4, 8, 8]
    d = lpips_distance(x, x.clone(), ext)
    assert torch.equal(d, torch.zeros(3, dtype=torch.float64))
    assert float(lpips_distance(x, x.flip(-1), ext).min()) > 0
    result = lpips(x.numpy(), x.numpy(), ext)
    assert result["lpips"] == 0.0 and result["extractor"] == ext.name and not result["calibrated"]
    assert extract(ext, x.numpy(), "pooled", batch_size=2).shape == (3, 8)


def test_alexnet_lpips_with_calibration_weights():
    torch.manual_seed(0)
    weights = [torch.rand(1, c, 1, 1) for c in (64, 192, 384, 256, 256)]
    ext = FeatureExtractor("alexnet@test+lpips", "alexnet", AlexNet(), lpips_weights=weights)
    x = torch.rand(2, 1, 64, 64) * 2 - 1
    assert [m.shape[1] for m in ext.feature_maps(x)] == [64, 192, 384, 256, 256]
    assert float(lpips_distance(x, x, ext).abs().max()) == 0.0
    assert float(lpips_distance(x, -x, ext).min()) > 0


def test_inception_weights_from_a_local_file(tmp_path):
    torch.manual_seed(0)
    net = InceptionV3(num_classes=1008, fid=True)
    keys = net.state_dict().keys()
    for key in (
        "Conv2d_1a_3x3.conv.weight",
        "Mixed_5b.branch_pool.bn.running_var",
        "Mixed_7c.branch3x3dbl_3b.conv.weight",
        "fc.weight",
    ):
        assert key in keys  # torchvision's names
    state = dict(net.state_dict())
    state["AuxLogits.fc.weight"] = torch.zeros(1008, 768)  # ignored, as torchvision files carry it
    torch.save(state, tmp_path / "pt_inception.pth")
    ext = load_extractor("inception", tmp_path / "pt_inception.pth")
    assert ext.name.startswith("inception-v3-fid@")
    x = torch.rand(1, 1, 128, 128) * 2 - 1
    assert ext.pooled(x).shape == (1, 2048)
    torch.save({"features.0.weight": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(InputError, match="not Inception-v3 weights"):
        load_extractor("inception", tmp_path / "other.pth")


def test_extractor_errors(tmp_path, monkeypatch):
    with pytest.raises(InputError, match="never downloaded"):
        load_extractor("inception")
    with pytest.raises(InputError, match="lge-encoder, inception, alexnet"):
        load_extractor("vgg")
    monkeypatch.setenv("CARDIAC_MI_GAN_ENCODER", str(tmp_path / "none.pt"))
    with pytest.raises(InputError, match="cardiac-mi gan encoder"):
        load_extractor()
    with pytest.raises(InputError, match="not found"):
        load_extractor("alexnet", tmp_path / "alexnet.pth")
    generator = create_model("pix2pix", TINY).save(tmp_path / "p2p.pt")
    with pytest.raises(InputError, match="expected kind 'encoder'"):
        load_extractor("lge-encoder", generator)
    encoder = save_encoder(tmp_path / "enc.pt", LgeEncoder(channels=(4, 8)), {"channels": [4, 8], "num_classes": 3})
    with pytest.raises(InputError, match="not a GAN model checkpoint"):
        load_model(encoder)


# --------------------------------------------------------------------------------------------
# the whole command's function


def test_compute_metrics_identical_sets(tmp_path, lge_dir, monkeypatch):
    torch.manual_seed(0)
    encoder = save_encoder(
        tmp_path / "enc.pt", LgeEncoder(channels=(4, 8, 8)), {"channels": [4, 8, 8], "num_classes": 3}
    )
    monkeypatch.setenv("CARDIAC_MI_GAN_ENCODER", str(encoder))
    result = compute_metrics(lge_dir, lge_dir, kid_subsets=5)
    assert result["extractor"].startswith("lge-encoder@") and result["lpips_extractor"] == result["extractor"]
    assert result["fid"] == pytest.approx(0.0, abs=1e-6) and abs(result["kid"]) < 1e-3
    assert result["psnr"] == float("inf") and result["ssim"] == pytest.approx(1.0) and result["lpips"] == 0.0
    assert result["paired"] == 12 and 1.0 <= result["is"] <= 3.0
    assert result["psnr_lv"] == float("inf") and result["ssim_lv"] == pytest.approx(1.0)
    names, images = load_image_set(lge_dir, "val")
    assert len(names) == 4 and images.shape == (4, 1, 128, 128) and images.min() >= -1 and images.max() <= 1
    other = compute_metrics(lge_dir, lge_dir, split="val", fake_split="train", kid_subsets=5)
    assert other["paired"] == 0 and other["psnr"] is None and other["fid"] > 0
    with pytest.raises(InputError, match="no .npy images"):
        compute_metrics(tmp_path, lge_dir)

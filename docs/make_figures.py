"""Regenerate the README figures from sample-data/ (run with the project's venv)."""

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from lgemri.geometry import lv_centre  # noqa: E402
from lgemri.preview import OUTLINE_COLOURS, save_montage  # noqa: E402
from lgemri.volume import read_nifti  # noqa: E402


def case(cid):
    root = f"sample-data/emidec/{cid}"
    return read_nifti(f"{root}/Images/{cid}.nii.gz"), read_nifti(f"{root}/Contours/{cid}.nii.gz")


def lv_zoom(cids, path, half_mm=50.0):
    fig, ax = plt.subplots(len(cids), 4, figsize=(10, 2.6 * len(cids)))
    for r, cid in enumerate(cids):
        im, lab = case(cid)
        a, lbl = im.array, lab.array
        ci, cj = lv_centre(lbl)
        h = int(half_mm / im.spacing[0])
        ks = [k for k in range(a.shape[2]) if (lbl[:, :, k] >= 3).any()]
        for j, k in enumerate((ks[0], ks[len(ks) // 2])):
            sl = (slice(int(ci) - h, int(ci) + h), slice(int(cj) - h, int(cj) + h), k)
            lo, hi = np.percentile(a[sl], [0.5, 99.7])
            for col in (2 * j, 2 * j + 1):
                ax[r, col].imshow(a[sl].T, cmap="gray", vmin=lo, vmax=hi)
            for value, colour in OUTLINE_COLOURS.items():
                if (lbl[sl] == value).any():
                    ax[r, 2 * j + 1].contour((lbl[sl] == value).T, levels=[0.5], colors=[colour], linewidths=0.8)
            ax[r, 2 * j].set_title(f"{cid} slice {k}", fontsize=8)
            ax[r, 2 * j + 1].set_title("cavity / myocardium / infarct / no-reflow", fontsize=6)
    for x in ax.ravel():
        x.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=80)


if __name__ == "__main__":
    image, label = case("Case_P001")
    save_montage(image, "docs/images/phantom_Case_P001.png", label, title="Case_P001 (sample-data), label outlines")
    lv_zoom(["Case_P001", "Case_P004"], "docs/images/phantom_lv_zoom.png")

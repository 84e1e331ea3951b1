"""AHA 17-segment bullseye (polar map) plots of per-segment values.

The layout is the standard display of Cerqueira et al. (Circulation 105:539-542, 2002): basal
segments (1-6) on the outer ring, mid (7-12) inside it, apical (13-16) inside that and the apex
(17) in the centre; anterior at the top and the septum on the left, so that segment 1 (basal
anterior) is at 12 o'clock and numbers run counter-clockwise (2 anteroseptal upper left ...
6 anterolateral upper right). Apical segments are 90 degrees wide (13 top, 14 septal left,
15 bottom, 16 lateral right). Segments without myocardium in the label are grey and hatched.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib import colors as mcolors  # noqa: E402
from matplotlib.patches import Wedge  # noqa: E402

from ..atomic import write_bytes  # noqa: E402

__all__ = ["SEGMENT_GEOMETRY", "draw_bullseye", "bullseye_figure", "bullseye_png", "save_bullseye", "segment_values"]

_RING6_START = 60.0  # segment 1 spans 60-120 degrees (counter-clockwise from 3 o'clock)


def _segment_geometry() -> dict[int, tuple[float, float, float, float]]:
    """Segment -> (inner radius, outer radius, start angle, end angle), radii of a unit bullseye."""
    geometry = {}
    for first, r0, r1 in ((1, 0.75, 1.0), (7, 0.5, 0.75)):
        for n in range(6):
            start = _RING6_START + 60.0 * n
            geometry[first + n] = (r0, r1, start, start + 60.0)
    for n in range(4):
        start = 45.0 + 90.0 * n
        geometry[13 + n] = (0.25, 0.5, start, start + 90.0)
    geometry[17] = (0.0, 0.25, 0.0, 360.0)
    return geometry


#: Segment -> (inner radius, outer radius, start angle, end angle) in the plot; angles in degrees
#: counter-clockwise from 3 o'clock.
SEGMENT_GEOMETRY = _segment_geometry()


def segment_values(quantification: dict, field: str) -> dict[int, float | None]:
    """``{segment: value}`` of one per-segment field of :func:`lgemri.quantification.quantify`'s result."""
    return {row["segment"]: row[field] for row in quantification["segments"]}


def draw_bullseye(
    ax: plt.Axes,
    values: Mapping[int, float | None],
    *,
    title: str = "",
    cmap: str = "YlOrRd",
    vmin: float = 0.0,
    vmax: float = 100.0,
    unit: str = "%",
    outline: Mapping[int, bool] | None = None,
    colorbar: bool = True,
) -> None:
    """Draw a 17-segment bullseye of ``values`` (None: no myocardium) into ``ax``.

    Args:
        ax: the axes to draw into (made square, axes hidden).
        values: segment (1-17) -> value; missing or None segments are grey and hatched.
        title: the axes title.
        cmap, vmin, vmax: the colour scale.
        unit: appended to the printed values and to the colour bar label.
        outline: segments to outline in bold (e.g. the infarcted ones).
        colorbar: add a colour bar beside the axes.
    """
    colormap = plt.get_cmap(cmap)
    norm = mcolors.Normalize(vmin=vmin, vmax=vmax)
    for segment, (r0, r1, start, end) in SEGMENT_GEOMETRY.items():
        value = values.get(segment)
        bold = bool(outline and outline.get(segment))
        face = "#d9d9d9" if value is None else colormap(norm(value))
        ax.add_patch(
            Wedge(
                (0, 0),
                r1,
                start,
                end,
                width=r1 - r0 if r0 > 0 else None,
                facecolor=face,
                edgecolor="black",
                linewidth=2.2 if bold else 0.8,
                hatch="//" if value is None else None,
                zorder=3 if bold else 2,
            )
        )
        if segment == 17:
            x, y = 0.0, 0.0
        else:
            mid = math.radians((start + end) / 2.0)
            radius = (r0 + r1) / 2.0
            x, y = radius * math.cos(mid), radius * math.sin(mid)
        text = f"{segment}\n{'n/a' if value is None else f'{value:.0f}{unit}'}"
        dark = value is not None and norm(value) > 0.6
        ax.text(x, y, text, ha="center", va="center", fontsize=6.5, color="white" if dark else "black", zorder=4)
    ax.set_xlim(-1.08, 1.08)
    ax.set_ylim(-1.08, 1.08)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.text(0, 1.06, "anterior", ha="center", va="bottom", fontsize=6.5)
    ax.text(-1.06, 0, "septal", ha="right", va="center", fontsize=6.5, rotation=90)
    ax.text(1.06, 0, "lateral", ha="left", va="center", fontsize=6.5, rotation=-90)
    ax.text(0, -1.06, "inferior", ha="center", va="top", fontsize=6.5)
    if title:
        ax.set_title(title, fontsize=9, pad=12)
    if colorbar:
        mappable = plt.cm.ScalarMappable(norm=norm, cmap=colormap)
        bar = ax.figure.colorbar(mappable, ax=ax, fraction=0.046, pad=0.08)
        bar.set_label(unit, fontsize=7)
        bar.ax.tick_params(labelsize=6.5)


def bullseye_figure(quantification: dict, *, figsize: tuple[float, float] = (8.0, 3.9)) -> plt.Figure:
    """A figure with two bullseyes: mean transmurality and infarct % of each segment's myocardium.

    Infarcted segments are outlined in bold.
    """
    fig, (left, right) = plt.subplots(1, 2, figsize=figsize)
    infarcted = {row["segment"]: row["infarcted"] for row in quantification["segments"]}
    draw_bullseye(
        left,
        segment_values(quantification, "transmurality_mean_percent"),
        title="Transmural extent (mean of radial chords)",
        outline=infarcted,
    )
    draw_bullseye(
        right,
        segment_values(quantification, "infarct_percent"),
        title="Infarct % of segment myocardium",
        cmap="Reds",
        outline=infarcted,
    )
    threshold = quantification["parameters"]["viability_threshold_percent"]
    fig.text(
        0.5,
        0.07,
        f"Bold outline: infarcted segment (>= {quantification['parameters']['infarcted_segment_min_percent']:g} % "
        f"infarct); viable when mean transmurality <= {threshold:g} %",
        ha="center",
        fontsize=7,
    )
    return fig


def bullseye_png(quantification: dict, dpi: int = 150) -> bytes:
    """The PNG bytes of :func:`bullseye_figure`."""
    fig = bullseye_figure(quantification)
    try:
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    finally:
        plt.close(fig)
    return buffer.getvalue()


def save_bullseye(quantification: dict, path: str | os.PathLike, dpi: int = 150) -> Path:
    """Write the two-bullseye PNG to ``path`` atomically; returns the path."""
    path = Path(path)
    write_bytes(path, bullseye_png(quantification, dpi))
    return path

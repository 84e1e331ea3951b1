"""The one-page clinician's report, as self-contained HTML and as PDF (matplotlib, no other dependency).

Both show the same content: patient and study identifiers when known, the measures (LV mass,
infarct and no-reflow size, transmurality, infarcted and non-viable segments, normal or
pathological), the classical threshold methods next to the segmentation's figure, the two AHA
bullseyes, the methods and thresholds used, and the research-use disclaimer. The HTML adds the
17-segment table.
"""

from __future__ import annotations

import base64
import html
import io
import os
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.backends.backend_pdf import PdfPages  # noqa: E402

from ..atomic import write_bytes, write_text  # noqa: E402
from .bullseye import bullseye_png, draw_bullseye, segment_values  # noqa: E402

__all__ = [
    "DISCLAIMER",
    "TITLE",
    "summary_rows",
    "classical_rows",
    "segment_rows",
    "method_lines",
    "render_html",
    "write_html",
    "page_figure",
    "pdf_bytes",
    "write_pdf",
]

TITLE = "LGE MRI myocardial infarct quantification"
DISCLAIMER = (
    "For research use only. Not a medical device; not for diagnosis or treatment decisions. "
    "Figures come from an automatic or user-supplied segmentation and must be checked by a qualified reader."
)


def _num(value: float | None, unit: str = "", digits: int = 1) -> str:
    if value is None:
        return "n/a"
    return f"{value:.{digits}f}{(' ' + unit) if unit else ''}"


def _segments(numbers: list[int]) -> str:
    return ", ".join(str(n) for n in numbers) if numbers else "none"


def _person(name: str | None) -> str | None:
    """A DICOM person name (Family^Given^...) for reading."""
    return " ".join(part for part in name.split("^") if part) if name else name


def _identifiers(report: dict) -> list[tuple[str, str]]:
    study = report["study"]
    patient = " / ".join(x for x in (_person(study.get("patient_name")), study.get("patient_id")) if x)
    rows = [
        ("Patient", patient or "not given"),
        ("Study", study.get("study_uid") or "not given (image without DICOM study)"),
        ("Study date", study.get("study_date") or "n/a"),
        ("Image", report["inputs"]["image"]),
        ("Label", report["inputs"]["label"]),
        ("Created", f"{report['created']} by {report['software']['name']} {report['software']['version']}"),
    ]
    return rows


def summary_rows(report: dict) -> list[tuple[str, str]]:
    """(measure, value) rows of the main table."""
    q = report["quantification"]
    lv, scar, mvo, tm = q["lv"], q["infarct"], q["no_reflow"], q["transmurality"]
    lv_amount = f"{_num(lv['myocardium_volume_ml'], 'ml')} / {_num(lv['myocardium_mass_g'], 'g')}"
    rows = [
        ("Classification", q["classification"]["label"]),
        ("LV myocardial volume / mass", lv_amount),
    ]
    if scar["present"]:
        rows += [
            ("Infarct (incl. MVO) volume / mass", f"{_num(scar['volume_ml'], 'ml')} / {_num(scar['mass_g'], 'g')}"),
            ("Infarct size", f"{_num(scar['percent_lv'], '% of LV myocardium')}"),
        ]
    else:
        rows.append(("Infarct", "none found"))
    if mvo["present"]:
        rows.append(
            (
                "Microvascular obstruction (no-reflow)",
                f"{_num(mvo['volume_ml'], 'ml')}, {_num(mvo['percent_lv'])} % of LV, "
                f"{_num(mvo['percent_infarct'])} % of infarct",
            )
        )
    else:
        rows.append(("Microvascular obstruction (no-reflow)", "none found"))
    if scar["present"]:
        rows.append(
            (
                "Transmural extent (infarcted chords)",
                f"mean {_num(tm['mean_infarcted_rays_percent'])} %, max {_num(tm['max_percent'])} %",
            )
        )
    rows += [
        ("Infarcted AHA segments", f"{q['n_infarcted_segments']}: {_segments(q['infarcted_segments'])}"),
        (
            f"Non-viable segments (transmurality > {q['parameters']['viability_threshold_percent']:g} %)",
            _segments(q["nonviable_segments"]),
        ),
    ]
    territories = [
        f"{name} {t['infarct_percent']:.0f} %" for name, t in q["territories"].items() if t["infarcted_segments"]
    ]
    if territories:
        rows.append(("Territory (infarct % of its myocardium)", ", ".join(territories)))
    return rows


def classical_rows(report: dict) -> list[tuple[str, str, str, str]]:
    """(method, rule, volume, % LV) rows: the segmentation first, then n-SD and FWHM."""
    classical = report["quantification"]["classical"]
    if not classical:
        return []
    names = {"label": "Segmentation (labels 3+4)"}
    return [
        (names.get(m["name"], m["name"]), m["rule"], _num(m["volume_ml"], "ml"), _num(m["percent_lv"], "%"))
        for m in classical["methods"]
    ]


def segment_rows(report: dict) -> list[tuple[str, ...]]:
    """One row per AHA segment: number, name, infarct %, mean and max transmurality, bin, viability."""
    rows = []
    for s in report["quantification"]["segments"]:
        viable = {True: "viable", False: "non-viable", None: "n/a"}[s["viable"]]
        rows.append(
            (
                str(s["segment"]),
                s["name"],
                _num(s["infarct_percent"]),
                _num(s["transmurality_mean_percent"]),
                _num(s["transmurality_max_percent"]),
                s["transmurality_bin"] or "n/a",
                viable + (" (infarcted)" if s["infarcted"] else ""),
            )
        )
    return rows


def method_lines(report: dict) -> list[str]:
    """Plain sentences on the methods and thresholds used."""
    q = report["quantification"]
    p = q["parameters"]
    lines = [
        "Infarct = labels 3 (infarct) + 4 (no-reflow), as in EMIDEC; mass = volume x "
        f"{p['myocardium_density_g_per_ml']:g} g/ml; volumes by voxel counting (slice-to-slice distance).",
        f"Transmurality: {p['transmurality_method']}. Bins 0 / 1-25 / 26-50 / 51-75 / 76-100 %.",
        f"Viability: segment viable when its mean transmural extent <= {p['viability_threshold_percent']:g} % "
        "(chronic convention 50 %, acute 75 %; Kim et al., NEJM 2000).",
        f"Infarcted segment: infarct >= {p['infarcted_segment_min_percent']:g} % of its myocardium. "
        f"{q['classification']['rule'].capitalize()}.",
        f"AHA 17 segments (Cerqueira et al., Circulation 2002), anterior RV insertion at {p['rv_insertion_deg']:g} deg "
        f"({p['rv_insertion_source']}), slice 0 {'basal' if p['base_first'] else 'apical'} "
        f"({p.get('slice_order_source', 'given')}).",
    ]
    if q["classical"]:
        remote = q["classical"]["remote"]["method"]
        lines.append(f"Classical methods (Flett et al., JACC Cardiovasc Imaging 2011): remote = {remote}.")
    lines += [f"Note: {w}" for w in q["warnings"]]
    return lines


_CSS = """
body { font-family: Helvetica, Arial, sans-serif; font-size: 13px; margin: 24px auto; max-width: 900px; color: #111; }
h1 { font-size: 20px; margin-bottom: 4px; } h2 { font-size: 15px; margin: 18px 0 6px; }
table { border-collapse: collapse; width: 100%; } td, th { border: 1px solid #bbb; padding: 3px 6px; text-align: left; }
th { background: #eee; } .ids td:first-child, .measures td:first-child { width: 40%; font-weight: bold; }
.disclaimer { margin-top: 18px; padding: 8px; border: 2px solid #b00; color: #b00; font-weight: bold; }
.pathological { color: #b00; font-weight: bold; } img { max-width: 100%; }
"""


def _table(rows, header=None, cls: str = "") -> str:
    out = [f'<table class="{cls}">'] if cls else ["<table>"]
    if header:
        out.append("<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>")
    for row in rows:
        out.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def render_html(report: dict, bullseye: bytes | None = None) -> str:
    """The report as one self-contained HTML page (the bullseye PNG embedded as a data URI)."""
    if bullseye is None:
        bullseye = bullseye_png(report["quantification"])
    image = base64.b64encode(bullseye).decode("ascii")
    label = report["quantification"]["classification"]["label"]
    classical = classical_rows(report)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(TITLE)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(TITLE)}</h1>",
        f'<p>Study classified as <span class="{label}">{html.escape(label)}</span>.</p>',
        _table(_identifiers(report), cls="ids"),
        "<h2>Measures</h2>",
        _table(summary_rows(report), cls="measures"),
        "<h2>Infarct size by method</h2>",
        _table(classical, header=("Method", "Rule", "Volume", "% of LV myocardium"))
        if classical
        else "<p>Classical methods not computed (no image).</p>",
        "<h2>AHA 17-segment bullseye</h2>",
        f'<img alt="AHA bullseye of transmurality and infarct per segment" src="data:image/png;base64,{image}">',
        "<h2>Segments</h2>",
        _table(
            segment_rows(report),
            header=("Seg.", "Name", "Infarct %", "Transmurality mean %", "max %", "Bin", "Viability"),
        ),
        "<h2>Methods</h2>",
        "<ul>" + "".join(f"<li>{html.escape(line)}</li>" for line in method_lines(report)) + "</ul>",
        f'<p class="disclaimer">{html.escape(DISCLAIMER)}</p>',
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def write_html(report: dict, path: str | os.PathLike, bullseye: bytes | None = None) -> Path:
    """Write :func:`render_html` to ``path`` atomically; returns the path."""
    path = Path(path)
    write_text(path, render_html(report, bullseye))
    return path


def _draw_table(ax, rows, col_widths, header=None, fontsize=7.5) -> None:
    ax.axis("off")
    if not rows:
        return
    table = ax.table(
        cellText=[list(r) for r in rows],
        colLabels=list(header) if header else None,
        colWidths=col_widths,
        cellLoc="left",
        loc="upper left",
    )
    table.auto_set_font_size(False)
    table.set_fontsize(fontsize)
    table.scale(1.0, 1.25)
    for (row, _), cell in table.get_celld().items():
        cell.set_edgecolor("#999999")
        if header and row == 0:
            cell.set_facecolor("#eeeeee")


def page_figure(report: dict) -> plt.Figure:
    """The one-page A4 report as a matplotlib figure (the caller closes it)."""
    q = report["quantification"]
    fig = plt.figure(figsize=(8.27, 11.69))
    fig.text(0.05, 0.965, TITLE, fontsize=15, weight="bold", va="top")
    fig.text(0.05, 0.94, "RESEARCH USE ONLY", fontsize=9, color="#b00000", weight="bold", va="top")
    ids = _identifiers(report)
    _draw_table(fig.add_axes([0.05, 0.80, 0.9, 0.125]), [(k, _short(v, 95)) for k, v in ids], [0.18, 0.82], fontsize=7)
    summary = summary_rows(report)
    _draw_table(fig.add_axes([0.05, 0.62, 0.9, 0.165]), summary, [0.42, 0.58], fontsize=8)
    classical = classical_rows(report)
    if classical:
        fig.text(0.05, 0.582, "Infarct size by method", fontsize=9, weight="bold")
        rows = [(m, _short(r, 78), v, p) for m, r, v, p in classical]
        header = ("Method", "Rule", "Volume", "% LV")
        _draw_table(fig.add_axes([0.05, 0.435, 0.9, 0.14]), rows, [0.2, 0.56, 0.1, 0.14], header, 6.5)
    infarcted = {row["segment"]: row["infarcted"] for row in q["segments"]}
    left = fig.add_axes([0.03, 0.215, 0.42, 0.2])
    right = fig.add_axes([0.52, 0.215, 0.42, 0.2])
    transmurality = segment_values(q, "transmurality_mean_percent")
    draw_bullseye(left, transmurality, title="Transmural extent (mean %)", outline=infarcted)
    infarct = segment_values(q, "infarct_percent")
    draw_bullseye(right, infarct, title="Infarct % of segment", cmap="Reds", outline=infarcted)
    y = 0.19
    fig.text(0.05, y, "Methods (bold outline in the bullseyes: infarcted segment)", fontsize=8, weight="bold", va="top")
    for line in method_lines(report):
        for chunk in _wrap(line, 150):
            y -= 0.012
            fig.text(0.05, y, chunk, fontsize=6.3, va="top")
    fig.text(0.05, 0.015, DISCLAIMER, fontsize=6.5, color="#b00000", va="bottom", wrap=True)
    return fig


def pdf_bytes(report: dict) -> bytes:
    """The one-page A4 PDF report (:func:`page_figure` through matplotlib's PdfPages)."""
    fig = page_figure(report)
    try:
        buffer = io.BytesIO()
        metadata = {"Title": TITLE, "Creator": f"cardiac_mi {report['software']['version']}"}
        with PdfPages(buffer, metadata=metadata) as pdf:
            pdf.savefig(fig)
    finally:
        plt.close(fig)
    return buffer.getvalue()


def write_pdf(report: dict, path: str | os.PathLike) -> Path:
    """Write :func:`pdf_bytes` to ``path`` atomically; returns the path."""
    path = Path(path)
    write_bytes(path, pdf_bytes(report))
    return path


def _short(text: str, width: int) -> str:
    text = str(text)
    return text if len(text) <= width else text[: width - 1] + "…"


def _wrap(text: str, width: int) -> list[str]:
    return textwrap.wrap(text, width) or [""]

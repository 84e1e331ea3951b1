"""The ``simulate`` sub-command (cardiac_mi.commands.simulate.register on a fresh parser) and the realism report."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from cardiac_mi.commands.simulate import register
from lgemri.errors import InputError

SAMPLE = Path(__file__).resolve().parents[2] / "sample-data"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def run(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="cardiac-mi")
    parser.add_argument("-q", "--quiet", action="store_true")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["-q", "simulate", *argv])
    args.func(args)
    return args


def test_simulate_then_report(tmp_path):
    out = tmp_path / "sim"
    run(
        "--mode",
        "synthetic",
        "--n",
        "4",
        "--seed",
        "1",
        "--out",
        str(out),
        "--territory",
        "LCx",
        "--transmurality",
        "60,100",
    )
    assert (out / "manifest.csv").is_file()
    run("--report", str(out), "--reference", str(SAMPLE / "phantom.json"), "--reference", str(SAMPLE / "emidec"))
    summary = json.loads((out / "report" / "summary.json").read_text())
    assert (out / "report" / "realism.png").read_bytes().startswith(PNG_SIGNATURE)
    assert summary["simulated"]["cases"] == 4 and summary["simulated"]["territory_share"]["LCX"] == 1.0
    phantom, emidec = summary["references"]
    assert phantom["cases"] == 4 and phantom["infarcted"] == 3
    assert "ks_distance" in phantom["comparison"]["infarct_pct"]
    assert emidec["kind"].startswith("EMIDEC layout")
    assert summary["emidec_literature"]["status"] == "approximate, from the literature"


def test_report_from_a_phantom_json_alone(tmp_path):
    out = tmp_path / "sim"
    run("--n", "3", "--out", str(out), "--shard", "1/2")
    (tmp_path / "ref").mkdir()
    (tmp_path / "ref" / "phantom.json").write_bytes((SAMPLE / "phantom.json").read_bytes())
    run("--report", str(out), "--out", str(tmp_path / "rep"), "--reference", str(tmp_path / "ref"))
    summary = json.loads((tmp_path / "rep" / "summary.json").read_text())
    assert summary["simulated"]["cases"] == 1
    assert "depth parameter" in summary["references"][0]["kind"]


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["--n", "2"], "--out"),
        (["--out", "x"], "--n"),
        (["--n", "2", "--out", "x", "--shard", "3/2"], "shard"),
        (["--n", "2", "--out", "x", "--territory", "LM"], "territory"),
        (["--n", "2", "--out", "x", "--transmurality", "150"], "transmurality"),
        (["--n", "2", "--out", "x", "--infarct-size", "-5"], "infarct size"),
        (["--n", "2", "--out", "x", "--infarct-size", "a,b"], "--infarct-size"),
        (["--n", "2", "--out", "x", "--segments", "7,x"], "--segments"),
        (["--n", "-1", "--out", "x"], "--n"),
        (["--n", "2", "--out", "x", "--mode", "fusion"], "--recipients"),
        (["--report", "nowhere"], "no simulator manifest"),
        (["--n", "2", "--out", "x", "--reference", "y"], "--report"),
    ],
)
def test_bad_input_raises_input_error(tmp_path, monkeypatch, argv, match):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError, match=match):
        run(*argv)
    assert not (tmp_path / "x" / "manifest.csv").exists()


def test_unknown_mode_is_an_argparse_error():
    with pytest.raises(SystemExit):
        run("--mode", "magic", "--n", "1", "--out", "x")

"""The one flag set that names a DICOMweb store (cardiac_mi.commands.options): the same flags and
environment variables for upload, pacs and report; --studies as a hidden alias of --store."""

from __future__ import annotations

import argparse

import pytest

from cardiac_mi.cli import build_parser
from cardiac_mi.commands.options import (
    PASSWORD_ENV,
    STORE_ENV,
    URL_ENV,
    USER_ENV,
    add_store_options,
    store_requested,
    store_settings,
)
from lgemri.errors import InputError

URL = "http://pacs:8042/dicom-web"
EMBEDDED = ("http://127.0.0.1:8042/dicom-web", "cardiacmi", "generated")


@pytest.fixture(autouse=True)
def _no_store_environment(monkeypatch):
    for name in (STORE_ENV, URL_ENV, USER_ENV, PASSWORD_ENV):
        monkeypatch.delenv(name, raising=False)


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_store_options(parser)
    return parser.parse_args(argv)


def test_store_and_its_hidden_alias():
    assert store_settings(_args("--store", URL, "--user", "u", "--password", "p")) == (URL, "u", "p")
    assert store_settings(_args("--studies", URL)) == (URL, None, None)
    parser = argparse.ArgumentParser()
    add_store_options(parser)
    assert "--studies" not in parser.format_help() and "--store" in parser.format_help()


def test_the_environment_names_the_store(monkeypatch):
    monkeypatch.setenv(URL_ENV, "http://old:8042/dicom-web")
    assert store_settings(_args())[0] == "http://old:8042/dicom-web"
    monkeypatch.setenv(STORE_ENV, URL)
    monkeypatch.setenv(USER_ENV, "u")
    monkeypatch.setenv(PASSWORD_ENV, "p")
    assert store_settings(_args()) == (URL, "u", "p")
    assert store_settings(_args("--store")) == (URL, "u", "p")
    assert store_settings(_args("--store", "http://other/dicom-web"))[0] == "http://other/dicom-web"


def test_half_given_credentials_are_refused():
    with pytest.raises(InputError, match="give both --user and --password"):
        store_settings(_args("--store", URL, "--user", "u"))
    with pytest.raises(InputError, match="--user needs --password"):
        store_settings(_args("--user", "u"), default=lambda: EMBEDDED)


def test_without_a_url_the_default_store_and_its_credentials():
    assert store_settings(_args(), default=lambda: EMBEDDED) == EMBEDDED
    assert store_settings(_args("--user", "me", "--password", "pw"), default=lambda: EMBEDDED) == (
        EMBEDDED[0],
        "me",
        "pw",
    )


def test_no_embedded_orthanc_names_every_way_to_name_a_store(tmp_path):
    with pytest.raises(InputError, match=f"is not running: start it with `cardiac-mi serve --state.*{URL_ENV}"):
        store_settings(_args("--state", str(tmp_path)))


def test_upload_pacs_and_report_share_the_flags():
    parser = build_parser()
    base = {
        "upload": ["upload", "x.dcm"],
        "report": ["report", "--image", "a", "--label", "b", "--out", "c"],
        "pacs": ["pacs", "retrieve", "--patient-id", "P1"],
    }
    for command, argv in base.items():
        try:
            args = parser.parse_args([*argv, "--studies", URL, "--user", "u", "--password", "p", "--state", "s"])
        except SystemExit:
            pytest.fail(f"{command} does not take the store flags")
        assert (args.store, args.user, args.password, str(args.state)) == (URL, "u", "p", "s"), command
    report = parser.parse_args(base["report"])
    assert not store_requested(report), "report stores only when asked"
    assert store_requested(parser.parse_args([*base["report"], "--store"]))

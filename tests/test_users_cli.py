"""``cardiac-mi users`` (issue 16, point 4): accounts of a state folder; bad input exits 2 with one line.

The command runs through ``cardiac_mi.cli.main`` on a temporary state folder; passwords come on standard
input (``--password-stdin``), as a script gives them.
"""

from __future__ import annotations

import io
import json
import stat
import sys

import pytest

from cardiac_mi.auth import AuthStore, check_password
from cardiac_mi.cli import main


@pytest.fixture
def state(tmp_path):
    folder = tmp_path / "state"
    folder.mkdir()
    return folder


def run(argv, capsys, monkeypatch, stdin: str = "") -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    code = main(["users", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def fails(argv, capsys, monkeypatch, stdin: str = "") -> str:
    """It must exit 2 with one error line on stderr and no traceback; returns that line."""
    code, _, err = run(argv, capsys, monkeypatch, stdin)
    lines = [line for line in err.strip().splitlines() if line.startswith("cardiac-mi users: error:")]
    assert code == 2, err
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_add_list_passwd_roles_token_remove(state, capsys, monkeypatch, restore_logging):
    code, out, _ = run(
        ["add", "anna", "--role", "annotator", "--password-stdin", "--state", str(state)],
        capsys,
        monkeypatch,
        "a-long-password\n",
    )
    assert code == 0 and "added anna (roles: annotator)" in out
    assert "created the account 'admin'" in out  # the first account of a fresh state folder: admin comes too
    store = AuthStore.of_state(state)
    assert store.verify("anna", "a-long-password").roles == ("annotator",)
    assert store.verify("anna", "a-wrong-password") is None

    code, out, _ = run(["list", "--state", str(state)], capsys, monkeypatch)
    assert code == 0 and out.splitlines() == ["user   roles", "admin  admin", "anna   annotator"]

    code, out, _ = run(
        ["passwd", "anna", "--password-stdin", "--state", str(state)], capsys, monkeypatch, "another-password\n"
    )
    assert code == 0 and store.verify("anna", "another-password") and not store.verify("anna", "a-long-password")

    code, out, _ = run(["roles", "anna", "annotator,reviewer", "--state", str(state)], capsys, monkeypatch)
    assert code == 0 and store.account("anna").roles == ("annotator", "reviewer")

    code, out, _ = run(["token", "anna", "--minutes", "5", "--state", str(state)], capsys, monkeypatch)
    claims = store.decode(out.strip())
    assert code == 0 and claims["sub"] == "anna" and claims["exp"] - claims["iat"] == 300

    code, out, _ = run(["remove", "anna", "--state", str(state)], capsys, monkeypatch)
    assert code == 0 and store.account("anna") is None


def test_without_a_password_one_is_generated_and_shown_once(state, capsys, monkeypatch, restore_logging):
    code, out, _ = run(["add", "rita", "--role", "reviewer", "--state", str(state)], capsys, monkeypatch)
    assert code == 0
    shown = [line for line in out.splitlines() if line.startswith("password of rita")]
    assert len(shown) == 1
    password = shown[0].rsplit(" ", 1)[1]
    assert AuthStore.of_state(state).verify("rita", password) is not None


def test_files_are_private_and_passwords_hashed(state, capsys, monkeypatch, restore_logging):
    run(
        ["add", "anna", "--role", "annotator", "--password-stdin", "--state", str(state)],
        capsys,
        monkeypatch,
        "a-long-password\n",
    )
    folder = state / "auth"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for path in folder.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    text = (folder / "users.json").read_text()
    assert "a-long-password" not in text
    stored = json.loads(text)["users"]["anna"]["password"]
    assert stored.startswith("scrypt$16384$8$1$") and check_password("a-long-password", stored)
    admin = (folder / "admin-password").read_text().strip()
    assert admin not in text and AuthStore(folder).verify("admin", admin) is not None
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_a_new_admin_password_removes_the_generated_one(state, capsys, monkeypatch, restore_logging):
    store = AuthStore.of_state(state)
    assert store.ensure() is not None and store.admin_password_path.exists()
    assert store.ensure() is None  # made once per state folder
    code, _, _ = run(
        ["passwd", "admin", "--password-stdin", "--state", str(state)], capsys, monkeypatch, "the-new-admin-password\n"
    )
    assert code == 0 and not store.admin_password_path.exists()
    assert store.verify("admin", "the-new-admin-password") is not None


BAD = [
    (["add", "bob", "--role", "boss"], "", "roles boss: expected one or more of admin, annotator, reviewer"),
    (["add", "bo b", "--role", "reviewer"], "", "user name 'bo b'"),
    (["add", "../x", "--role", "reviewer"], "", "user name '../x'"),
    (["add", "bob", "--role", "reviewer", "--password-stdin"], "short\n", "at least 8 characters"),
    (["add", "bob", "--role", "reviewer", "--password-stdin"], "\n", "no password on standard input"),
    (["add", "admin", "--role", "reviewer", "--password-stdin"], "long-enough-1\n", "exists already"),
    (["remove", "nobody"], "", "no account 'nobody'"),
    (["remove", "admin"], "", "last admin account"),
    (["roles", "admin", "reviewer"], "", "last admin account"),
    (["roles", "admin", ""], "", "expected one or more of"),
    (["passwd", "nobody", "--password-stdin"], "long-enough-1\n", "no account 'nobody'"),
    (["token", "admin", "--minutes", "0"], "", "--minutes 0"),
    (["token", "nobody"], "", "no account 'nobody'"),
]


@pytest.mark.parametrize("argv, stdin, problem", BAD, ids=[" ".join(a) for a, _, _ in BAD])
def test_bad_input_exits_2_with_one_line(state, argv, stdin, problem, capsys, monkeypatch, restore_logging):
    AuthStore.of_state(state).ensure()
    before = (state / "auth" / "users.json").read_bytes()
    line = fails([*argv, "--state", str(state)], capsys, monkeypatch, stdin)
    assert problem in line, line
    assert (state / "auth" / "users.json").read_bytes() == before  # nothing changed


def test_no_state_folder_or_no_accounts_exits_2(tmp_path, capsys, monkeypatch, restore_logging):
    line = fails(["list", "--state", str(tmp_path / "none")], capsys, monkeypatch)
    assert "no accounts in" in line and "cardiac-mi serve" in line
    line = fails(["add", "x1", "--role", "reviewer", "--state", str(tmp_path / "none")], capsys, monkeypatch)
    assert "no such state folder" in line
    (tmp_path / "bad" / "auth").mkdir(parents=True)
    (tmp_path / "bad" / "auth" / "users.json").write_text("[1, 2]")
    line = fails(["list", "--state", str(tmp_path / "bad")], capsys, monkeypatch)
    assert "not an account file" in line

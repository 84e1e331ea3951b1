"""The old home of ``cardiac-mi upload`` and the store flags, now :mod:`cardiac_mi.commands.upload` and
:mod:`cardiac_mi.commands.options`; kept while :mod:`cardiac_mi.pacs` imports the flags from here."""

from __future__ import annotations

from cardiac_mi.commands.options import add_store_options as add_store_arguments
from cardiac_mi.commands.options import store_from_args
from cardiac_mi.commands.upload import cmd_upload, register

__all__ = ["register", "cmd_upload", "add_store_arguments", "store_from_args"]

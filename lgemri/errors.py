"""Errors that carry a message meant for the user of a command or a service."""

from __future__ import annotations

__all__ = ["InputError"]


class InputError(ValueError):
    """Bad input named in plain words: the file (or object) and what is wrong with it.

    Command-line tools print the message without a traceback; services answer with it as a
    4xx response.
    """

"""Shared glue for tasks: one-line user errors and the rich console."""

from __future__ import annotations

import functools
from typing import Callable

from invoke.exceptions import Exit
from rich.console import Console

from scripts.config import UserError, load_env

console = Console(stderr=False, highlight=False)


def user_errors(fn: Callable) -> Callable:
    """Load `.env`, then turn a `UserError` into a one-line message and exit 1."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        load_env()
        try:
            return fn(*args, **kwargs)
        except UserError as exc:
            raise Exit(f"error: {exc}", code=1) from None

    return wrapper

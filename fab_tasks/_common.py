"""Shared glue for tasks: one-line user errors and the rich console."""

from __future__ import annotations

import functools
import os
from typing import Callable

import invoke
from invoke import Argument, Task
from invoke.exceptions import Exit, ParseError
from rich.console import Console

from scripts.config import UserError, load_env
from scripts.quiet import quiet_third_party_output

LOG_WIDTH = 160  # columns of tables when the output is a log or a pipe, not a terminal


def make_console() -> Console:
    """Rich's console; in a log or a pipe lines are never wrapped (rich would cut them mid-sentence at
    80 columns) and tables get LOG_WIDTH columns unless COLUMNS says otherwise."""
    console = Console(stderr=False, highlight=False)
    if not console.is_terminal:
        console.soft_wrap = True
        if not os.environ.get("COLUMNS"):
            console.width = LOG_WIDTH
    return console


console = make_console()


FABRIC_SHORT_FLAGS = frozenset("eHiRSt") | {"h"}  # Fabric's own short flags, and -h (help)


class FabTask(Task):
    """A task whose options get a short flag only when it is the option's own first letter (`-c` for
    --config; never `-o` for --method) and not one of Fabric's (-e -H -i -R -S -t) or -h. ``kinds``
    types options whose default is None (invoke infers the type from the default): ``{"max_steps": int}``
    shows and parses ``--max-steps=INT`` and still means "the config's value" when not given."""

    def __init__(self, *args, kinds: dict[str, type] | None = None, **kwargs):
        self.kinds = dict(kinds or {})
        super().__init__(*args, **kwargs)

    def arg_opts(self, name, default, taken_names):
        opts = super().arg_opts(name, default, set(taken_names) | FABRIC_SHORT_FLAGS)
        long_name, *short = opts["names"]
        if short and short[0] != long_name[0]:
            opts["names"] = [long_name]
        if name in self.kinds:
            opts["kind"] = self.kinds[name]
        return opts

    def get_arguments(self, *args, **kwargs):
        arguments = super().get_arguments(*args, **kwargs)
        for argument in arguments:
            argument.__class__ = _TypedArgument
        return arguments


class _TypedArgument(Argument):
    """`--limit abc` is a one-line parse error naming the option, not a ValueError traceback."""

    def set_value(self, value, cast: bool = True) -> None:
        try:
            super().set_value(value, cast)
        except ValueError:
            kind = {int: "an integer", float: "a number"}.get(self.kind, self.kind.__name__)
            raise ParseError(f"error: --{self.names[0]} takes {kind}, not {value!r}") from None


def task(*args, **kwargs):
    """``invoke.task`` with `FabTask` as the class: every task of this project is declared with it."""
    kwargs.setdefault("klass", FabTask)
    return invoke.task(*args, **kwargs)


def user_errors(fn: Callable) -> Callable:
    """Load `.env`, then turn a `UserError` into a one-line message and exit 1."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        load_env()
        quiet_third_party_output()
        try:
            return fn(*args, **kwargs)
        except UserError as exc:
            raise Exit(f"error: {exc}", code=1) from None

    return wrapper

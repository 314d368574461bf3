"""Shared glue for tasks: one-line user errors and the rich console."""

from __future__ import annotations

import functools
import logging
import os
from typing import Callable

from invoke import Task
from invoke.exceptions import Exit
from rich.console import Console

from scripts.config import UserError, load_env

console = Console(stderr=False, highlight=False)


# Import-time chatter of optional GPU libraries (torchao, bitsandbytes kernels, torch's
# pytree notices) and per-load progress bars: noise on every task, never actionable here.
NOISY_LOGGERS = ("torchao", "bitsandbytes", "torch.utils._pytree", "unsloth_zoo.log")


def quiet_third_party_output() -> None:
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


FABRIC_SHORT_FLAGS = frozenset("eHiRSt") | {"h"}  # Fabric's own short flags, and -h (help)


class FabTask(Task):
    """A task whose automatic short flags never take one of Fabric's (-e -H -i -R -S -t) or -h:
    ``@task(klass=FabTask, ...)``. Long flags are unchanged."""

    def arg_opts(self, name, default, taken_names):
        return super().arg_opts(name, default, set(taken_names) | FABRIC_SHORT_FLAGS)


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

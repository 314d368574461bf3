"""Shared glue for tasks: one-line user errors and the rich console."""

from __future__ import annotations

import functools
import logging
import os
from typing import Callable

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

"""Third-party chatter off, one set-up for the tasks, the benches and the demo: call it before
transformers is imported (the environment variables are read at import).

    from scripts.quiet import quiet_third_party_output
    quiet_third_party_output()                 # every fab task (fab_tasks._common.user_errors)
    quiet_third_party_output(libraries=True)   # benches, whose output is a table
"""

from __future__ import annotations

import logging
import os
import warnings

# Import-time chatter of optional GPU libraries (torchao, bitsandbytes kernels, torch's
# pytree notices) and per-load progress bars: noise on every task, never actionable here.
NOISY_LOGGERS = ("torchao", "bitsandbytes", "torch.utils._pytree", "unsloth_zoo.log")
# What the training and generation libraries log below an error: a task shows it, a bench does not.
LIBRARY_LOGGERS = ("transformers", "peft", "trl", "unsloth", "datasets")


def quiet_third_party_output(*, libraries: bool = False) -> None:
    """``libraries``: also the warnings (every category) and the non-error logs of ``LIBRARY_LOGGERS``."""
    for name in NOISY_LOGGERS + (LIBRARY_LOGGERS if libraries else ()):
        logging.getLogger(name).setLevel(logging.ERROR)
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if libraries:
        warnings.filterwarnings("ignore")

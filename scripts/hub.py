"""Loading models and tokenizers by local path or hub id, failing fast offline.

The hub client retries a dead network for most of a minute; a one-second
probe first turns "offline" into an immediate, explainable answer.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from urllib.parse import urlparse


def hub_token() -> str | None:
    return os.environ.get("HUGGINGFACE_TOKEN") or os.environ.get("HF_TOKEN") or None


def hub_reachable(timeout: float = 2.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes"}:
        return False
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or ""
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def load_tokenizer(name_or_path: str):
    """A local dir loads directly; a hub id tries the local cache, then the hub if reachable."""
    from transformers import AutoTokenizer

    if Path(name_or_path).is_dir():
        return AutoTokenizer.from_pretrained(name_or_path)
    try:
        return AutoTokenizer.from_pretrained(name_or_path, local_files_only=True)
    except OSError:
        if not hub_reachable():
            raise OSError(f"{name_or_path} is not cached locally and the hub is unreachable (offline)")
        return AutoTokenizer.from_pretrained(name_or_path, token=hub_token())

"""Hugging Face hub access: the token, and a fast reachability probe.

The hub client retries a dead network for most of a minute; a short probe
first turns "offline" into an immediate, explainable answer. Models and
tokenizers load through ``scripts.model.loading``, which uses both.
"""

from __future__ import annotations

import os
import socket
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

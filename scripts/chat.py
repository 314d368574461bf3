"""The chat format every stage uses: one function builds the messages, one renders them.

    from scripts.chat import encode_chat, prompt_messages
    ids = encode_chat(tokenizer, prompt_messages(record))   # exactly one <bos>, generation prompt added

Training (``scripts.training.data``, which appends the assistant turn),
generation, the export's parity prompts and the backfill all render a prompt
through these two, with the tokenizer's own chat template, so the model sees
at serving time the text it was trained on. Nothing here imports torch or
transformers (training must be able to import Unsloth first).
"""

from __future__ import annotations

from typing import Any


def prompt_messages(record: Any) -> list[dict[str, str]]:
    """The conversation the model sees at training *and* generation time: system prompt + user prompt.
    ``record`` is a ``CleanRecord`` or anything with ``system_prompt`` and ``prompt``."""
    return [
        {"role": "system", "content": record.system_prompt},
        {"role": "user", "content": record.prompt},
    ]


def encode_chat(tokenizer, messages: list[dict], *, add_generation_prompt: bool = True) -> list[int]:
    """Token ids of a chat rendered by the tokenizer's template, with exactly one leading ``<bos>``.

    The template already writes ``<bos>``; tokenising its *text* with the default
    ``add_special_tokens=True`` would add a second one. This renders and
    tokenises in one step (``apply_chat_template(tokenize=True)``) and checks.
    """
    encoded = tokenizer.apply_chat_template(
        messages, add_generation_prompt=add_generation_prompt, tokenize=True, return_dict=True
    )
    ids = list(encoded["input_ids"])
    bos = tokenizer.bos_token_id
    if not ids or ids[0] != bos or ids[1:2] == [bos]:
        raise ValueError(f"chat encoding must start with exactly one <bos> ({bos}), got {ids[:3]}")
    return ids

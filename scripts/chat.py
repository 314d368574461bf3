"""The chat format every stage uses: one function builds the messages, one renders them.

    from scripts.chat import encode_chat, prompt_messages
    ids = encode_chat(tokenizer, prompt_messages(record))   # exactly one <bos>, generation prompt added

Training (``scripts.training.data``, which appends the assistant turn),
generation, the export's parity prompts and the backfill all render a prompt
through these two, with the tokenizer's own chat template, so the model sees
at serving time the text it was trained on. Nothing here imports torch or
transformers (training must be able to import Unsloth first).

Chat templates: ``GEMMA3_CHAT_TEMPLATE_ORIGINAL`` is Google's template verbatim.
``GEMMA3_CHAT_TEMPLATE`` (the one the importer and the tiny models install)
renders the same text but wraps each model turn's answer and its
``<end_of_turn>`` in ``{% generation %}`` markers, because transformers'
``apply_chat_template(return_assistant_tokens_mask=True)`` (and TRL's
``assistant_only_loss=True``) need them: without the markers transformers
warns and returns an all-zero mask.
"""

from __future__ import annotations

from typing import Any

GEMMA3_CHAT_TEMPLATE_ORIGINAL = r"""{{ bos_token }}
{%- if messages[0]['role'] == 'system' -%}
    {%- if messages[0]['content'] is string -%}
        {%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}
    {%- else -%}
        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\n\n' -%}
    {%- endif -%}
    {%- set loop_messages = messages[1:] -%}
{%- else -%}
    {%- set first_user_prefix = "" -%}
    {%- set loop_messages = messages -%}
{%- endif -%}
{%- for message in loop_messages -%}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
        {{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}
    {%- endif -%}
    {%- if (message['role'] == 'assistant') -%}
        {%- set role = "model" -%}
    {%- else -%}
        {%- set role = message['role'] -%}
    {%- endif -%}
    {{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else "") }}
    {%- if message['content'] is string -%}
        {{ message['content'] | trim }}
    {%- elif message['content'] is iterable -%}
        {%- for item in message['content'] -%}
            {%- if item['type'] == 'image' -%}
                {{ '<start_of_image>' }}
            {%- elif item['type'] == 'text' -%}
                {{ item['text'] | trim }}
            {%- endif -%}
        {%- endfor -%}
    {%- else -%}
        {{ raise_exception("Invalid content type") }}
    {%- endif -%}
    {{ '<end_of_turn>\n' }}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{'<start_of_turn>model\n'}}
{%- endif -%}
"""

# Same rendered text; the model's answer + <end_of_turn> sit in a generation block.
GEMMA3_CHAT_TEMPLATE = GEMMA3_CHAT_TEMPLATE_ORIGINAL.replace(
    r"""    {%- if message['content'] is string -%}""",
    r"""    {%- set content -%}
    {%- if message['content'] is string -%}""",
).replace(
    r"""    {{ '<end_of_turn>\n' }}""",
    r"""    {%- endset -%}
    {%- if role == 'model' -%}
        {% generation %}{{ content + '<end_of_turn>' }}{% endgeneration %}{{ '\n' }}
    {%- else -%}
        {{ content + '<end_of_turn>\n' }}
    {%- endif -%}""",
)


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

"""The base-model section every model-loading stage config shares (training, eval): path, context,
rope scaling, dtype and attention kernel.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from scripts.config import StrictModel


class RopeSettings(StrictModel):
    type: Literal["linear"] = Field(
        default="linear", description="rope scaling of the global-attention layers; local layers keep theta"
    )
    factor: float = Field(default=4.0, ge=1.0, description="pretrained context (32768) x factor = max_seq_length")


FLASH_ATTENTION_ALIAS = "use_flash_attention_2"
AttnImplementation = Literal["auto", "flash_attention_2", "windowed_sdpa", "sdpa", "eager"]
QUADRATIC_ATTENTION = ("sdpa", "eager")  # transformers builds a seq x seq mask for these on Gemma 3


def flash_attention_alias(data: Any) -> Any:
    """``use_flash_attention_2: true`` (the key of the product brief and older transformers) means
    ``attn_implementation: flash_attention_2``; ``false`` means windowed_sdpa (the linear-memory attention
    that is not flash) instead of ``auto``. A contradiction
    with an explicit ``attn_implementation`` is an error, never a silent pick."""
    if not isinstance(data, dict) or FLASH_ATTENTION_ALIAS not in data:
        return data
    data = dict(data)
    flag = data.pop(FLASH_ATTENTION_ALIAS)
    if not isinstance(flag, bool):
        raise ValueError(f"{FLASH_ATTENTION_ALIAS} must be true or false, got {flag!r}")
    chosen = data.get("attn_implementation", "auto")
    wanted = "flash_attention_2" if flag else "windowed_sdpa"
    if chosen != "auto" and (chosen == "flash_attention_2") != flag:
        raise ValueError(f"{FLASH_ATTENTION_ALIAS}: {str(flag).lower()} contradicts attn_implementation: {chosen}")
    data["attn_implementation"] = wanted if chosen == "auto" else chosen
    return data


class ModelSettings(StrictModel):
    name_or_path: str = Field(default="models/gemma-3-270m", description="local dir of the base model "
                              "(`fab train.import-gguf` writes it) or an HF id such as google/gemma-3-270m")
    tokenizer: str | None = Field(default=None, description="HF id or local dir; default: name_or_path")
    max_seq_length: int = Field(default=131072, gt=0, description="tokens; context the model is trained and served at")
    rope: RopeSettings = RopeSettings()
    dtype: Literal["auto", "bf16", "fp32"] = Field(
        default="auto", description="auto: bf16 on GPU, fp32 on CPU (Gemma 3 overflows in fp16)"
    )
    attn_implementation: AttnImplementation = Field(
        default="auto",
        description="auto: flash_attention_2 on a GPU with flash-attn, else windowed_sdpa (the project's sdpa on "
        "sliding-window blocks); both have memory linear in length. sdpa and eager build a seq x seq mask (eager "
        "also seq x seq scores): refused when it cannot fit the device at max_seq_length. "
        "`use_flash_attention_2: true` is accepted as an alias of flash_attention_2",
    )

    _flash_attention_alias = model_validator(mode="before")(flash_attention_alias)

    @property
    def tokenizer_path(self) -> str:
        return self.tokenizer or self.name_or_path

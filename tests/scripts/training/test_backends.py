"""Backend choice, dtype, and the rope scaling of the model the trainer actually gets."""

import pytest
import torch

from scripts.config import UserError
from scripts.model.gemma3 import rope_summary
from scripts.model.loading import torch_dtype
from scripts.training.backends import load_model, pick_backend
from scripts.training.prepare import load_checked_tokenizer
from tests.scripts.training.conftest import tiny_config


@pytest.mark.parametrize("requested, gpu, unsloth, expected, why", [
    ("auto", True, True, "unsloth", "GPU and unsloth present"),
    ("auto", False, True, "hf", "no GPU found"),
    ("auto", True, False, "hf", "unsloth is not installed"),
    ("hf", True, True, "hf", "requested"),
    ("unsloth", False, True, "unsloth", "trains on CPU"),
])
def test_pick_backend_says_which_and_why(requested, gpu, unsloth, expected, why):
    backend, reason = pick_backend(requested, gpu=gpu, unsloth=unsloth)
    assert backend == expected and why in reason


def test_nproc_keeps_auto_on_hf_and_refuses_unsloth():
    backend, reason = pick_backend("auto", gpu=True, unsloth=True, nproc=2)
    assert backend == "hf" and "--nproc 2" in reason
    with pytest.raises(UserError, match="Unsloth trains on a single GPU") as err:
        pick_backend("unsloth", gpu=True, unsloth=True, nproc=2)
    assert "\n" not in str(err.value)


def test_unsloth_requested_but_missing_is_a_user_error():
    with pytest.raises(UserError, match="unsloth is not installed"):
        pick_backend("unsloth", gpu=True, unsloth=False)


def test_dtype_auto_is_bf16_on_gpu_fp32_on_cpu():
    assert torch_dtype("auto", gpu=True) == torch.bfloat16
    assert torch_dtype("auto", gpu=False) == torch.float32
    assert torch_dtype("bf16", gpu=False) == torch.bfloat16 and torch_dtype("fp32", gpu=True) == torch.float32


def _check_scaled(model):
    summary = rope_summary(model)
    assert summary["max_position_embeddings"] == 131072
    assert summary["original_max_position_embeddings"] == 32768
    full, local = summary["full_attention"], summary["sliding_attention"]
    assert (full["rope_type"], full["factor"], full["measured_factor"]) == ("linear", 4.0, 4.0)
    assert full["measured_theta"] == 1e6
    assert (local["rope_type"], local["measured_factor"], local["measured_theta"]) == ("default", 1.0, 1e4)
    eos = model.generation_config.eos_token_id
    assert isinstance(eos, list) and len(eos) == 2


def test_hf_training_model_has_rope_on_global_layers_and_lora(tiny_root, tmp_path):
    cfg = tiny_config(tiny_root, tmp_path / "runs")
    tok = load_checked_tokenizer(cfg)
    model = load_model(cfg, "hf", tok, torch.float32)
    _check_scaled(model)
    assert model.config._attn_implementation == "windowed_sdpa"  # auto without a GPU: no seq x seq mask
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert {n.split(".")[-4] for n in trainable} == set(cfg.lora.target_modules)


# The unsloth model's rope/EOS/LoRA are checked on the model that trained, in a subprocess
# (importing unsloth patches transformers for the whole process): test_unsloth_train.py.


def test_attention_auto_never_picks_eager_and_flash_needs_a_gpu():
    from scripts.config import UserError
    from scripts.model.gemma3 import resolve_attn_implementation

    assert resolve_attn_implementation("auto") == "windowed_sdpa"  # CPU, no flash-attn
    assert resolve_attn_implementation("eager") == "eager"
    with pytest.raises(UserError, match="flash_attention_2 needs a GPU"):
        resolve_attn_implementation("flash_attention_2")


def test_sdpa_and_eager_are_refused_when_their_mask_cannot_fit():
    from scripts.model.gemma3 import resolve_attn_implementation

    gib = 2**30
    # 131072^2 x (1 B bool + 2 B bf16 copy) = 48 GiB: over half of an 80 GiB GPU, under half of 128 GiB
    with pytest.raises(UserError) as err:
        resolve_attn_implementation("sdpa", 131072, dtype=torch.bfloat16, device_memory=80 * gib)
    assert str(err.value) == ("attn_implementation sdpa builds a seq x seq attention mask of 48.0 GiB at 131072 "
                              "tokens, more than 50% of the device's 80 GiB (model.max_seq_length); use auto or "
                              "windowed_sdpa (memory linear in length)")
    assert resolve_attn_implementation("sdpa", 131072, dtype=torch.bfloat16, device_memory=128 * gib) == "sdpa"
    with pytest.raises(UserError, match="eager builds a seq x seq attention mask of 80.0 GiB"):  # fp32: 1 + 4 B
        resolve_attn_implementation("eager", 131072, dtype=torch.float32, device_memory=80 * gib)
    assert resolve_attn_implementation("sdpa", 2048, dtype=torch.float32, device_memory=1 * gib) == "sdpa"
    assert resolve_attn_implementation("windowed_sdpa", 131072, device_memory=1 * gib) == "windowed_sdpa"


def test_unsloth_on_a_gpu_is_routed_or_refused_past_its_mask():
    from scripts.training.backends import check_unsloth_fits

    gib = 2**30
    # Unsloth's mask at 131072 tokens: bool + fp32 copy = 80 GiB; at 32768 tokens 5 GiB
    backend, reason = pick_backend("auto", gpu=True, unsloth=True, max_seq_length=131072, device_memory=80 * gib)
    assert backend == "hf" and "80.0 GiB at 131072 tokens" in reason and "model.max_seq_length" in reason
    assert pick_backend("auto", gpu=True, unsloth=True, max_seq_length=32768, device_memory=80 * gib)[0] == "unsloth"
    assert pick_backend("unsloth", gpu=True, unsloth=True, max_seq_length=131072)[0] == "unsloth"  # data decide
    with pytest.raises(UserError, match="backend unsloth: its Gemma 3 attention on a GPU builds .* use --backend hf"):
        check_unsloth_fits(131072, gpu=True, device_memory=80 * gib)
    check_unsloth_fits(32768, gpu=True, device_memory=80 * gib)
    check_unsloth_fits(131072, gpu=False, device_memory=gib)  # CPU: Unsloth runs transformers' code + windowed_sdpa

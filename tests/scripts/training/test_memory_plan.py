"""The memory plan: counts derived by hand for a tiny Gemma 3, the phase rule, sizes, the fit check."""

import pytest
from transformers import Gemma3ForCausalLM, Gemma3TextConfig

from scripts.config import REPO_ROOT, UserError, load_config
from scripts.training.config import TrainingConfig
from scripts.training.memory_plan import (
    CPU_CALIBRATION, GIB, ModelShape, check_fits, make_plan, parse_memory_size, plan_step,
)

# hidden 64, MLP 128, 2 heads + 1 kv head of 32, vocab 1024, window 64; layer 0 sliding, layer 1 global
TINY = dict(vocab_size=1024, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
            num_key_value_heads=1, head_dim=32, sliding_window=64,
            layer_types=["sliding_attention", "full_attention"])
# per layer: q 64x64 + k 64x32 + v 64x32 + o 64x64 + 3 x 64x128 (MLP) + 4 norms x 64 + q/k norms 2 x 32
PER_LAYER = 4096 + 2048 + 2048 + 4096 + 3 * 8192 + 256 + 64
PARAMS = 1024 * 64 + 2 * PER_LAYER + 64  # + embeddings (tied LM head) + final norm = 139,968
LORA_R8 = 2 * 8 * ((64 + 64) + (64 + 32) * 2 + (64 + 64) + 3 * (64 + 128))  # A + B of 7 linears x 2 layers


def config(**train) -> TrainingConfig:
    raw = load_config(REPO_ROOT / "configs/training.yaml", TrainingConfig).model_dump()
    raw["lora"].update(r=8, dropout=0.0)
    raw["train"].update(train)
    raw["loss"]["chunk_size"] = 16
    raw["packing"]["enabled"] = train.get("per_device_batch_size", 1) == 1  # a packed row is batch 1
    return TrainingConfig.model_validate(raw)


@pytest.fixture(scope="module")
def shape() -> ModelShape:
    return ModelShape.from_config(Gemma3TextConfig(**TINY))


def test_counts_match_the_model_and_peft(shape):
    from peft import LoraConfig, get_peft_model

    assert shape.parameters() == PARAMS == 139_968
    model = Gemma3ForCausalLM(Gemma3TextConfig(**TINY))
    assert sum(p.numel() for p in model.parameters()) == PARAMS  # tied head counted once
    targets = list(config().lora.target_modules)
    assert shape.lora_parameters(8, targets) == LORA_R8 == 16_384
    lora = get_peft_model(model, LoraConfig(r=8, target_modules=targets, task_type="CAUSAL_LM"))
    assert sum(p.numel() for p in lora.parameters() if p.requires_grad) == LORA_R8


def test_gemma3_270m_counts():
    real = ModelShape.from_config(Gemma3TextConfig(
        vocab_size=262_144, hidden_size=640, intermediate_size=2048, num_hidden_layers=18, num_attention_heads=4,
        num_key_value_heads=1, head_dim=256, sliding_window=512,
        layer_types=["full_attention" if (i + 1) % 6 == 0 else "sliding_attention" for i in range(18)]))
    assert real.parameters() == 268_098_176  # google/gemma-3-270m's published count
    assert real.lora_parameters(16, list(config().lora.target_modules)) == 3_796_992  # 14.5 MiB fp32
    assert real.sliding_layers == 15


def test_terms_of_a_tiny_step_by_hand(shape):
    cfg = config(per_device_batch_size=1, gradient_checkpointing=True)
    step = plan_step(shape, cfg, 1000, device="cpu", attn="sdpa", label_tokens=10)
    t = step.terms
    assert step.dtype == "fp32"
    assert t["weights"] == PARAMS * 4
    assert t["optimizer"] == LORA_R8 * 4 * 4  # fp32 weights, gradients, two AdamW moments
    assert t["checkpoints"] == 1000 * 4 * (3 * 64 + 4 * 32)  # 2 layer inputs + final hidden, cos/sin x 2 types
    assert t["attention masks"] == 1000 * 1000  # one bool mask (sliding layer); the global layer is causal
    assert t["loss tile"] == round(CPU_CALIBRATION.loss_tile_copies * 10 * 1024 * 4)  # 10 label rows < chunk 16
    # q k v before/after norm+rope, attention out, 8 hidden-wide, 4 MLP-wide, LoRA r + out for q o k v gate up down
    width = 3 * (64 + 64) + 64 + 8 * 64 + 4 * 128 + (8 + 64) * 2 + (8 + 32) * 2 + (8 + 128) * 2 + (8 + 64)
    assert shape.layer_width(8, list(cfg.lora.target_modules), lora_dropout=False) == width
    assert t["layer recompute"] == round(CPU_CALIBRATION.layer_copies * 1000 * width * 4)
    persistent = t["weights"] + t["optimizer"] + t["checkpoints"] + t["attention masks"] + t["runtime"]
    assert step.peak == persistent + max(t["layer recompute"] + t["attention kernel"], t["loss tile"])

    padded = plan_step(shape, config(per_device_batch_size=2), 1000, device="cpu", attn="sdpa", label_tokens=10)
    assert padded.terms["attention masks"] == 2 * 2 * 1000 * 1000  # a padded batch: the global layer's mask too
    eager = plan_step(shape, cfg, 1000, device="cpu", attn="eager", label_tokens=10)
    assert eager.terms["attention masks"] == 2 * 1000 * 1000 * 4  # float masks, both layer types
    gpu = plan_step(shape, cfg, 1000, device="gpu", attn="sdpa", label_tokens=10)
    assert gpu.dtype == "bf16" and gpu.terms["weights"] == PARAMS * 2 and gpu.terms["optimizer"] == t["optimizer"]
    full = plan_step(shape, config(method="full"), 1000, device="cpu", attn="sdpa", label_tokens=10)
    assert full.terms["optimizer"] == PARAMS * 4 * 3  # gradients + two moments of every weight


def test_attention_terms_grow_square_for_sdpa_linear_for_windowed_and_flash(shape):
    cfg = config(per_device_batch_size=1, gradient_checkpointing=True)

    def attention(attn, n):
        terms = plan_step(shape, cfg, n, device="gpu", attn=attn, label_tokens=10).terms
        return terms["attention masks"] + terms["attention kernel"]

    n = 65536
    assert attention("sdpa", 2 * n) == 4 * attention("sdpa", n)
    assert attention("eager", 2 * n) == 4 * attention("eager", n)
    for linear in ("windowed_sdpa", "flash_attention_2"):
        assert attention(linear, 2 * n) == 2 * attention(linear, n)
        assert attention(linear, n) < attention("sdpa", n) / 100
    # shorter than the window, unpadded: both layer types run causal, no mask
    assert plan_step(shape, cfg, 50, device="gpu", attn="sdpa", label_tokens=10).terms["attention masks"] == 0
    with pytest.raises(UserError, match="no memory plan for attention 'flex_attention'"):
        plan_step(shape, cfg, 100, device="gpu", attn="flex_attention", label_tokens=10)


@pytest.mark.parametrize("text, expected", [
    ("80GB", 80 * 10**9), ("80GiB", 80 * 2**30), ("80 gib", 80 * 2**30), ("512MB", 512 * 10**6),
    ("1.5TiB", int(1.5 * 2**40)), ("2048MiB", 2 * 2**30),
])
def test_parse_memory_size(text, expected):
    assert parse_memory_size(text) == expected


@pytest.mark.parametrize("text", ["80", "eighty GB", "80XB", "-1GB", "0GB", ""])
def test_parse_memory_size_refuses_in_one_line(text):
    with pytest.raises(UserError, match=r"expected a size with a unit, e\.g\. 80GB, 80GiB or 512MB") as err:
        parse_memory_size(text)
    assert "\n" not in str(err.value)


def test_plan_for_another_host_checks_max_seq_length(shape):
    cfg = config(per_device_batch_size=1, gradient_checkpointing=True)
    model_config = Gemma3TextConfig(**TINY)
    plan = make_plan(cfg, model_config, longest_tokens=500, longest_answer=10, device_memory=80 * GIB)
    assert plan.device == "gpu" and plan.checked == ["longest example", "max_seq_length"]
    assert plan.attn_implementation in ("sdpa", "windowed_sdpa")  # auto without flash-attn: never `auto`
    assert plan.steps["longest example"].tokens == 500 and plan.steps["max_seq_length"].tokens == 131072
    check_fits(plan, tuple(plan.checked))  # the tiny model at 131072 fits 80 GiB on any path
    small = make_plan(cfg, model_config, longest_tokens=500, longest_answer=10, device_memory=4 * GIB)
    if small.attn_implementation == "sdpa":  # 16 GiB of seq x seq mask at 131072
        with pytest.raises(UserError, match=r"^memory plan: peak .* GiB at 131072 tokens \(max_seq_length, sdpa\) "
                                            r"exceeds 90% of the device's 4\.0 GiB; largest term: attention"):
            check_fits(small, tuple(small.checked))
    here = make_plan(cfg, model_config, longest_tokens=500, longest_answer=10)
    assert here.checked == ["longest example"]  # this host: the run's own examples must fit


def test_without_checkpointing_every_layer_keeps_its_saved_activations(shape):
    """No recompute: autograd holds every layer's saved tensors until its backward, so they are
    persistent (checkpoints) and only one layer's gradients come on top; the linear kernels' saved
    blocks are in saved_copies, eager keeps its quadratic probabilities in every layer."""
    cfg = config(per_device_batch_size=1, gradient_checkpointing=False)
    step = plan_step(shape, cfg, 1000, device="cpu", attn="windowed_sdpa", label_tokens=10)
    t, cal = step.terms, CPU_CALIBRATION
    width = shape.layer_width(8, list(cfg.lora.target_modules), lora_dropout=False)
    assert t["checkpoints"] == round(cal.saved_copies * 2 * 1000 * width * 4)  # 2 layers
    assert t["layer recompute"] == round((cal.layer_copies - cal.saved_copies) * 1000 * width * 4)
    on = plan_step(shape, config(per_device_batch_size=1, gradient_checkpointing=True), 1000, device="cpu",
                   attn="windowed_sdpa", label_tokens=10)
    assert t["attention kernel"] == on.terms["attention kernel"]  # one layer's working blocks either way
    persistent = t["weights"] + t["optimizer"] + t["checkpoints"] + t["attention masks"] + t["runtime"]
    assert step.peak == persistent + max(t["layer recompute"] + t["attention kernel"], t["loss tile"])
    eager_off = plan_step(shape, cfg, 1000, device="cpu", attn="eager", label_tokens=10).terms["attention kernel"]
    eager_on = plan_step(shape, config(per_device_batch_size=1, gradient_checkpointing=True), 1000,
                         device="cpu", attn="eager", label_tokens=10).terms["attention kernel"]
    assert eager_off == 2 * eager_on  # both layers' probabilities


def test_cpu_heap_slack_grows_then_stops_and_is_gone_under_a_fixed_mmap_threshold(monkeypatch):
    from scripts.training.memory_plan import GPU_CALIBRATION, heap_slack

    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    cal = CPU_CALIBRATION
    assert heap_slack(cal, 1000, "cpu") == cal.runtime_per_token * 1000
    assert heap_slack(cal, 16384, "cpu") == cal.runtime_slack_cap  # capped at the most measured
    assert heap_slack(cal, cal.runtime_slack_until, "cpu") == 0.0  # activations all over the threshold
    assert heap_slack(GPU_CALIBRATION, 1000, "gpu") == 0.0  # a GPU's caching allocator is in runtime_bytes
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "131072")
    assert heap_slack(cal, 1000, "cpu") == 0.0

"""Padding-free packing: the packer, and a packed row computing exactly what its examples compute alone.

Several examples in one row with position ids restarting per example and no attention mask (what TRL's
padding-free collator sends): transformers 5.17 finds the restarts (``find_packed_sequence_indices``)
and masks each example from the others under sdpa and eager. Checked on the tiny Gemma 3 (one sliding
layer with a 64-token window, one global layer) with examples longer than the window, forward and
backward, with and without gradient checkpointing.
"""

import copy
import json
import shutil

import pytest
import torch
from transformers import AutoModelForCausalLM

from scripts.training.data import IGNORE_INDEX, pack_rows
from scripts.training.loss import chunked_causal_lm_loss

FP32_TOL = 1e-5  # fp32 on CPU: a different reduction order (one row vs several) moves the last bits


def _row(n: int, answer: int, seed: int) -> dict:
    ids = torch.randint(10, 1000, (n,), generator=torch.Generator().manual_seed(seed)).tolist()
    ids[0] = 2  # <bos>
    return {"input_ids": ids, "labels": [IGNORE_INDEX] * (n - answer) + ids[n - answer:]}


def test_best_fit_decreasing_fills_rows_keeps_long_examples_whole_and_masks_every_first_label():
    lengths = [300, 700, 120, 900, 5000, 450, 64, 1000, 1000, 20]
    rows = [_row(n, 3, i) for i, n in enumerate(lengths)]
    rows[2]["labels"][0] = 2  # even a (malformed) label on an example's first token never crosses a boundary
    packed, stats = pack_rows(rows, 1024)
    # longest first into the row with the least room that holds it; 20 ties three rows of room 24: the first
    assert [r["seq_lengths"] for r in packed] == [[5000], [1000, 20], [1000], [900, 120], [700, 300], [450, 64]]
    # every example exactly once, whole, ids and labels in place; its first label masked
    seen = []
    for row in packed:
        assert sum(row["seq_lengths"]) == len(row["input_ids"]) == len(row["labels"])
        start = 0
        for n in row["seq_lengths"]:
            ids, labels = row["input_ids"][start:start + n], row["labels"][start:start + n]
            source = next(r for r in rows if r["input_ids"] == ids)
            assert labels[0] == IGNORE_INDEX and labels[1:] == source["labels"][1:]
            seen.append(n)
            start += n
    assert sorted(seen) == sorted(lengths)
    assert (stats.rows, stats.examples, stats.alone, stats.tokens) == (6, 10, 1, sum(lengths))
    assert stats.examples_per_row == 1.67 and stats.fill == round(4554 / (5 * 1024), 3)  # the 5000 not counted
    assert pack_rows(rows, 1024) == (packed, stats)  # deterministic
    assert pack_rows([], 1024)[1].rows == 0


@pytest.fixture(scope="module")
def models(tiny_root):
    """The tiny Gemma 3 under each attention that trains on CPU, same weights."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    torch.manual_seed(0)
    names = ["sdpa", "eager"] + [n for n in ("windowed_sdpa",) if n in ALL_ATTENTION_FUNCTIONS]
    return {name: AutoModelForCausalLM.from_pretrained(tiny_root / "tiny-gemma3", dtype=torch.float32,
                                                       attn_implementation=name).train() for name in names}


def _examples(vocab: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Three prompt + answer examples, two longer than the 64-token window, one shorter."""
    out = []
    for seed, (n, answer) in enumerate([(150, 30), (97, 12), (41, 5)]):
        row = _row(n, answer, seed + 10)
        ids = torch.tensor(row["input_ids"]) % vocab
        out.append((ids, torch.tensor(row["labels"]).where(torch.tensor(row["labels"]) == IGNORE_INDEX, ids)))
    return out


def _packed(examples):
    ids = torch.cat([e[0] for e in examples])[None]
    labels = torch.cat([e[1] for e in examples])[None]
    positions = torch.cat([torch.arange(len(e[0])) for e in examples])[None]
    return ids, labels, positions


def _grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("checkpointing", [False, True], ids=["plain", "checkpointed"])
@pytest.mark.parametrize("attn", ["sdpa", "eager", "windowed_sdpa"])
def test_packed_loss_and_gradients_equal_the_examples_alone(models, attn, checkpointing):
    if attn not in models:
        pytest.skip(f"{attn} is not registered in this checkout")
    model = copy.deepcopy(models[attn])
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    examples = _examples(model.config.vocab_size)

    model.zero_grad()
    alone_sum, alone_n = 0.0, 0
    for ids, labels in examples:  # one example per row, no position ids: the unpacked path
        nll, n = chunked_causal_lm_loss(model, ids[None], torch.ones_like(ids)[None], labels[None], 16)
        nll.backward()
        alone_sum, alone_n = alone_sum + nll.item(), alone_n + int(n)
    alone_grads = _grads(model)

    model.zero_grad()
    ids, labels, positions = _packed(examples)
    nll, n = chunked_causal_lm_loss(model, ids, None, labels, 16, position_ids=positions)
    nll.backward()
    packed_grads = _grads(model)

    assert int(n) == alone_n == 30 + 12 + 5  # every answer token, no term predicting across a boundary
    # the trainer's loss is the token-weighted mean: sum over the examples / their answer tokens
    assert abs(nll.item() / int(n) - alone_sum / alone_n) < FP32_TOL
    assert abs(nll.item() - alone_sum) < FP32_TOL * alone_n
    assert packed_grads.keys() == alone_grads.keys() and alone_grads["model.embed_tokens.weight"].abs().sum() > 0
    for name, grad in packed_grads.items():
        assert torch.allclose(grad, alone_grads[name], atol=FP32_TOL, rtol=1e-4), name


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_an_examples_logits_do_not_depend_on_its_neighbours(models, attn):
    model = models[attn]
    a, b, c = _examples(model.config.vocab_size)
    with torch.no_grad():
        alone = model(input_ids=a[0][None]).logits[0]
        ids, _, positions = _packed([a, b])
        first = model(input_ids=ids, position_ids=positions, use_cache=False).logits[0, :len(a[0])]
        ids, _, positions = _packed([c, b, a])  # after 138 tokens of other examples
        last = model(input_ids=ids, position_ids=positions, use_cache=False).logits[0, -len(a[0]):]
        # controls: without restarting positions `a` sees its neighbours; with a cache (use_cache defaults
        # to True outside gradient checkpointing) transformers 5.17 does not look for packed rows at all,
        # which is why the training loss path always passes use_cache=False
        mixed = model(input_ids=ids).logits[0, -len(a[0]):]
        cached = model(input_ids=ids, position_ids=positions).logits[0, -len(a[0]):]
    assert torch.allclose(first, alone, atol=FP32_TOL) and torch.allclose(last, alone, atol=FP32_TOL)
    assert (mixed - alone).abs().max() > 1e-2 and (cached - alone).abs().max() > 1e-2


def test_train_run_packs_rows_as_prepared_and_loss_falls(tiny_root, tmp_path):
    from scripts.training.callbacks import read_metrics
    from scripts.training.prepare import read_prepare
    from scripts.training.run import run_training
    from tests.scripts.training.conftest import tiny_config
    from tests.scripts.training.train_probe import make_probe

    cfg = tiny_config(tiny_root, tmp_path / "runs", packing={"enabled": True, "max_tokens": 256},
                      train={"per_device_batch_size": 1, "max_steps": 6})
    probe, said = make_probe(), []
    result = run_training(cfg, run_id="packed", extra_callbacks=(probe,), say=said.append)
    run_dir = tmp_path / "runs" / "packed"
    packing = read_prepare(run_dir).splits["train"].packing
    assert read_prepare(run_dir).packing_max_tokens == 256 and packing.examples == result.train_examples
    assert packing.examples_per_row > 2 and packing.alone == 0
    assert any(line.startswith(f"packing: {packing.examples} examples in {packing.rows} rows") for line in said)

    # what the model received: one row per micro-batch, no mask, positions restarting per example
    assert len(probe.batches) == 6
    for batch in probe.batches:
        ids, labels, positions = batch["input_ids"], batch["labels"], batch["position_ids"]
        assert "attention_mask" not in batch and ids.shape[0] == 1 and ids.shape == positions.shape
        assert 0 < ids.shape[1] <= 256
        starts = (positions[0] == 0).nonzero().flatten().tolist()
        assert len(starts) > 1 and starts[0] == 0
        ends = starts[1:] + [ids.shape[1]]
        for start, end in zip(starts, ends):
            assert positions[0, start:end].tolist() == list(range(end - start))
            assert ids[0, start] == 2 and labels[0, start] == IGNORE_INDEX  # <bos>, never a target
            assert (labels[0, start:end] != IGNORE_INDEX).any()  # each example has its answer

    losses = [m.loss for m in read_metrics(run_dir / "metrics.jsonl")]
    assert len(losses) == 6 and max(losses[-2:]) < 0.6 * losses[0]
    assert all(m.tokens_per_s > 0 for m in read_metrics(run_dir / "metrics.jsonl")[1:])


def test_unsloth_backend_packs_the_same_rows_and_computes_the_same_loss(tiny_root, tmp_path):
    """Unsloth (CPU fallback, fresh interpreter) gets the rows the hf backend gets, in the same order,
    and its own model and loss give a packed row the loss and LoRA gradients of its examples alone."""
    from scripts.training.callbacks import read_metrics
    from scripts.training.run import run_training
    from tests.scripts.training.conftest import tiny_config
    from tests.scripts.training.test_unsloth_train import run_unsloth_probe
    from tests.scripts.training.train_probe import make_probe

    # the tiny model with a 16-token window, so the examples (54-61 tokens) span several windows
    model_dir = tmp_path / "tiny-w16"
    shutil.copytree(tiny_root / "tiny-gemma3", model_dir)
    config = json.loads((model_dir / "config.json").read_text())
    (model_dir / "config.json").write_text(json.dumps({**config, "sliding_window": 16}))
    train = {"per_device_batch_size": 1, "max_steps": 3}
    packing = {"enabled": True, "max_tokens": 256}
    facts = run_unsloth_probe(tiny_root, tmp_path, train, timeout=240, packing=packing,
                              model={"name_or_path": str(model_dir)})
    check = facts["packed_vs_alone"]
    assert len(check["seq_lengths"]) == 3 and not check["has_attention_mask"]
    assert min(check["seq_lengths"]) > 3 * check["window"]  # each example spans several sliding windows
    assert check["packed_n"] == check["alone_n"] > 3
    assert abs(check["packed_sum"] - check["alone_sum"]) < FP32_TOL * check["alone_n"]
    assert check["grad_max"] > 1 and check["grad_max_diff"] < FP32_TOL * check["grad_max"]
    assert facts["result"]["global_step"] == 3 and facts["result"]["backend"] == "unsloth"
    losses = [m.loss for m in read_metrics(tmp_path / "runs" / "u" / "metrics.jsonl")]
    assert losses[-1] < losses[0]

    probe = make_probe()
    hf = tiny_config(tiny_root, tmp_path / "runs", backend="hf", train=train, packing=packing,
                     model={"name_or_path": str(model_dir)})
    run_training(hf, run_id="hf", extra_callbacks=(probe,), say=lambda *_: None)
    unsloth_batches = torch.load(tmp_path / "probe" / "batches.pt")
    assert len(unsloth_batches) == len(probe.batches) == 3
    for ours, theirs in zip(probe.batches, unsloth_batches):
        assert ours.keys() == theirs.keys() == {"input_ids", "labels", "position_ids"}
        assert all(torch.equal(ours[k], theirs[k]) for k in ours)

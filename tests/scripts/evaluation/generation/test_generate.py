"""generate_candidates: candidates file, resumability, adapter loading, errors."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import torch

from scripts.chat import encode_chat, prompt_messages
from scripts.config import UserError
from scripts.contracts import Candidate, read_jsonl
from scripts.evaluation.generation.config import EvalConfig
from scripts.evaluation.generation.generate import (
    generate_candidates,
    load_done,
    resolve_model,
)
from tests.scripts.evaluation import (
    SLOTS,
    eval_config_dict,
    make_adapter,
    records,
    write_datasets_config,
    write_split,
)


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_gemma):
    """Tiny base model (the shared one), a perturbed LoRA adapter inside a run dir, a validation split, a datasets config."""
    root = tmp_path_factory.mktemp("eval")
    base = tiny_gemma
    adapter = make_adapter(base, root / "runs" / "20260101T000000Z" / "adapter")
    rows = records(3, 3)
    write_split(root / "processed", "validation", rows, manifest=True)  # a v2 manifest: catalog order
    datasets = write_datasets_config(root / "datasets.yaml", root / "processed")
    return root, base, adapter, rows, datasets


def _cfg(setup, tmp_path, adapter: str | None = None, **decoding) -> EvalConfig:
    root, _, run_adapter, _, datasets = setup
    raw = eval_config_dict(tmp_path, adapter or str(run_adapter.parent), datasets, **decoding)
    raw["model"]["runs_dir"] = str(root / "runs")
    return EvalConfig.model_validate(raw)


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def test_writes_one_valid_candidate_per_example_with_confidence(setup, tmp_path):
    _, base, _, rows, _ = setup
    calls = []
    summary = generate_candidates(_cfg(setup, tmp_path), "validation", progress=lambda *a: calls.append(a))
    got = {c.id: c for c in read_jsonl(summary.path, Candidate)}
    assert summary.path == tmp_path / "model_outputs" / "validation_candidates.jsonl"
    assert sorted(got) == sorted(r.id for r in rows) and summary.written == 6 and summary.skipped == 0
    assert summary.valid_rate == 1.0 and summary.tokens_per_s > 0
    assert calls[0] == (0, 6, 0) and calls[-1][:2] == (6, 6)
    # provenance: the label's parts as fields, read back from candidates.jsonl
    lines = {c.provenance for c in got.values()}
    assert len(lines) == 1 and summary.provenance in lines
    assert summary.provenance.model_dump() == {
        "base": str(base), "base_label": str(base), "zero_shot": False, "method": "lora",
        "run_id": "20260101T000000Z", "adapter": str(setup[2]), "training": None}  # no result.json in this run
    for c in got.values():
        assert c.valid and c.constrained and c.model == f"{base}+20260101T000000Z"
        assert c.prompt_tokens > 0 and c.output_tokens >= 2 and c.latency_s > 0
        if c.kind == "classification":
            assert c.parsed in ("YES", "NO") and c.raw == c.parsed
            assert sum(c.label_probs.values()) == pytest.approx(1.0) and c.slot_logprob is None
        else:
            assert isinstance(c.parsed, dict) and c.label_probs is None
            assert list(c.parsed) == list(SLOTS)  # catalog order, as the training targets
            assert set(c.slot_logprob) == set(c.parsed) and all(v <= 0 for v in c.slot_logprob.values())


@pytest.mark.parametrize("bounds, limit", [
    ({"max_string_tokens": 1}, "by the string bound schema_bounds.max_string_tokens=1"),
    ({"max_string_tokens": 128}, "by the token budget decoding.max_new_tokens.extraction="),
])
def test_the_closed_early_warning_names_the_limit_that_fired(setup, tmp_path, bounds, limit):
    """A string bound of 1 token cuts every non-empty string; a budget just above the all-null answer cuts
    whatever the model starts to write. The warning says which, with its value, and nothing else."""
    from scripts.evaluation.generation.decoding import TaskDecoder, make_compiler
    from scripts.model.loading import load_tokenizer

    cfg = _cfg(setup, tmp_path)
    cfg = cfg.model_copy(update={"schema_bounds": cfg.schema_bounds.model_copy(update=bounds)})
    if "max_new_tokens" in limit:
        _, base, _, _, datasets = setup
        tok = load_tokenizer(str(base))
        from transformers import AutoModelForCausalLM

        from scripts.config import load_config
        from scripts.dataset.config import DatasetsConfig

        spec = next(t for t in load_config(datasets, DatasetsConfig).tasks.values() if t.kind == "extraction")
        model = AutoModelForCausalLM.from_pretrained(base)
        low = TaskDecoder.build(tok, model, spec, cfg.schema_bounds, compiler=make_compiler(tok, model)).min_new_tokens
        cfg.decoding.max_new_tokens["extraction"] = low + 3
    summary = generate_candidates(cfg, "validation")
    closed = [w for w in summary.warnings if "closed early" in w]
    assert len(closed) == 1, summary.warnings
    assert limit in closed[0] and "takes at most" not in closed[0]
    other = "string bound" if "max_new_tokens" in limit else "token budget"
    assert other not in closed[0]


def test_limit_then_full_run_resumes_without_duplicates(setup, tmp_path):
    cfg = _cfg(setup, tmp_path)
    first = generate_candidates(cfg, "validation", limit=3)
    assert first.written == 3
    head = _lines(first.path)
    again = generate_candidates(cfg, "validation", limit=3)
    assert again.written == 0 and again.skipped == 3  # nothing to do: the model is not even loaded
    full = generate_candidates(cfg, "validation")
    assert full.skipped == 3 and full.written == 3
    lines = _lines(full.path)
    assert lines[:3] == head
    ids = [Candidate.model_validate_json(line).id for line in lines]
    assert len(ids) == len(set(ids)) == 6


def test_half_written_last_line_is_dropped_and_regenerated(setup, tmp_path):
    cfg = _cfg(setup, tmp_path)
    path = generate_candidates(cfg, "validation", limit=3).path
    good = _lines(path)
    with open(path, "ab") as fh:  # a crash in the middle of the 4th line
        fh.write(good[-1][:40].replace(b'"id":', b'"id":"x-'))
    done, repaired = load_done(path)
    assert repaired and [c.id for c in done] == [Candidate.model_validate_json(g).id for g in good]
    assert _lines(path) == good
    with open(path, "ab") as fh:
        fh.write(b'{"id": "partial')
    summary = generate_candidates(cfg, "validation")
    assert summary.repaired_partial_line and summary.written == 3 and summary.warnings
    lines = _lines(path)
    assert lines[:3] == good and len(lines) == 6 and all(line.endswith(b"\n") for line in lines)


def test_a_corrupt_line_in_the_middle_is_an_error_not_silently_dropped(setup, tmp_path):
    cfg = _cfg(setup, tmp_path)
    path = generate_candidates(cfg, "validation", limit=2).path
    lines = _lines(path)
    path.write_bytes(b"garbage\n" + b"".join(lines))
    with pytest.raises(UserError, match="line 1 is not a valid candidate"):
        generate_candidates(cfg, "validation")


def test_candidates_of_another_model_or_mode_are_not_mixed(setup, tmp_path):
    generate_candidates(_cfg(setup, tmp_path), "validation", limit=1)
    with pytest.raises(UserError, match="constrained=True"):
        generate_candidates(_cfg(setup, tmp_path, constrained=False), "validation")


def test_adapter_outputs_equal_a_direct_peft_models_greedy_outputs(setup, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _, base, adapter, rows, _ = setup
    cfg = _cfg(setup, tmp_path, adapter=str(adapter), constrained=False,
               max_new_tokens={"classification": 4, "extraction": 12})
    got = {c.id: c for c in read_jsonl(generate_candidates(cfg, "validation").path, Candidate)}

    tok = AutoTokenizer.from_pretrained(base)
    plain = AutoModelForCausalLM.from_pretrained(base).eval()
    peft = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), str(adapter)).eval()
    stops = [tok.eos_token_id, tok.convert_tokens_to_ids("<end_of_turn>")]
    differs = False
    for record in rows:
        ids = torch.tensor([encode_chat(tok, prompt_messages(record))])
        max_new = 4 if record.kind == "classification" else 12
        with torch.inference_mode():
            out = peft.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new,
                                do_sample=False, eos_token_id=stops, pad_token_id=tok.pad_token_id)
            differs |= not torch.allclose(plain(ids).logits, peft(ids).logits, atol=1e-3)
        new = out[0, ids.shape[1]:].tolist()
        content = new[: next((i for i, t in enumerate(new) if t in stops), len(new))]
        assert got[record.id].raw == tok.decode(content), record.id
    assert differs, "the perturbed adapter must change the model, or this test proves nothing"


def test_model_resolution_latest_run_dir_and_errors(setup, tmp_path):
    root, base, adapter, _, _ = setup
    newer = make_adapter(base, tmp_path / "runs" / "20270101T000000Z" / "adapter", seed=2)
    os.utime(newer / "adapter_config.json", (time.time() + 10, time.time() + 10))
    cfg = _cfg(setup, tmp_path, adapter="latest")
    cfg.model.runs_dir = tmp_path / "runs"
    resolved = resolve_model(cfg)
    assert resolved.adapter_dir == newer and resolved.run_dir == newer.parent
    assert resolved.base == str(base) and resolved.label.endswith("+20270101T000000Z")
    cfg.model.adapter = str(adapter)  # the adapter dir itself also works
    assert resolve_model(cfg).adapter_dir == adapter
    cfg.model.adapter = str(tmp_path / "nope")
    with pytest.raises(UserError, match="no PEFT adapter"):
        resolve_model(cfg)
    cfg.model.adapter, cfg.model.runs_dir = "latest", tmp_path / "empty"
    with pytest.raises(UserError, match="fab train.run"):
        resolve_model(cfg)
    cfg.model.merged = base
    assert resolve_model(cfg).adapter_dir is None and resolve_model(cfg).label == str(base)


def test_missing_split_file_is_a_user_error_with_the_fix(setup, tmp_path):
    with pytest.raises(UserError, match="fab dataset.split"):
        generate_candidates(_cfg(setup, tmp_path), "test")


def test_an_unknown_split_lists_the_splits(setup, tmp_path):
    with pytest.raises(UserError) as err:
        generate_candidates(_cfg(setup, tmp_path), "bogus")
    assert str(err.value) == "unknown split 'bogus': the splits are train, validation, test"


def test_a_split_of_schema_v1_with_sorted_target_keys_is_refused(setup, tmp_path):
    """A split manifest without `target_key_order: catalog` (v1: sorted keys) is a one-line error."""
    path = write_split(tmp_path / "processed", "validation", records(1, 1))
    (path.parent / "manifest.json").write_text('{"schema_version": "v1"}\n')
    cfg = _cfg(setup, tmp_path)
    datasets = write_datasets_config(tmp_path / "datasets.yaml", tmp_path / "processed")
    cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"datasets_config": datasets})})
    with pytest.raises(UserError, match="targets in sorted key order .*catalog order") as err:
        generate_candidates(cfg, "validation")
    assert "\n" not in str(err.value) and not (tmp_path / "model_outputs").exists()


def test_run_config_rope_scaling_is_applied_to_the_base_before_the_adapter(setup, tmp_path):
    import shutil

    import yaml

    from scripts.evaluation.generation.generate import load_model
    from scripts.model.gemma3 import rope_summary

    _, base, adapter, _, _ = setup
    run = tmp_path / "runs" / "R"
    shutil.copytree(adapter, run / "adapter")
    (run / "config.yaml").write_text(yaml.safe_dump(
        {"model": {"name_or_path": str(base), "max_seq_length": 131072, "rope": {"factor": 4.0}}}
    ))
    cfg = _cfg(setup, tmp_path, adapter=str(run))
    model, _ = load_model(cfg, resolve_model(cfg))
    rope = rope_summary(model.get_base_model())
    assert rope["full_attention"]["measured_factor"] == 4.0
    assert rope["sliding_attention"]["rope_type"] == "default"
    assert rope["max_position_embeddings"] == 131072


def test_merged_export_generates_without_peft(setup, tmp_path):
    _, base, _, _, _ = setup
    cfg = _cfg(setup, tmp_path)
    cfg.model.merged = base
    summary = generate_candidates(cfg, "validation", limit=2)  # the split's first two: classification
    got = list(read_jsonl(summary.path, Candidate))
    assert [c.model for c in got] == [str(base)] * 2 and all(c.valid for c in got)

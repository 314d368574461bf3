"""The model layer: where weights come from, the dtype rule, base / adapter / merged loading, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from scripts.config import UserError
from scripts.model.gemma3 import end_of_turn_eos_ids, rope_summary
from scripts.model.loading import (
    load_base,
    load_resolved,
    load_tokenizer,
    looks_local,
    pretrained_kwargs,
    resolve_weights,
    torch_dtype,
)
from tests.scripts.evaluation import make_adapter


@pytest.fixture
def offline_empty_cache(monkeypatch, tmp_path):
    """No network and an empty hub cache: a hub id can come from nowhere."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # huggingface_hub read the variable at import: without this it retries the network for ~20 s
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    return tmp_path / "hub-cache"


def test_one_dtype_rule():
    assert torch_dtype("auto", gpu=True) == torch.bfloat16 and torch_dtype("auto", gpu=False) == torch.float32
    assert torch_dtype("bf16", gpu=False) == torch.bfloat16 and torch_dtype("fp32", gpu=True) == torch.float32


def test_paths_and_hub_ids_are_told_apart(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    assert looks_local("models/tiny-gemma3")  # its folder exists here: a path, even though missing
    assert looks_local("./gemma") and looks_local(str(tmp_path / "x")) and looks_local("a/b/c")
    assert not looks_local("google/gemma-3-270m") and not looks_local("gpt2")


def test_a_local_dir_loads_as_is_and_a_missing_one_is_reported_as_missing(tiny_gemma, tmp_path,
                                                                        offline_empty_cache):
    assert pretrained_kwargs(str(tiny_gemma)) == {}
    missing = tmp_path / "models" / "gemma-typo"
    with pytest.raises(UserError) as err:
        pretrained_kwargs(str(missing))
    assert str(err.value).startswith(f"local model dir {missing} does not exist; fix the path")
    assert "hub" not in str(err.value)
    with pytest.raises(UserError, match="is a file, not a model dir"):
        pretrained_kwargs(str(tiny_gemma / "config.json"))
    with pytest.raises(UserError, match="does not exist"):
        load_tokenizer(str(missing))


def test_an_unloadable_hub_id_names_the_gguf_import(offline_empty_cache):
    with pytest.raises(UserError) as err:
        load_base("google/gemma-3-270m")
    message = str(err.value)
    assert message.startswith("cannot load google/gemma-3-270m from the Hugging Face hub "
                              "(not in the local cache and the hub is unreachable)")
    assert "`fab train.import-gguf`" in message and "\n" not in message


def test_a_cached_hub_id_loads_from_the_cache_without_the_network(tiny_gemma, offline_empty_cache):
    snapshot = offline_empty_cache / "models--acme--tiny" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    for path in tiny_gemma.iterdir():
        (snapshot / path.name).write_bytes(path.read_bytes())
    (offline_empty_cache / "models--acme--tiny" / "refs").mkdir()
    (offline_empty_cache / "models--acme--tiny" / "refs" / "main").write_text("0" * 40)
    assert pretrained_kwargs("acme/tiny") == {"local_files_only": True}
    model = load_base("acme/tiny", dtype="fp32", attn_implementation="eager")
    assert model.config.hidden_size == json.loads((tiny_gemma / "config.json").read_text())["hidden_size"]


def test_load_base_applies_dtype_attention_and_rope_through_the_config(tiny_gemma):
    model = load_base(str(tiny_gemma), dtype="fp32", attn_implementation="eager", rope=(4.0, 131072))
    assert next(model.parameters()).dtype == torch.float32
    assert model.config._attn_implementation == "eager"
    summary = rope_summary(model)
    assert summary["full_attention"]["measured_factor"] == pytest.approx(4.0)
    assert summary["max_position_embeddings"] == 131072
    plain = load_base(str(tiny_gemma), dtype=torch.float32, attn_implementation="sdpa")
    assert rope_summary(plain)["max_position_embeddings"] != 131072


def test_rope_that_cannot_apply_is_one_line(tiny_gemma):
    with pytest.raises(UserError, match=r"^model.rope / model.max_seq_length: "):
        load_base(str(tiny_gemma), rope=(4.0, 1000))


def test_adapter_of_a_run_loads_with_the_runs_rope_and_end_of_turn(tiny_gemma, tmp_path):
    run = tmp_path / "runs" / "r1"
    make_adapter(tiny_gemma, run / "adapter")
    (run / "config.yaml").write_text(yaml.safe_dump(
        {"model": {"name_or_path": str(tiny_gemma), "max_seq_length": 131072, "rope": {"factor": 4.0}}}))
    resolved = resolve_weights("latest", tmp_path / "runs")
    assert (resolved.base, resolved.adapter_dir, resolved.run_dir) == (str(tiny_gemma), run / "adapter", run)
    assert resolved.label == f"{tiny_gemma}+r1" and resolved.tokenizer_dir == str(tiny_gemma)
    model, tokenizer = load_resolved(resolved, dtype="fp32", attn_implementation="eager")
    from peft import PeftModel

    assert isinstance(model, PeftModel) and not model.training
    assert any("lora_B" in name for name, _ in model.named_parameters())
    assert rope_summary(model.get_base_model())["full_attention"]["measured_factor"] == pytest.approx(4.0)
    assert set(end_of_turn_eos_ids(tokenizer)) <= set(model.generation_config.eos_token_id)


def test_merged_bundle_and_missing_weights(tiny_gemma, tmp_path):
    merged = resolve_weights("", tmp_path, merged=tiny_gemma)
    assert (merged.base, merged.adapter_dir, merged.label) == (str(tiny_gemma), None, str(tiny_gemma))
    model, _ = load_resolved(merged, dtype="fp32")
    assert type(model).__name__ == "Gemma3ForCausalLM"
    with pytest.raises(UserError, match="has no config.json; run `fab package.export` first"):
        resolve_weights("", tmp_path, merged=tmp_path / "nothing")
    with pytest.raises(UserError, match="no trained run with an adapter/"):
        resolve_weights("latest", tmp_path / "runs")
    # an adapter whose base model dir is gone: reported as a missing dir when loading
    adapter = make_adapter(tiny_gemma, tmp_path / "adapter")
    config = json.loads((adapter / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = str(tmp_path / "deleted-base")
    (adapter / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(UserError, match=f"^local model dir {tmp_path / 'deleted-base'} does not exist"):
        load_resolved(resolve_weights(str(adapter), tmp_path))


def test_one_definition_of_each_rule():
    import ast
    import subprocess

    from scripts.config import REPO_ROOT

    found = subprocess.run(["grep", "-rn", "def pretrained_kwargs\\|def torch_dtype\\|def resolve_dtype\\|"
                            "def prompt_messages", "scripts/"], cwd=REPO_ROOT, capture_output=True, text=True)
    names = sorted(line.split("def ", 1)[1].split("(")[0] for line in found.stdout.splitlines())
    assert names == ["pretrained_kwargs", "prompt_messages", "torch_dtype"], found.stdout


def test_loading_a_model_imports_no_sample_generator_nor_importer(tiny_gemma):
    """The model layer (scripts.model) stands on the core (config, paths, contracts, chat): loading a model never
    pulls in the GGUF importer, the tiny-model builder or the 2k-line sample generator."""
    import ast
    import subprocess
    import sys

    code = ("import sys\nfrom pathlib import Path\nfrom scripts.model.loading import load_resolved, resolve_weights\n"
            f"load_resolved(resolve_weights('', Path('.'), merged={str(tiny_gemma)!r}))\n"
            "print(sorted(m for m in sys.modules if m.startswith('scripts')))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parents[3])
    assert run.returncode == 0, run.stderr[-2000:]
    loaded = set(ast.literal_eval(run.stdout.strip().splitlines()[-1]))
    assert "scripts.model.loading" in loaded and "scripts.model.identity" in loaded
    assert not loaded & {"scripts.sample_data", "scripts.model.gguf_import", "scripts.model.tiny"}, loaded

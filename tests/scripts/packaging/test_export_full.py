"""package.export of a full fine-tune (train.method full): nothing to merge, the trained weights go into the
bundle through every gate (parity with the trained model, reload, rope/config/stops, manifest)."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

from scripts.config import UserError
from scripts.contracts import BundleManifest, sha256_file
from scripts.evaluation.generation.config import EvalConfig
from scripts.evaluation.generation.generate import generate_candidates
from scripts.model.gemma3 import end_of_turn_eos_ids, rope_summary
from scripts.packaging.config import PackageConfig
from scripts.packaging.export import export_bundle
from tests.scripts.evaluation import eval_config_dict, write_datasets_config
from tests.scripts.training.conftest import full_run, tiny_root  # noqa: F401 (fixtures)


def package_cfg(run, tmp, datasets, **overrides) -> PackageConfig:
    raw = {"adapter": str(run), "runs_dir": str(run.parent), "dtype": "fp32",
           "data": {"datasets_config": str(datasets)}, "judge_dir": str(tmp / "judge"),
           "parity": {"prompts": 3, "max_new_tokens": 12}, "vllm": {"check_pages": 0}, **overrides}
    return PackageConfig.model_validate(raw)


def candidates(tmp, datasets, model_settings: dict, out: str) -> dict[str, tuple[str, str]]:
    """eval.generate's ``{id: (model label, raw output)}`` on the validation split."""
    raw = eval_config_dict(tmp, "latest", datasets)
    raw["model"].update(model_settings)
    raw["output_dir"] = str(tmp / out)
    summary = generate_candidates(EvalConfig.model_validate(raw), "validation")
    rows = [json.loads(line) for line in open(summary.path)]
    return {row["id"]: (row["model"], row["raw"]) for row in rows}


def test_export_of_a_full_run_bundles_the_trained_weights_through_every_gate(full_run, tiny_root, tmp_path):
    datasets = write_datasets_config(tmp_path / "datasets.yaml", tiny_root / "processed")
    steps = []
    result = export_bundle(package_cfg(full_run, tmp_path, datasets), tmp_path / "export", step=steps.append)
    bundle = tmp_path / "export" / "full"
    assert result.path == bundle and result.parity.greedy_identical and result.parity.reload_identical
    assert result.parity.prompts == 3 and result.parity.max_abs_logit_diff == 0.0  # the same fp32 weights
    assert "copying the trained weights" in steps and "merging" not in steps

    # the bundle holds exactly the trained weights (fp32 export), tied head stored once, no LoRA
    trained = load_file(full_run / "model" / "model.safetensors")
    bundled = load_file(bundle / "model.safetensors")
    assert bundled.keys() == trained.keys() and len(bundled) == 28
    assert all(torch.equal(bundled[k], trained[k]) for k in trained)

    # manifest: what it was made from, sha256 of every file
    manifest = BundleManifest.model_validate_json((bundle / "manifest.json").read_text())
    assert manifest.method == "full" and manifest.base_model == str(tiny_root / "tiny-gemma3")
    assert manifest.adapter_path == str(full_run / "model") and manifest.adapter_run_id == "full"
    assert manifest.adapter_sha256 == sha256_file(full_run / "model" / "model.safetensors")
    assert manifest.training_config["train"]["method"] == "full"
    assert manifest.dataset_manifest_sha256 == sha256_file(full_run / "dataset_manifest.json")
    on_disk = {p.name for p in bundle.iterdir()} - {"manifest.json"}
    assert set(manifest.files) == on_disk and {"model.safetensors", "config.json", "generation_config.json",
                                               "tokenizer.json", "README.md", "structured_outputs.json"} <= on_disk
    for name, entry in manifest.files.items():
        assert entry.sha256 == sha256_file(bundle / name)

    # plain transformers: rope x4 on the global layers, stops, chat template of the run
    config = json.loads((bundle / "config.json").read_text())
    assert config["rope_parameters"]["full_attention"] == {"rope_type": "linear", "factor": 4.0,
                                                           "rope_theta": 1_000_000.0}
    assert config["max_position_embeddings"] == 131072
    rope = rope_summary(AutoModelForCausalLM.from_pretrained(bundle))
    assert rope["full_attention"]["measured_factor"] == 4.0 and rope["sliding_attention"]["measured_factor"] == 1
    tok = AutoTokenizer.from_pretrained(bundle)
    assert set(end_of_turn_eos_ids(tok)) <= set(GenerationConfig.from_pretrained(bundle).eos_token_id)
    assert tok.chat_template == AutoTokenizer.from_pretrained(full_run / "model").chat_template

    card = (bundle / "README.md").read_text()
    assert "fully fine-tuned" in card and "nothing to merge" in card and "LoRA adapter" not in card
    assert f"vllm serve {bundle} --dtype float32" in card

    # the bundle's greedy outputs are the trained model's (eval.generate on each, same prompts and decoding)
    from_run = candidates(tmp_path, datasets, {"adapter": str(full_run)}, "run")
    from_bundle = candidates(tmp_path, datasets, {"merged": str(bundle)}, "bundle")
    assert len(from_run) >= 2 and from_run.keys() == from_bundle.keys()
    assert {raw for _, raw in from_run.values()} and all(
        from_run[i][1] == from_bundle[i][1] for i in from_run)
    assert {label for label, _ in from_run.values()} == {f"{tiny_root / 'tiny-gemma3'}+full (full)"}


def test_bf16_export_of_a_full_run_and_refusals(full_run, tiny_root, tmp_path):
    datasets = write_datasets_config(tmp_path / "datasets.yaml", tiny_root / "processed")
    out = tmp_path / "export"
    result = export_bundle(package_cfg(full_run, tmp_path, datasets, dtype="bf16", name="bf16"), out)
    assert result.parity.greedy_identical and result.parity.reload_identical
    bundled = load_file(out / "bf16" / "model.safetensors")
    assert {t.dtype for t in bundled.values()} == {torch.bfloat16} and len(bundled) == 28

    # a base override makes no sense for a full fine-tune: one line, nothing written
    with pytest.raises(UserError) as err:
        export_bundle(package_cfg(full_run, tmp_path, datasets, base=str(tiny_root / "tiny-gemma3"), name="b"), out)
    assert "is a full fine-tune" in str(err.value) and "\n" not in str(err.value)
    assert not (out / "b").exists()


def test_parity_gate_catches_a_full_run_whose_config_lost_the_rope(full_run, tiny_root, tmp_path):
    """The bundle is the run's model/ as plain transformers reads it: a config.json without the run's rope
    scaling would serve a different model than the one trained, so the gate refuses it."""
    datasets = write_datasets_config(tmp_path / "datasets.yaml", tiny_root / "processed")
    run = tmp_path / "runs" / "tampered"
    shutil.copytree(full_run, run)
    config_path = run / "model" / "config.json"
    config = json.loads(config_path.read_text())
    config["rope_parameters"]["full_attention"] = {"rope_type": "default", "rope_theta": 1_000_000.0}
    config["max_position_embeddings"] = 32768
    config_path.write_text(json.dumps(config))
    with pytest.raises(UserError, match=r"parity failed: max \|logit diff\| .* nothing written"):
        export_bundle(package_cfg(run, tmp_path, datasets), tmp_path / "export")
    assert not list((tmp_path / "export").glob("*"))

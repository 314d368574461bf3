import json

import pytest
import torch
import yaml
from safetensors import safe_open
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

from scripts.config import UserError, load_config
from scripts.contracts import BundleManifest, sha256_file
from scripts.dataset.config import DatasetsConfig
from scripts.evaluation.generation.answer_schema import max_answer_tokens, slots_json_schema
from scripts.evaluation.generation.config import EvalConfig, SchemaBounds
from scripts.evaluation.generation.generate import generate_candidates
from scripts.model.gemma3 import end_of_turn_eos_ids, rope_summary
from scripts.model.tiny import build_tiny_gemma
from scripts.packaging.config import PackageConfig
from scripts.packaging.export import export_bundle
from tests.scripts.evaluation import (
    TOKENIZER_TEXTS,
    eval_config_dict,
    make_adapter,
    records,
    write_datasets_config,
    write_split,
)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, tiny_gemma):
    """A run dir as train.run leaves it: config.yaml (rope x4 to 131072) + adapter/ on the shared tiny base."""
    tmp = tmp_path_factory.mktemp("pkg")
    base = tiny_gemma
    run = tmp / "runs" / "20261125T000000Z"
    make_adapter(base, run / "adapter")
    AutoTokenizer.from_pretrained(base).save_pretrained(run / "adapter")
    (run / "config.yaml").write_text(yaml.safe_dump({"model": {"name_or_path": str(base)}}))
    (run / "dataset_manifest.json").write_text('{"seed": 42}\n')
    datasets = write_datasets_config(tmp / "datasets.yaml", tmp / "processed")
    write_split(tmp / "processed", "validation", records(3, 3))
    return tmp, base, run, datasets


def package_cfg(tmp, datasets, **overrides) -> PackageConfig:
    # no vLLM check here (an engine start per export): tests/scripts/serving/test_vllm_serve.py runs it
    raw = {"adapter": "latest", "runs_dir": str(tmp / "runs"), "dtype": "fp32",
           "data": {"datasets_config": str(datasets)}, "judge_dir": str(tmp / "judge"),
           "parity": {"prompts": 3, "max_new_tokens": 12}, "vllm": {"check_pages": 0}, **overrides}
    return PackageConfig.model_validate(raw)


def test_export_writes_a_bundle_that_reloads_and_matches_the_adapter(trained_run):
    tmp, base, run, datasets = trained_run
    result = export_bundle(package_cfg(tmp, datasets), tmp / "export")
    bundle = tmp / "export" / run.name
    assert result.path == bundle and result.parity.greedy_identical and result.parity.reload_identical
    assert result.parity.max_abs_logit_diff <= 1e-3

    # files and manifest
    manifest = BundleManifest.model_validate_json((bundle / "manifest.json").read_text())
    on_disk = {p.name for p in bundle.iterdir()} - {"manifest.json"}
    assert set(manifest.files) == on_disk
    assert {"model.safetensors", "config.json", "generation_config.json", "tokenizer.json",
            "README.md"} <= on_disk
    for name, entry in manifest.files.items():
        assert entry.sha256 == sha256_file(bundle / name) and entry.bytes == (bundle / name).stat().st_size
    assert manifest.adapter_run_id == run.name and manifest.base_model == str(base)
    assert manifest.dataset_manifest_sha256 == sha256_file(run / "dataset_manifest.json")
    assert manifest.package_versions["transformers"].startswith("5.")
    assert not list((tmp / "export").glob(".*tmp"))

    # plain transformers sees the rope scaling, the stop tokens and the chat template
    config = json.loads((bundle / "config.json").read_text())
    assert config["rope_parameters"]["full_attention"] == {"rope_type": "linear", "factor": 4.0,
                                                           "rope_theta": 1_000_000.0}
    assert config["max_position_embeddings"] == 131072
    model = AutoModelForCausalLM.from_pretrained(bundle)
    rope = rope_summary(model)
    assert rope["full_attention"]["measured_factor"] == 4.0 and rope["sliding_attention"]["measured_factor"] == 1
    tok = AutoTokenizer.from_pretrained(bundle)
    assert set(end_of_turn_eos_ids(tok)) <= set(GenerationConfig.from_pretrained(bundle).eos_token_id)
    assert tok.chat_template == AutoTokenizer.from_pretrained(run / "adapter").chat_template
    with safe_open(bundle / "model.safetensors", "pt") as f:
        assert not any("lora" in k for k in f.keys())

    # eval.generate on the bundle gives the same outputs as on base + adapter
    def candidates(model_settings, out):
        raw = eval_config_dict(tmp, "latest", datasets)
        raw["model"].update(model_settings)
        raw["output_dir"] = str(tmp / out)
        cfg = EvalConfig.model_validate(raw)
        summary = generate_candidates(cfg, "validation")
        return {json.loads(line)["id"]: json.loads(line)["raw"] for line in open(summary.path)}

    assert candidates({"merged": str(bundle)}, "merged") == candidates({}, "adapter")

    card = (bundle / "README.md").read_text()
    assert f"vllm serve {bundle} --dtype float32 --max-model-len 131072" in card
    assert '"disable_any_whitespace": true' in card and "structured_outputs.json" in card
    assert "No evaluation run found" in card

    # what a vLLM client sends per task: the grammar eval.generate used, from the same schema
    served = json.loads((bundle / "structured_outputs.json").read_text())
    tasks = load_config(datasets, DatasetsConfig).tasks
    assert served["navpage_classifier"]["structured_outputs"] == {"choice": ["YES", "NO"]}
    extractor = served["productpage_extractor"]
    assert extractor["structured_outputs"]["json"] == slots_json_schema(tasks["productpage_extractor"].catalog,
                                                                        SchemaBounds())
    assert extractor["system_prompt"] == tasks["productpage_extractor"].system_prompt
    # with the closing processor a request needs eval.generate's budget; without it, the longest answer
    assert extractor["max_tokens"] == 512 and served["navpage_classifier"]["max_tokens"] == 4
    assert extractor["max_tokens_without_closing"] == max_answer_tokens(tasks["productpage_extractor"].catalog,
                                                                        SchemaBounds())
    assert served["navpage_classifier"]["max_tokens_without_closing"] == 4  # "YES" and the stop token
    closing = json.loads(extractor["vllm_xargs"]["closing"])
    assert closing["kind"] == "extraction" and list(closing["slots"]) == list(tasks["productpage_extractor"].slots)
    # vLLM serves the registry's slot constraints: the grammar's in the schema, the closing's in its task
    availability = extractor["structured_outputs"]["json"]["properties"]["availability"]["anyOf"][0]
    assert availability["enum"] == ["in_stock", "out_of_stock", "preorder", "limited"]
    assert closing["slots"]["categories"] == {"type": "string_list", "unique_items": True}
    assert closing["slots"]["rating"] == {"type": "number", "minimum": 0.0, "maximum": 5.0}
    manifest_check = BundleManifest.model_validate_json((bundle / "manifest.json").read_text()).vllm_check
    assert manifest_check["checked"] is False and manifest_check["summary"].startswith("not checked on vLLM")
    assert "finish_reason" in card and "#49227" in card and "#28542" in card and "--enforce-eager" in card


def test_bf16_export_and_refusals(trained_run):
    tmp, base, run, datasets = trained_run
    out = tmp / "export_bf16"
    export_bundle(package_cfg(tmp, datasets, dtype="bf16", name="bf16"), out)
    with safe_open(out / "bf16" / "model.safetensors", "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.bfloat16}
    with pytest.raises(UserError, match="already exists; pass --force"):
        export_bundle(package_cfg(tmp, datasets, dtype="bf16", name="bf16"), out)
    (out / "bf16" / "stale.txt").write_text("from an older export")
    export_bundle(package_cfg(tmp, datasets, dtype="bf16", name="bf16"), out, force=True)
    assert (out / "bf16" / "manifest.json").is_file() and not (out / "bf16" / "stale.txt").exists()
    assert [p.name for p in out.iterdir()] == ["bf16"]

    with pytest.raises(UserError, match="no PEFT adapter at"):
        export_bundle(package_cfg(tmp, datasets, adapter=str(tmp / "nothing")), out)
    # a different model on purpose: an adapter whose base is not the one it was trained on
    other = build_tiny_gemma(tmp / "other_base", TOKENIZER_TEXTS, hidden_size=32)
    with pytest.raises(UserError, match="does not fit base"):
        export_bundle(package_cfg(tmp, datasets, base=str(other), name="mismatch"), out)
    assert not (out / "mismatch").exists()


def test_parity_failure_writes_nothing(trained_run):
    tmp, base, run, datasets = trained_run
    with pytest.raises(UserError, match="parity failed: max \\|logit diff\\|"):
        export_bundle(package_cfg(tmp, datasets, name="strict", parity={"prompts": 2, "tolerance": 1e-12}),
                      tmp / "export_strict")
    assert not (tmp / "export_strict" / "strict").exists()
    assert not list((tmp / "export_strict").glob("*"))


def test_config_loads_from_repo_yaml():
    cfg = load_config("configs/package.yaml", PackageConfig)
    assert cfg.dtype == "bf16" and cfg.vllm.max_model_len == 131072

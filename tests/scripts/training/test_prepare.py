"""train.prepare: refuses changed or missing data, bad configs and tokenizers; writes the run dir."""

import json
import shutil

import pytest
import yaml

from scripts.config import REPO_ROOT, UserError, load_config
from scripts.contracts import SplitManifest
from scripts.paths import SCHEMA_VERSION
from scripts.training.config import TrainingConfig
from scripts.training.prepare import prepare_run
from tests.scripts.training.conftest import tiny_config


@pytest.fixture
def own_data(tiny_root, tmp_path):
    """A private copy of the splits and the tiny model, safe to damage."""
    shutil.copytree(tiny_root / "processed", tmp_path / "processed")
    shutil.copytree(tiny_root / "tiny-gemma3", tmp_path / "tiny-gemma3")
    return tmp_path


def test_prepare_writes_snapshots_and_counts(own_data):
    cfg = tiny_config(own_data, own_data / "runs")
    report = prepare_run(cfg, "run-a")
    run_dir = own_data / "runs" / "run-a"
    snapshot = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert snapshot["output"]["run_id"] == "run-a"
    assert TrainingConfig.model_validate(snapshot).model == cfg.model
    manifest_path = own_data / f"processed/{SCHEMA_VERSION}/splits/manifest.json"
    assert (run_dir / "dataset_manifest.json").read_bytes() == manifest_path.read_bytes()
    manifest = SplitManifest.model_validate_json(manifest_path.read_bytes())
    assert report.splits["train"].examples_in == manifest.counts["train"] == report.splits["train"].examples_kept
    assert report.splits["train"].longest_tokens > 20 and report.splits["train"].dropped_too_long == 0
    saved = json.loads((run_dir / "prepare.json").read_text())
    assert len(saved["code_version"].split("-")[0]) == 40  # git rev (+ -dirty)
    assert saved["attn_implementation"] not in ("", "auto") and saved["memory_plan"]["checked"] == ["longest example"]
    assert report.splits["train"].longest_answer_tokens > 0
    assert not list(run_dir.glob(".*.tmp"))


def test_refuses_split_file_changed_since_split(own_data):
    path = own_data / f"processed/{SCHEMA_VERSION}/splits/train.jsonl"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(UserError, match=r"train.jsonl changed since `dataset.split`"):
        prepare_run(tiny_config(own_data, own_data / "runs"), "r")
    assert not (own_data / "runs" / "r").exists()


@pytest.mark.parametrize("order", [None, "sorted"], ids=["v1-manifest-without-field", "sorted"])
def test_refuses_splits_whose_targets_have_sorted_keys(own_data, order):
    """Schema v1 data (sorted target keys) never trains a model that decodes in catalog order."""
    manifest_path = own_data / f"processed/{SCHEMA_VERSION}/splits/manifest.json"
    manifest = json.loads(manifest_path.read_text())
    assert manifest["target_key_order"] == "catalog"
    manifest.pop("target_key_order")
    manifest_path.write_text(json.dumps(manifest | ({"target_key_order": order} if order else {})))
    with pytest.raises(UserError, match=r"targets in sorted key order .*rerun `fab dataset.clean --schema-version v2`") \
            as err:
        prepare_run(tiny_config(own_data, own_data / "runs"), "r")
    assert "\n" not in str(err.value)
    assert not (own_data / "runs" / "r").exists()


def test_refuses_missing_split_file(own_data):
    (own_data / f"processed/{SCHEMA_VERSION}/splits/validation.jsonl").unlink()
    with pytest.raises(UserError, match="split file missing: .*validation.jsonl"):
        prepare_run(tiny_config(own_data, own_data / "runs"), "r")


def test_refuses_tokenizer_without_chat_template(own_data):
    tok_config = own_data / "tiny-gemma3" / "tokenizer_config.json"
    data = json.loads(tok_config.read_text())
    data.pop("chat_template", None)
    tok_config.write_text(json.dumps(data))
    (own_data / "tiny-gemma3" / "chat_template.jinja").unlink(missing_ok=True)
    with pytest.raises(UserError, match="has no chat template"):
        prepare_run(tiny_config(own_data, own_data / "runs"), "r")


def test_refuses_rope_factor_that_does_not_give_max_seq_length(own_data):
    cfg = tiny_config(own_data, own_data / "runs", model={"max_seq_length": 65536})
    with pytest.raises(UserError, match="max_seq_length .* must be the pretrained context"):
        prepare_run(cfg, "r")


def test_unknown_config_key_is_one_line_error(tmp_path):
    text = (REPO_ROOT / "configs/training.yaml").read_text().replace("  grad_accum: 2", "  grad_acum: 2")
    (tmp_path / "t.yaml").write_text(text)
    with pytest.raises(UserError, match=r"t.yaml: unknown key `train.grad_acum` \(did you mean `grad_accum`\?\)"):
        load_config(tmp_path / "t.yaml", TrainingConfig)


def test_repo_config_is_the_documented_default():
    cfg = load_config(REPO_ROOT / "configs/training.yaml", TrainingConfig)
    # the one difference: a run snapshot from before `packing` existed trained unpacked, the file packs
    assert cfg == TrainingConfig(packing={"enabled": True}) and not TrainingConfig().packing.enabled
    assert (cfg.model.max_seq_length, cfg.model.rope.factor, cfg.model.name_or_path) == (
        131072, 4.0, "models/gemma-3-270m")


def test_train_run_takes_a_prepared_run_only_under_the_config_it_was_prepared_with(own_data):
    from datasets import Dataset

    from scripts.training.prepare import load_train_tokens
    from scripts.training.run import resolve_run

    cfg = tiny_config(own_data, own_data / "runs")
    prepare_run(cfg, "p")
    # train.prepare kept the encoded train split: train.run trains on these rows, never encodes again
    tokens, stats = load_train_tokens(cfg, own_data / "runs" / "p")
    assert isinstance(tokens, Dataset) and len(tokens) == stats.examples_kept > 0
    assert set(tokens.column_names) == {"input_ids", "labels"}

    assert resolve_run(cfg.model_copy(update={"backend": "auto"}), None, None) == (own_data / "runs" / "p", None)
    changed = cfg.model_copy(update={"lora": cfg.lora.model_copy(update={"r": 4})})
    with pytest.raises(UserError) as err:
        resolve_run(changed, "p", None)
    assert str(err.value) == (f"run p was prepared with another config ({own_data / 'runs/p/config.yaml'}): lora.r "
                              "8 -> 4; pass --reprepare to prepare it again with this config, or use another --run-id")
    # without a run id, a prepared run of another config is not taken: a new one is prepared
    fresh, _ = resolve_run(changed, None, None)
    assert fresh.parent == own_data / "runs" and fresh.name != "p"
    # --reprepare: the run's snapshot is now this config
    assert resolve_run(changed, "p", None, reprepare=True) == (own_data / "runs" / "p", None)
    assert yaml.safe_load((own_data / "runs/p/config.yaml").read_text())["lora"]["r"] == 4
    # a different tokenizer or split: the kept rows are not used (train.run encodes the split itself)
    (own_data / "tiny-gemma3" / "tokenizer.json").write_text(
        (own_data / "tiny-gemma3" / "tokenizer.json").read_text() + " ")
    assert load_train_tokens(changed, own_data / "runs" / "p") is None

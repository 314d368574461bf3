import pytest
import yaml

from scripts.config import MASK, REPO_ROOT, UserError, config_snapshot, load_config, mask_secrets
from scripts.dataset.config import DatasetsConfig


def write(tmp_path, text):
    path = tmp_path / "cfg.yaml"
    path.write_text(text)
    return path


def test_repo_config_loads_with_both_tasks():
    cfg = load_config(REPO_ROOT / "configs/datasets.yaml", DatasetsConfig)
    assert cfg.tasks["navpage_classifier"].labels == ["YES", "NO"]
    assert cfg.tasks["productpage_extractor"].slots["categories"] == "string_list"
    assert cfg.stats.max_seq_length == 131072


def test_slot_order_is_the_yaml_order_through_loading_overrides_and_snapshots(tmp_path):
    """The catalog order (the `slots:` mapping as written) survives YAML, pydantic, overrides and a
    JSON snapshot; a user's task with another order keeps its own, never sorted."""
    import json

    from scripts.config import with_overrides
    from scripts.paths import SCHEMA_VERSION

    path = write(tmp_path, "tasks:\n  offers:\n    kind: extraction\n    system_prompt: s\n    slots:\n"
                           "      sku: string\n      price: number\n      availability: string\n      brand: string\n")
    cfg = load_config(path, DatasetsConfig, {"split.seed": 3})
    order = ["sku", "price", "availability", "brand"]
    assert cfg.tasks["offers"].slot_order == order and cfg.schema_version == SCHEMA_VERSION == "v2"
    assert with_overrides(cfg, {"split.seed": 4}).tasks["offers"].slot_order == order
    snapshot = json.loads(json.dumps(config_snapshot(cfg)))
    assert DatasetsConfig.model_validate(snapshot).tasks["offers"].slot_order == order
    repo = load_config(REPO_ROOT / "configs/datasets.yaml", DatasetsConfig)
    assert repo.schema_version == SCHEMA_VERSION
    assert repo.tasks["productpage_extractor"].slot_order[:3] == ["title", "brand", "price"]


def test_every_shipped_config_reads_the_current_processed_data_version():
    """One schema version at a time: the registry, both training configs and the code's default agree."""
    from scripts.paths import SCHEMA_VERSION
    from scripts.training.config import TrainingConfig

    assert load_config(REPO_ROOT / "configs/datasets.yaml", DatasetsConfig).schema_version == SCHEMA_VERSION
    for name in ("training.yaml", "training_tiny.yaml"):
        cfg = load_config(REPO_ROOT / "configs" / name, TrainingConfig)
        assert cfg.data.schema_version is None  # derived: the datasets config's
        assert cfg.resolved().data.schema_version == SCHEMA_VERSION


def test_unknown_key_names_file_and_key(tmp_path):
    base = (REPO_ROOT / "configs/datasets.yaml").read_text()
    path = write(tmp_path, base.replace("  seed: 42", "  sed: 42"))
    with pytest.raises(UserError) as err:
        load_config(path, DatasetsConfig)
    assert str(err.value) == f"{path}: unknown key `split.sed` (did you mean `seed`?)"


@pytest.mark.parametrize("old, new, line", [
    ("    kind: classification", "    knd: classification", "unknown key `tasks.{task}.knd` (did you mean `kind`?)"),
    ("  batch_size: ", "  batchsize: ", "unknown key `clean.batchsize` (did you mean `batch_size`?)"),
    ("schema_version:", "schema_verison:", "unknown key `schema_verison` (did you mean `schema_version`?)"),
])
def test_a_typod_key_gets_a_did_you_mean(tmp_path, old, new, line):
    """The suggestion comes from the field names of the model that holds the key, at any depth
    (inside a dict of models too)."""
    base = (REPO_ROOT / "configs/datasets.yaml").read_text()
    assert old in base
    path = write(tmp_path, base.replace(old, new, 1))
    task = next(iter(load_config(REPO_ROOT / "configs/datasets.yaml", DatasetsConfig).tasks))
    with pytest.raises(UserError) as err:
        load_config(path, DatasetsConfig)
    assert str(err.value) == f"{path}: {line.format(task=task)}"


def test_a_key_close_to_nothing_lists_the_keys_allowed_there(tmp_path):
    base = (REPO_ROOT / "configs/datasets.yaml").read_text()
    path = write(tmp_path, base.replace("  seed: 42", "  seed: 42\n  zzzz: 1", 1))
    with pytest.raises(UserError) as err:
        load_config(path, DatasetsConfig)
    assert str(err.value) == f"{path}: unknown key `split.zzzz` (keys here: seed, ratios)"


def test_bare_yaml_booleans_as_labels_get_a_hint(tmp_path):
    path = write(tmp_path, "tasks:\n  t:\n    kind: classification\n    labels: [YES, NO]\n    system_prompt: s\n")
    with pytest.raises(UserError, match='quote the labels'):
        load_config(path, DatasetsConfig)


def test_overrides_are_validated_too(tmp_path):
    path = REPO_ROOT / "configs/datasets.yaml"
    assert load_config(path, DatasetsConfig, {"split.seed": 9}).split.seed == 9
    with pytest.raises(UserError, match="ratios must be >= 0 and sum to 1"):
        load_config(path, DatasetsConfig, {"split.ratios": {"train": 0.9, "validation": 0.2, "test": 0.1}})


def test_a_bad_override_names_its_key_and_value():
    from scripts.config import with_overrides
    from scripts.training.config import TrainingConfig

    path = REPO_ROOT / "configs/training_tiny.yaml"
    with pytest.raises(UserError) as err:
        load_config(path, TrainingConfig, {"backend": "hfx"})
    assert str(err.value) == f"{path}: `backend` = hfx (override): Input should be 'auto', 'unsloth' or 'hf'"
    with pytest.raises(UserError) as err:
        load_config(path, TrainingConfig, {"train.max_steps": "0"})
    assert str(err.value) == f"{path}: `train.max_steps` = 0 (override): Input should be greater than 0"
    cfg = load_config(path, TrainingConfig, {"train.max_steps": "7", "backend": None})  # None: not given
    assert cfg.train.max_steps == 7 and cfg.backend == "auto"
    assert with_overrides(cfg, {"train.lr": 1e-3}).train.lr == 1e-3 and cfg.train.lr != 1e-3
    with pytest.raises(UserError, match=r"^cli: `train.lr` = -1 \(override\): Input should be greater than 0$"):
        with_overrides(cfg, {"train.lr": -1}, "cli")


def test_missing_file_and_bad_yaml_are_one_line(tmp_path):
    with pytest.raises(UserError, match="config file not found"):
        load_config(tmp_path / "nope.yaml", DatasetsConfig)
    with pytest.raises(UserError, match="not valid YAML"):
        load_config(write(tmp_path, "tasks: [unclosed"), DatasetsConfig)


def test_secrets_are_masked_by_value_and_by_key(monkeypatch):
    monkeypatch.setenv("LITELLM_API_KEY", "sk-live-123456")
    dumped = mask_secrets({"judge": {"api_key": "whatever", "note": "uses sk-live-123456 today"},
                           "hf_token": "", "items": ["sk-live-123456"]})
    assert dumped == {"judge": {"api_key": MASK, "note": f"uses {MASK} today"}, "hf_token": "",
                      "items": [MASK]}
    cfg = load_config(REPO_ROOT / "configs/datasets.yaml", DatasetsConfig,
                      {"tasks.navpage_classifier.system_prompt": "key sk-live-123456"})
    assert "sk-live-123456" not in str(config_snapshot(cfg))


def test_token_counts_are_not_mistaken_for_secrets():
    dumped = mask_secrets({"max_tokens": 5, "prompt_tokens": 9, "hf_token": "abc", "API_KEY": "k"})
    assert dumped == {"max_tokens": 5, "prompt_tokens": 9, "hf_token": MASK, "API_KEY": MASK}


def test_use_flash_attention_2_is_an_alias_in_training_and_eval_configs(tmp_path):
    from scripts.env_check import _flash_attn_check
    from scripts.evaluation.generation.config import EvalConfig
    from scripts.training.config import TrainingConfig

    training = (REPO_ROOT / "configs/training.yaml").read_text()
    assert "  attn_implementation: auto" in training
    path = write(tmp_path, training.replace("  attn_implementation: auto", "  use_flash_attention_2: true"))
    assert load_config(path, TrainingConfig).model.attn_implementation == "flash_attention_2"
    evaluation = (REPO_ROOT / "configs/eval.yaml").read_text()
    path = write(tmp_path, evaluation.replace("  attn_implementation: auto", "  use_flash_attention_2: true"))
    assert load_config(path, EvalConfig).model.attn_implementation == "flash_attention_2"
    assert load_config(path, EvalConfig, {"model.use_flash_attention_2": False}).model.attn_implementation == "windowed_sdpa"
    with pytest.raises(UserError, match="use_flash_attention_2: true contradicts attn_implementation: eager"):
        load_config(path, EvalConfig, {"model.attn_implementation": "eager"})
    assert "model.use_flash_attention_2: true (= attn_implementation: flash_attention_2)" in (
        _flash_attn_check(None).detail)


def test_slots_take_a_plain_type_or_a_mapping_with_constraints(tmp_path):
    from scripts.dataset.config import TaskSpec

    cfg = load_config(REPO_ROOT / "configs/datasets.yaml", DatasetsConfig)
    spec = cfg.tasks["productpage_extractor"]
    assert spec.slots["availability"] == "string" and spec.slots["rating"] == "number"  # the type view
    assert spec.catalog["availability"].enum == ["in_stock", "out_of_stock", "preorder", "limited"]
    assert (spec.catalog["rating"].minimum, spec.catalog["rating"].maximum) == (0, 5)
    assert spec.catalog["currency"].pattern == "^[A-Z]{3}$" and spec.catalog["categories"].unique_items
    # a dump is the YAML form again (plain type where no constraint) and loads to the same spec
    dumped = spec.model_dump(mode="json")["slots"]
    assert dumped["title"] == "string" and dumped["rating"] == {"type": "number", "minimum": 0.0, "maximum": 5.0}
    assert TaskSpec.model_validate(spec.model_dump(mode="json")) == spec


@pytest.mark.parametrize("slot, message", [
    ({"type": "string", "enmu": ["a"]}, "unknown key `tasks.t.slots.a.enmu` (did you mean `enum`?)"),
    ({"type": "number", "enum": ["a"]}, "`enum` does not apply to a number slot (its keys: maximum, minimum)"),
    ({"type": "string", "pattern": "("}, "pattern '(' is not a regex"),
    ({"type": "string", "enum": ["usd"], "pattern": "^[A-Z]{3}$"}, "enum value 'usd' does not match pattern"),
    ({"type": "integer", "minimum": 5, "maximum": 1}, "minimum must be <= maximum"),
    ({"type": "string", "pattern": "^x+$", "max_chars": 4}, "`pattern` and `max_chars` together are not supported"),
])
def test_a_bad_slot_constraint_is_one_line_naming_the_slot(tmp_path, slot, message):
    path = tmp_path / "datasets.yaml"
    path.write_text(yaml.safe_dump({"tasks": {"t": {"kind": "extraction", "system_prompt": "x",
                                                    "slots": {"a": slot}}}}))
    with pytest.raises(UserError) as err:
        load_config(path, DatasetsConfig)
    assert message in str(err.value) and "\n" not in str(err.value)

"""Environment (.env) and typed YAML configs, one pydantic model per stage.

    from scripts.config import load_config, DatasetsConfig
    cfg = load_config("configs/datasets.yaml", DatasetsConfig)

Every config model forbids unknown keys, so a typo in a YAML file is a
one-line `UserError` naming the file and the key. Secrets are read from the
environment only and are masked as `***` in every dump.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from dotenv import load_dotenv
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from scripts.paths import SCHEMA_VERSION, ProcessedData, Workspace

REPO_ROOT = Path(__file__).resolve().parent.parent
SECRET_ENV_VARS = ("LITELLM_API_KEY", "HUGGINGFACE_TOKEN")
ROCM_ENV_VARS = (
    "ROCM_VISIBLE_DEVICES",
    "HIP_VISIBLE_DEVICES",
    "HSA_OVERRIDE_GFX_VERSION",
    "PYTORCH_HIP_ALLOC_CONF",
    "CUDA_VISIBLE_DEVICES",
)
MASK = "***"


class UserError(Exception):
    """An expected failure caused by input; tasks print it as one line."""


def load_env(env_file: Path | None = None) -> None:
    """Load `.env` from the repo root (never overriding the real environment)."""
    load_dotenv(env_file or REPO_ROOT / ".env", override=False)
    # LiteLLM fetches a cost map over the network at import unless told not to.
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


def dataset_db_path(workspace: Workspace | None = None) -> Path:
    """The raw DuckDB: DATASET_DB_PATH when set, else the workspace's ``data/raw/dataset.duckdb``."""
    return Path(os.environ.get("DATASET_DB_PATH") or (workspace or Workspace()).raw_db)


def secret_status() -> dict[str, bool]:
    """Which secrets are set; never their values."""
    return {name: bool(os.environ.get(name)) for name in SECRET_ENV_VARS}


def mask_secrets(value: Any) -> Any:
    """Replace secret values (by env var value or by key name) with `***`."""
    secrets = {os.environ[n] for n in SECRET_ENV_VARS if os.environ.get(n)}
    if isinstance(value, dict):
        return {
            k: MASK if _is_secret_key(k) and v else mask_secrets(v) for k, v in value.items()
        }
    if isinstance(value, list):
        return [mask_secrets(v) for v in value]
    if isinstance(value, str):
        for secret in secrets:
            value = value.replace(secret, MASK)
    return value


_SECRET_KEY = re.compile(r"(^|[_-])(api_?key|secret|password|token)$")


def _is_secret_key(key: str) -> bool:
    """`api_key`, `hf_token`, `password`: yes; `max_tokens`, `prompt_tokens`: no."""
    return bool(_SECRET_KEY.search(str(key).lower()))


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- configs/datasets.yaml -------------------------------------------------


SlotType = Literal["string", "number", "integer", "boolean", "string_list"]
CONSTRAINT_KEYS = ("enum", "max_chars", "pattern", "minimum", "maximum", "unique_items", "max_items")
_KEYS_FOR = {  # which constraint keys each slot type takes
    "string": {"enum", "max_chars", "pattern"},
    "number": {"minimum", "maximum"},
    "integer": {"minimum", "maximum"},
    "boolean": set(),
    "string_list": {"unique_items", "max_items", "max_chars"},
}


class SlotSpec(StrictModel):
    """One catalog slot: its JSON type (every slot is nullable) and optional constraints on a non-null
    value. In YAML either the plain type (``title: string``) or a mapping
    (``availability: {type: string, enum: [in_stock, out_of_stock]}``). The grammar, the answer closing,
    the validator and the export's vLLM schema all read these (``scripts.evaluation.decoding``)."""

    type: SlotType
    enum: list[str] | None = Field(default=None, min_length=1, description="string: the only values allowed")
    max_chars: int | None = Field(default=None, gt=0, description="string / each list item: most characters; "
                                  "enforced by the answer closing, not the grammar (see decoding.py)")
    pattern: str | None = Field(default=None, description="string: a regex the WHOLE value must match "
                                "(anchors implied, as xgrammar applies it); characters JSON must escape "
                                "(quote, backslash, controls) never match")
    minimum: float | None = Field(default=None, description="number / integer: inclusive lower bound")
    maximum: float | None = Field(default=None, description="number / integer: inclusive upper bound")
    unique_items: bool = Field(default=False, description="string_list: no item twice")
    max_items: int | None = Field(default=None, gt=0, description="string_list: most items")

    @model_validator(mode="before")
    @classmethod
    def _plain_type(cls, data: Any) -> Any:
        return {"type": data} if isinstance(data, str) else data

    @model_validator(mode="after")
    def _keys_fit_type(self) -> SlotSpec:
        wrong = [k for k in self.constraint_keys() if k not in _KEYS_FOR[self.type]]
        if wrong:
            allowed = ", ".join(sorted(_KEYS_FOR[self.type])) or "none"
            raise ValueError(f"`{wrong[0]}` does not apply to a {self.type} slot (its keys: {allowed})")
        if self.pattern is not None and self.max_chars is not None:
            raise ValueError("`pattern` and `max_chars` together are not supported: the answer closing could "
                             "be left with a pattern it cannot finish within the characters left; keep one")
        if self.enum is not None and len(set(self.enum)) != len(self.enum):
            raise ValueError("enum lists a value twice")
        if self.pattern is not None:
            try:
                re.compile(self.pattern)
            except re.error as exc:
                raise ValueError(f"pattern {self.pattern!r} is not a regex ({exc})") from None
        if self.minimum is not None and self.maximum is not None and self.minimum > self.maximum:
            raise ValueError("minimum must be <= maximum")
        if self.type == "integer" and any(v is not None and v != int(v) for v in (self.minimum, self.maximum)):
            raise ValueError("an integer slot's minimum/maximum must be whole numbers")
        for value in self.enum or []:
            if self.max_chars is not None and len(value) > self.max_chars:
                raise ValueError(f"enum value {value!r} is longer than max_chars {self.max_chars}")
            if self.pattern is not None and not pattern_matches(self.pattern, value):
                raise ValueError(f"enum value {value!r} does not match pattern {self.pattern!r}")
        return self

    @model_serializer(mode="wrap")
    def _dump(self, handler: Any) -> Any:
        """The YAML form back: the plain type string when there are no constraints."""
        if not self.constraint_keys():
            return self.type
        return {k: v for k, v in handler(self).items() if k == "type" or k in self.constraint_keys()}

    def constraint_keys(self) -> list[str]:
        """The constraint keys set on this slot, in CONSTRAINT_KEYS order."""
        return [k for k in CONSTRAINT_KEYS if getattr(self, k) is not None and getattr(self, k) is not False]

    def narrowed(self, example: Any) -> SlotSpec:
        """This slot under an example's own ``slot_specs`` entry, which may only narrow it: enums
        intersect, the tighter bound wins, a pattern is added only where none is configured.
        Keys that are not constraints (``scorer``, ``type``) and a malformed entry change nothing."""
        if not isinstance(example, dict):
            return self
        given = {k: example[k] for k in CONSTRAINT_KEYS if k in example and k in _KEYS_FOR[self.type]}
        if not given:
            return self
        merged = self.model_dump(mode="python") if self.constraint_keys() else {"type": self.type}
        tighter = {"minimum": max, "maximum": min, "max_chars": min, "max_items": min}
        for key, value in given.items():
            mine = merged.get(key)
            if key == "enum" and isinstance(value, list):
                merged[key] = [v for v in (mine or value) if v in value]
            elif key in tighter and isinstance(value, (int, float)) and not isinstance(value, bool):
                merged[key] = value if mine is None else tighter[key](mine, value)
            elif key == "unique_items":
                merged[key] = bool(mine) or value is True
            elif key == "pattern" and mine is None:
                merged[key] = value
        try:
            return SlotSpec.model_validate(merged)
        except ValueError:
            return self  # a malformed per-example spec never breaks a run; the registry's constraints apply


def pattern_matches(pattern: str, value: str) -> bool:
    """``pattern`` applied as xgrammar applies it: the whole value must match (anchors implied)."""
    return re.fullmatch(pattern, value) is not None


class TaskSpec(StrictModel):
    model_config = ConfigDict(extra="forbid", validate_by_name=True, validate_by_alias=True,
                              serialize_by_alias=True)

    kind: Literal["classification", "extraction"]
    labels: list[str] | None = Field(
        default=None, description="closed label set (classification only), upper case"
    )
    system_prompt: str = Field(description="default system prompt when a row has none")
    catalog: dict[str, SlotSpec] | None = Field(
        default=None, alias="slots",
        description="extraction schema (YAML key `slots`): slot name -> JSON type or {type, constraints} "
        "(all nullable), in catalog order: the order the answer's keys are written in (targets, grammar, "
        "closing)",
    )

    @field_validator("labels", mode="before")
    @classmethod
    def _labels_are_text(cls, value: Any) -> Any:
        if isinstance(value, list) and any(isinstance(v, bool) for v in value):
            raise ValueError('quote the labels ("YES", "NO"): bare YES/NO are booleans in YAML')
        return value

    @model_validator(mode="after")
    def _kind_fields(self) -> TaskSpec:
        if self.kind == "classification" and not self.labels:
            raise ValueError("classification tasks need `labels`")
        if self.kind == "extraction" and self.labels:
            raise ValueError("extraction tasks take `slots`, not `labels`")
        if self.kind == "classification" and self.catalog:
            raise ValueError("classification tasks take `labels`, not `slots`")
        if self.labels:
            self.labels = [label.strip().upper() for label in self.labels]
        return self

    @property
    def slots(self) -> dict[str, SlotType] | None:
        """Slot name -> JSON type, in catalog order (None for classification): what scorers and
        reports read. The constraints are in :attr:`catalog` (typed ``SlotSpec`` per slot)."""
        return None if self.catalog is None else {name: s.type for name, s in self.catalog.items()}

    @property
    def slot_order(self) -> list[str]:
        """The catalog order: the order of ``slots:`` in the registry (YAML mapping order, kept by
        pydantic), also the order of the catalog lines in the prompt. The canonical key order of an
        extraction answer: ``dataset.clean`` writes targets in it, the grammar generates it, the
        closing follows it."""
        return list(self.catalog or {})

    def slots_for(self, example_specs: Any = None) -> dict[str, SlotSpec]:
        """The catalog narrowed by one example's ``slot_specs`` (see ``SlotSpec.narrowed``)."""
        catalog = self.catalog or {}
        if not isinstance(example_specs, dict):
            return dict(catalog)
        return {name: s.narrowed(example_specs.get(name)) for name, s in catalog.items()}


class CleanSettings(StrictModel):
    batch_size: int = Field(default=2048, gt=0, description="rows per streamed Arrow batch")


class SplitSettings(StrictModel):
    seed: int = 42
    ratios: dict[Literal["train", "validation", "test"], float] = Field(
        default_factory=lambda: {"train": 0.8, "validation": 0.1, "test": 0.1}
    )

    @model_validator(mode="after")
    def _ratios(self) -> SplitSettings:
        if set(self.ratios) != {"train", "validation", "test"}:
            raise ValueError("ratios needs train, validation and test")
        if any(r < 0 for r in self.ratios.values()) or abs(sum(self.ratios.values()) - 1) > 1e-6:
            raise ValueError("ratios must be >= 0 and sum to 1")
        return self


class StatsSettings(StrictModel):
    tokenizer: str = Field(default="models/gemma-3-270m", description="local dir (`fab train.import-gguf`) or HF id")
    max_seq_length: int = Field(default=131072, gt=0, description="tokens; training context")
    top_domains: int = Field(default=10, gt=0)
    constraint_margin: float = Field(default=0.5, ge=0, description="proposed bounds: the observed extreme "
                                     "plus this share of it (0.5: a 54-char longest title proposes 81)")
    enum_max_values: int = Field(default=12, gt=0, description="a string slot with at most this many distinct "
                                 "values is proposed as an enum ...")
    enum_min_count: int = Field(default=5, gt=0, description="... when each of them is seen at least this often")
    constraint_min_values: int = Field(default=20, gt=0, description="fewer non-null values: no proposal")


class DatasetsConfig(StrictModel):
    root: Path = Field(default=Path("."), description="the workspace: every stage derives its paths from it "
                       "(data/, models/runs, models/export, reports/; scripts.paths.Workspace)")
    schema_version: str = SCHEMA_VERSION
    processed_dir: Path | None = Field(default=None, description="null: <root>/data/processed")
    tasks: dict[str, TaskSpec]
    clean: CleanSettings = CleanSettings()
    split: SplitSettings = SplitSettings()
    stats: StatsSettings = StatsSettings()

    def workspace(self, schema_version: str | None = None) -> Workspace:
        """Every artifact path of this dataset's stages (``None``: the config's schema_version)."""
        return Workspace(self.root, schema_version or self.schema_version, self.processed_dir)

    def data_paths(self, schema_version: str | None = None) -> ProcessedData:
        """Where this version's clean files, splits and stats live (``None``: the config's schema_version)."""
        return self.workspace(schema_version).data


class WorkspaceSettings(StrictModel):
    """What a stage config names to find its workspace: the datasets config (task registry, root, schema
    version). Every path the stage reads or writes is derived from it unless the stage overrides one."""

    datasets_config: Path = Field(default=Path("configs/datasets.yaml"),
                                  description="task registry, workspace root and schema version")
    schema_version: str | None = Field(default=None, description="null: the datasets config's; another "
                                       "version is an error (every stage reads the same processed data)")

    def datasets(self) -> DatasetsConfig:
        return load_config(self.datasets_config, DatasetsConfig)

    def workspace(self) -> Workspace:
        datasets = self.datasets()
        if self.schema_version is not None and self.schema_version != datasets.schema_version:
            raise UserError(f"`schema_version: {self.schema_version}` contradicts {self.datasets_config} "
                            f"(schema_version {datasets.schema_version}); remove it, every stage reads the "
                            "datasets config's version")
        return datasets.workspace()


ConfigT = TypeVar("ConfigT", bound=BaseModel)


def load_config(
    path: str | Path, model: type[ConfigT], overrides: dict[str, Any] | None = None
) -> ConfigT:
    """Read YAML, apply dotted-key overrides, validate; errors are one line."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: not valid YAML ({exc.__class__.__name__})") from exc
    if not isinstance(raw, dict):
        raise UserError(f"{path}: expected a mapping at the top level")
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    for dotted, value in overrides.items():
        set_dotted(raw, dotted, value)
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise UserError(f"{path}: {_first_error(exc, overrides, model)}") from exc


def with_overrides(cfg: ConfigT, overrides: dict[str, Any], source: str = "config") -> ConfigT:
    """A validated copy of ``cfg`` with dotted-key overrides; a bad value is the same one-line
    `UserError` as in `load_config`."""
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if not overrides:
        return cfg
    raw = cfg.model_dump(mode="json")
    for dotted, value in overrides.items():
        set_dotted(raw, dotted, value)
    try:
        return type(cfg).model_validate(raw)
    except ValidationError as exc:
        raise UserError(f"{source}: {_first_error(exc, overrides, type(cfg))}") from exc


def set_dotted(tree: dict, dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    for key in parents:
        tree = tree.setdefault(key, {})
    tree[leaf] = value


def _first_error(exc: ValidationError, overrides: dict[str, Any] | None = None,
                 model: type[BaseModel] | None = None) -> str:
    # a typo'd key also makes the real key "Field required": the unknown key is the one to name
    err = next((e for e in exc.errors() if e["type"] == "extra_forbidden"), exc.errors()[0])
    where = ".".join(str(p) for p in err["loc"]) or "(top level)"
    if err["type"] == "extra_forbidden":
        return f"unknown key `{where}`{_did_you_mean(model, err['loc'])}"
    more = f" ({len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
    if not err["loc"] and err["type"] == "value_error":  # a cross-section check: its message names the keys
        return err["msg"].removeprefix("Value error, ") + more
    for dotted, value in (overrides or {}).items():
        if where == dotted or where.startswith(dotted + "."):
            # a command-line value: say which one, the file itself may be fine
            return f"`{dotted}` = {value} (override): {err['msg']}{more}"
    return f"`{where}`: {err['msg']}{more}"


def _did_you_mean(model: type[BaseModel] | None, loc: tuple) -> str:
    """`` (did you mean `lr`?)`` for a typo'd key, from the field names of the model that holds it;
    the keys allowed there when nothing is close."""
    import difflib

    holder = _model_at(model, loc[:-1]) if model else None
    if holder is None:
        return ""
    names = [f.alias or name for name, f in holder.model_fields.items() if not name.startswith("_")]
    close = difflib.get_close_matches(str(loc[-1]), names, n=1, cutoff=0.5)
    if close:
        return f" (did you mean `{close[0]}`?)"
    return f" (keys here: {', '.join(names)})"


def _model_at(model: Any, loc: tuple) -> type[BaseModel] | None:
    """The pydantic model that validates the mapping at ``loc`` (keys, dict keys and list indexes)."""
    import inspect
    import types
    import typing

    def options(tp: Any) -> list[Any]:
        origin = typing.get_origin(tp)
        if origin in (typing.Union, types.UnionType):
            return [o for arg in typing.get_args(tp) for o in options(arg)]
        if origin is typing.Annotated:
            return options(typing.get_args(tp)[0])
        return [tp]

    def step(tp: Any, part: Any) -> Any:
        for option in options(tp):
            origin, args = typing.get_origin(option), typing.get_args(option)
            if inspect.isclass(option) and issubclass(option, BaseModel):
                if part == option.__name__:  # pydantic names the member of a union of models
                    return option
                fields = {f.alias or name: f for name, f in option.model_fields.items()} | option.model_fields
                if part in fields:
                    return fields[part].annotation
            elif origin is dict and len(args) == 2:
                return args[1]
            elif origin in (list, tuple, set, frozenset) and args and isinstance(part, int):
                return args[0]
        return None

    tp: Any = model
    for part in loc:
        tp = step(tp, part)
        if tp is None:
            return None
    found = [o for o in options(tp) if inspect.isclass(o) and issubclass(o, BaseModel)]
    return found[0] if found else None


def config_snapshot(cfg: BaseModel) -> dict[str, Any]:
    """JSON-ready dump of a config with secrets masked."""
    return mask_secrets(cfg.model_dump(mode="json"))


# --- configs/training.yaml -------------------------------------------------


class RopeSettings(StrictModel):
    type: Literal["linear"] = Field(
        default="linear", description="rope scaling of the global-attention layers; local layers keep theta"
    )
    factor: float = Field(default=4.0, ge=1.0, description="pretrained context (32768) x factor = max_seq_length")


FLASH_ATTENTION_ALIAS = "use_flash_attention_2"
AttnImplementation = Literal["auto", "flash_attention_2", "windowed_sdpa", "sdpa", "eager"]


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


class LoraSettings(StrictModel):
    r: int = Field(default=16, gt=0, description="adapter rank")
    alpha: int = Field(default=32, gt=0, description="scaling = alpha / r")
    dropout: float = Field(default=0.05, ge=0.0, lt=1.0)
    target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        min_length=1,
    )


TrainMethod = Literal["lora", "full"]


class TrainSettings(StrictModel):
    method: TrainMethod = Field(
        default="lora",
        description="lora: a LoRA adapter (the `lora` section) on the frozen base, saved as adapter/; "
        "full: every weight trains (embeddings stay tied to the LM head), saved as model/; "
        "the `lora` section is unused by full",
    )
    optimizer: str = Field(default="adamw_torch", description="transformers `optim` name")
    lr: float = Field(default=3e-4, gt=0)
    scheduler: str = Field(default="cosine", description="transformers `lr_scheduler_type`")
    warmup_ratio: float = Field(default=0.05, ge=0.0, lt=1.0, description="share of total steps")
    weight_decay: float = Field(default=0.0, ge=0.0)
    max_grad_norm: float = Field(default=1.0, gt=0)
    per_device_batch_size: int = Field(default=1, gt=0, description="sequences per device per micro-step")
    grad_accum: int = Field(default=2, gt=0, description="micro-steps per optimiser step")
    epochs: float = Field(default=3.0, gt=0)
    max_steps: int | None = Field(default=None, gt=0, description="optimiser steps; overrides epochs when set")
    save_steps: int = Field(default=200, gt=0, description="optimiser steps between checkpoints")
    save_total_limit: int | None = Field(default=3, gt=0, description="checkpoints kept")
    logging_steps: int = Field(default=10, gt=0, description="optimiser steps between metrics.jsonl lines")
    gradient_checkpointing: bool = Field(default=True, description="needed at 128k context")
    seed: int = 42


class TrainingDataSettings(WorkspaceSettings):
    processed_dir: Path | None = Field(default=None, description="null: the workspace's data/processed")
    truncation: Literal["drop", "truncate_prompt_left"] = Field(
        default="drop",
        description="examples over max_seq_length: drop them (counted) or cut the prompt's oldest tokens",
    )

    def workspace(self) -> Workspace:
        workspace = super().workspace()
        if self.processed_dir is None:
            return workspace
        return Workspace(workspace.root, workspace.schema_version, self.processed_dir)

    def data_paths(self) -> ProcessedData:
        return self.workspace().data


class OutputSettings(StrictModel):
    runs_dir: Path | None = Field(default=None, description="null: the workspace's models/runs")
    run_id: str | None = Field(default=None, description="default: UTC timestamp at prepare time")


class LossSettings(StrictModel):
    chunk_size: int = Field(default=4096, gt=0, description="tokens per LM-head tile of the chunked cross-entropy")


class PackingSettings(StrictModel):
    enabled: bool = Field(default=False, description="several examples per micro-batch, concatenated into one "
                          "row without padding: positions restart per example and no example attends to another. "
                          "configs/training.yaml turns it on; false here reads a run snapshot written before "
                          "the key existed as what it was, unpacked")
    max_tokens: int = Field(default=4096, gt=0, description="tokens per packed micro-batch row; an example "
                            "longer than this trains alone, whole (packing never truncates)")


class TrainingConfig(StrictModel):
    backend: Literal["auto", "unsloth", "hf"] = "auto"
    model: ModelSettings = ModelSettings()
    lora: LoraSettings = LoraSettings()
    train: TrainSettings = TrainSettings()
    data: TrainingDataSettings = TrainingDataSettings()
    output: OutputSettings = OutputSettings()
    loss: LossSettings = LossSettings()
    packing: PackingSettings = PackingSettings()

    @property
    def runs_dir(self) -> Path:
        return self.output.runs_dir or self.data.workspace().runs_dir

    def resolved(self) -> TrainingConfig:
        """This config with the paths it derives from its workspace written in: what a run's config.yaml
        records, so eval and export read where it trained whatever the datasets config says later."""
        workspace = self.data.workspace()
        data = self.data.model_copy(update={"schema_version": workspace.schema_version,
                                            "processed_dir": workspace.processed_dir})
        return self.model_copy(update={"data": data, "output": self.output.model_copy(
            update={"runs_dir": self.output.runs_dir or workspace.runs_dir})})

    @model_validator(mode="after")
    def _packing_fits(self) -> TrainingConfig:
        if not self.packing.enabled:
            return self
        if self.train.per_device_batch_size != 1:
            raise ValueError(f"packing.enabled: a micro-batch is one packed row of up to packing.max_tokens "
                             f"tokens, so train.per_device_batch_size must be 1, not "
                             f"{self.train.per_device_batch_size} (raise packing.max_tokens instead)")
        if self.packing.max_tokens > self.model.max_seq_length:
            raise ValueError(f"packing.max_tokens {self.packing.max_tokens} exceeds model.max_seq_length "
                             f"{self.model.max_seq_length}: a packed row must be no longer than the longest example")
        return self

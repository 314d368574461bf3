"""Typed `configs/datasets.yaml`: the task registry (kinds, labels, slots and their constraints), the
workspace root and schema version, and the clean / split / stats settings; ``WorkspaceSettings``, the
part of every other stage's config that names this file (its workspace).

    from scripts.config import load_config
    from scripts.dataset.config import DatasetsConfig
    cfg = load_config("configs/datasets.yaml", DatasetsConfig)
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_serializer, model_validator

from scripts.config import StrictModel, UserError, load_config
from scripts.paths import SCHEMA_VERSION, ProcessedData, Workspace

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
    the validator and the export's vLLM schema all read these (``scripts.evaluation.generation.decoding``)."""

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

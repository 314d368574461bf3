"""Environment (.env), secrets, and the loading of typed YAML configs; each stage's config model lives
in its stage package (``scripts.dataset.config``, ``scripts.training.config``, ...).

    from scripts.config import load_config
    from scripts.dataset.config import DatasetsConfig
    cfg = load_config("configs/datasets.yaml", DatasetsConfig)

Every config model forbids unknown keys, so a typo in a YAML file is a
one-line `UserError` naming the file and the key. Secrets are read from the
environment only and are masked as `***` in every dump.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, TypeVar

import yaml
from dotenv import load_dotenv
from pydantic import BaseModel, ConfigDict, ValidationError

from scripts.paths import Workspace

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

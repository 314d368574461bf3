"""Packaging: a merged, parity-checked bundle of a trained run for vLLM.

    fab package.export --config configs/package.yaml [--output models/export] [--force]
"""

from __future__ import annotations

from pathlib import Path


from fab_tasks._common import console, task, user_errors
from scripts.config import load_config

DEFAULT_CONFIG = "configs/package.yaml"


@task(help={
    "config": f"what to export and how to check it (default {DEFAULT_CONFIG})",
    "output": "folder the bundle goes into, as <output>/<name> (default: the workspace's models/export)",
    "adapter": "run dir (LoRA or full fine-tune), adapter dir or `latest`, overriding the config",
    "name": "bundle folder name (default: the run id)",
    "force": "replace an existing bundle of the same name",
})
@user_errors
def export(c, config=DEFAULT_CONFIG, output="", adapter="", name="", force=False):
    """Merge a trained run into a parity-checked bundle for vLLM (manifest, model card).

    A LoRA adapter is merged into its base; a full fine-tune's weights are copied. The bundle is
    written only when the parity (logits, greedy output) and reload checks pass.
    """
    from scripts.packaging.config import PackageConfig
    from scripts.packaging.export import export_bundle

    overrides = {k: v for k, v in {"adapter": adapter, "name": name}.items() if v}
    cfg = load_config(config, PackageConfig, overrides)
    with console.status("exporting") as status:
        result = export_bundle(cfg, Path(output) if output else None, force=force, step=lambda s: status.update(s))
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/] {warning}")
    p = result.parity
    console.print(f"parity: max |logit diff| {p.max_abs_logit_diff:.2e} <= {p.tolerance:.0e}, greedy identical "
                  f"on {p.prompts} prompts, reload identical")
    console.print(f"wrote {result.path} ({result.size_bytes / 2**20:.1f} MiB); serve with:\n  {result.vllm_command}")

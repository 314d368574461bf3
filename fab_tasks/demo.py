"""`fab demo`: the whole chain on the sample data on CPU: a tiny model in minutes, or `--real`."""

from __future__ import annotations

from invoke.exceptions import Exit

from fab_tasks._common import console, task, user_errors


@task(kinds={"steps": int, "eval_limit": int}, help={
    "rows": "sample examples to generate (default 2000)",
    "steps": "training steps (default 800 for the tiny model, 120 with --real)",
    "eval_limit": "validation examples to generate and judge, taken from each task in turn; 0 = all "
                  "(default all; 24 with --real)",
    "seed": "sample data and model seed (default 0)",
    "real": "the real google/gemma-3-270m (imported once from the packaged GGUF; needs "
            "./scripts/setup_env.sh --base-model): LoRA on a CPU budget (~40 min on 2 cores), fine-tuned "
            "vs zero-shot",
    "engine": "auto (vLLM when installed) | hf | vllm: what generates the answers; hf also skips the export's "
              "vLLM check",
})
@user_errors
def demo(c, rows=2000, steps=None, eval_limit=None, seed=0, real=False, engine="auto"):
    """Sample -> clean -> split -> stats -> model -> train -> generate -> judge -> report -> export -> tokens.

        fab demo            # tiny random Gemma 3: proves the chain runs and nav learns (1.5 min on 2 idle
                            # cores, 9-16 min on a shared machine; measured 2026-12-02..06)
        fab demo --real     # the real Gemma 3 270M: fine-tuned vs zero-shot on unseen sites
    """
    from scripts.demo import DemoInterrupted, DemoSettings, run_demo

    from scripts.serving.engines import resolve_engine

    resolve_engine(engine)  # a bad name, or vllm without vLLM, is one line here, not after training
    changes = {"rows": int(rows), "seed": int(seed), "engine": engine}
    if steps is not None:
        changes["steps"] = int(steps)
    if eval_limit is not None:
        changes["eval_limit"] = int(eval_limit)
    settings = DemoSettings.for_real(**changes) if real else DemoSettings(**changes)
    try:
        result = run_demo(settings, say=console.print, console=console)
    except DemoInterrupted as stopped:
        raise Exit(f"{stopped}", code=130 if stopped.signal == "SIGINT" else 143) from None
    console.print(f"\n[bold]demo finished in {sum(result.seconds.values()):.0f}s[/]; artifacts:")
    for label, path in result.artifacts.items():
        console.print(f"  {label:20} {path}")
    if real:
        console.print(f"\n[bold]headline[/] (google/gemma-3-270m + LoRA, {settings.steps} CPU steps; "
                      "validation sites never seen in training)")
    else:
        console.print("\n[bold]headline[/] (a tiny model trained from scratch: it proves the chain runs and that "
                      "nav learns; it does not learn to copy values from a page, so its extraction answers are not a quality "
                      "figure: see docs/demo.md, and fab demo --real)")
    for line in result.headline:
        console.print(f"  {line}")
    console.print("  valid = the answer parses against the task's schema, which constrained decoding guarantees; "
                  "answers closed early at the token budget or the string bound count as valid, their cut slots "
                  "are scored wrong:")
    for model, (closed, written) in result.closed_early.items():
        console.print(f"    {model}: {closed} of {written} answers closed early")
    if result.zero_shot:
        console.print("[bold]zero-shot[/] (the same base model, no adapter, same prompts and decoding)")
        for line in result.zero_shot:
            console.print(f"  {line}")

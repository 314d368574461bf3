"""`fab demo`: the whole chain on the sample data with a tiny model, on CPU, in minutes."""

from __future__ import annotations

from invoke import task

from fab_tasks._common import console, user_errors


@task(help={
    "rows": "sample examples to generate (default 2000)",
    "steps": "training steps of the tiny model (default 800)",
    "eval_limit": "validation examples to generate and judge; 0 = all (default)",
    "seed": "sample data and model seed (default 0)",
})
@user_errors
def demo(c, rows=2000, steps=800, eval_limit=0, seed=0):
    """Sample -> clean -> split -> stats -> tiny model -> train -> generate -> judge -> report -> export -> tokens."""
    from scripts.demo import DemoSettings, run_demo

    settings = DemoSettings(rows=int(rows), steps=int(steps), eval_limit=int(eval_limit), seed=int(seed))
    result = run_demo(settings, say=console.print, console=console)
    console.print(f"\n[bold]demo finished in {sum(result.seconds.values()):.0f}s[/]; artifacts:")
    for label, path in result.artifacts.items():
        console.print(f"  {label:18} {path}")
    console.print("\n[bold]headline[/] (a tiny model trained from scratch: it proves the chain learns)")
    for line in result.headline:
        console.print(f"  {line}")

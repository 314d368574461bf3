"""The task tree as `fab -l` and `fab --help TASK` show it: listings, short flags, option types."""

from __future__ import annotations

import pytest

from scripts.config import REPO_ROOT
from tests.conftest import fab

FABRIC_FLAGS = set("eHiRSth")


def _tasks():
    from fabfile import ns

    return {name: ns[name] for name in ns.task_names}


def test_every_task_lists_one_complete_sentence():
    """`fab -l` shows a docstring's first line: it must end a sentence, not stop mid-way."""
    for name, t in _tasks().items():
        first = (t.__doc__ or "").strip().splitlines()[0]
        assert first.endswith((".", "?")), f"{name}: {first!r}"
        assert len(first) <= 110, f"{name}: first docstring line too long for `fab -l` ({len(first)})"


def test_short_flags_are_the_options_first_letter_or_none():
    """`-c` for --config is guessable; `-o` for --method or `-u` for --run-id is not, and Fabric's own
    short flags (-e -H -i -R -S -t) are never reused."""
    seen = 0
    for name, t in _tasks().items():
        if name == "demo":
            continue
        for argument in t.get_arguments(ignore_unknown_help=True):
            long_name, *short = argument.names
            for flag in short:
                seen += 1
                assert flag == long_name[0] and flag not in FABRIC_FLAGS, f"{name}: -{flag} for --{long_name}"
    assert seen > 10


@pytest.mark.integration
def test_train_run_help_shows_typed_options_and_plain_flags():
    text = fab(REPO_ROOT, "--help", "train.run").stdout
    assert "-m INT, --max-steps=INT" in text
    assert "  --method=STRING" in text and "-o STRING" not in text
    assert "  --run-id=STRING" in text and "-u STRING" not in text
    listing = fab(REPO_ROOT, "-l").stdout
    assert "model card)." in listing  # package.export's line is complete


@pytest.mark.integration
@pytest.mark.parametrize("args, line", [
    (("eval.generate", "--limit", "x"), "error: --limit takes an integer, not 'x'"),
    (("train.run", "--max-steps", "1.5"), "error: --max-steps takes an integer, not '1.5'"),
])
def test_a_bad_number_is_one_line(args, line):
    done = fab(REPO_ROOT, *args)
    assert done.returncode == 1 and done.stderr.strip() == line and "Traceback" not in done.stderr


def test_output_to_a_log_is_not_wrapped_at_80_columns():
    """Piped into a log (no terminal, no COLUMNS), a long line stays one line."""
    import os
    import subprocess
    import sys

    sentence = "trained 3 steps on 12 examples (0 dropped as too long), final loss 1.234; " * 3
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    done = subprocess.run([sys.executable, "-c", f"from fab_tasks._common import console; console.print({sentence!r})"],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=True)
    assert done.stdout == sentence + "\n"


def test_both_spellings_of_a_multi_word_task_are_accepted():
    from fabfile import ns

    names = set(ns.task_names)
    assert {"ops.project_tokens", "train.import_gguf", "eval.generate", "demo"} <= names
    aliases = {alias for group in ns.task_names.values() for alias in group}
    assert {"ops.project-tokens", "train.import-gguf", "train.init-tiny"} <= aliases

"""Every `fab TASK` the README and docs/ show names a task that exists, with options it accepts."""

from __future__ import annotations

import re

from scripts.config import REPO_ROOT

COMMAND = re.compile(r"(?:^|[\s`(])fab ([a-z][\w.-]*)((?: +--?[a-z][\w-]*(?:[ =][^\s`|\\\]]+)?)*)")


def shown_commands() -> list[tuple[str, str, list[str]]]:
    found = []
    for doc in [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]:
        for match in COMMAND.finditer(doc.read_text()):
            flags = re.findall(r"--([a-z][\w-]*)", match.group(2))
            found.append((doc.name, match.group(1), flags))
    return found


def test_every_fab_command_in_the_docs_exists_with_its_flags():
    import fabfile

    tasks = {}
    for name in fabfile.ns.task_names:
        task = fabfile.ns[name]
        options = {arg.replace("_", "-") for arg in task.get_arguments() for arg in arg.names}
        for alias in [name, *fabfile.ns.task_names[name]]:
            tasks[alias] = options
    commands = shown_commands()
    assert len(commands) > 30  # the README shows the whole chain
    missing = [(doc, name) for doc, name, _ in commands if name not in tasks and name not in ("-l", "--help")]
    assert missing == []
    unknown = [(doc, name, flag) for doc, name, flags in commands if name in tasks
               for flag in flags if flag not in tasks[name] and flag != "help"]
    assert unknown == []

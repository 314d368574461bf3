"""Root task tree: `fab -l` lists it, `fab --help TASK` documents a task.

    fab dataset.sample && fab dataset.clean --schema-version v2 && fab dataset.split
    fab train.run --config configs/training.yaml
    fab eval.generate --split validation && fab eval.judge --split validation
    fab package.export --config configs/package.yaml --output models/export
    fab demo          # all of it on the sample data with a tiny model, CPU, minutes
"""

import invoke.collection
from invoke import Collection

from fab_tasks import dataset, demo, env, evaluate, ops, package, train

# Both spellings of a multi-word task work (`ops.project_tokens`, `ops.project-tokens`,
# `train.init-tiny`): invoke would otherwise rewrite every name one way and accept only
# that one. Names are kept as written and the dashed spelling is added as an alias.
invoke.collection.Collection.transform = lambda self, name: name


def _collection(module, name: str) -> Collection:
    collection = Collection.from_module(module, name=name)
    for task_name, task in list(collection.tasks.items()):
        if "_" in task_name:
            dashed = task_name.replace("_", "-")
            if dashed not in task.aliases:  # the task objects outlive a second load of this file
                task.aliases = (*task.aliases, dashed)
            collection.tasks.alias(dashed, to=task_name)
    return collection


ns = Collection()
for module, name in ((env, "env"), (dataset, "dataset"), (train, "train"), (evaluate, "eval"),
                     (package, "package"), (ops, "ops")):
    ns.add_collection(_collection(module, name))
ns.add_task(demo.demo)

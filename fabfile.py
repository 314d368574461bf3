"""Root task tree: `fab -l` lists it, `fab --help TASK` documents a task.

    fab dataset.sample && fab dataset.clean --schema-version v2 && fab dataset.split
    fab train.run --config configs/training.yaml
    fab eval.generate --split validation && fab eval.judge --split validation
    fab package.export --config configs/package.yaml --output models/export
    fab demo          # all of it on the sample data with a tiny model, CPU, minutes
"""

from invoke import Collection

from fab_tasks import dataset, demo, env, evaluate, ops, package, train

# Multi-word tasks are spelled with dashes (`ops.project-tokens`, `train.import-gguf`): Fabric's
# `tasks.auto_dash_names` (on by default) turns a task function's underscores into dashes. invoke accepts
# one spelling per collection tree, never both (with auto_dash_names off, underscores, and no dashed name).
ns = Collection()
for module, name in ((env, "env"), (dataset, "dataset"), (train, "train"), (evaluate, "eval"),
                     (package, "package"), (ops, "ops")):
    ns.add_collection(Collection.from_module(module, name=name))
ns.add_task(demo.demo)

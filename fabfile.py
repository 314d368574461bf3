"""Root task tree: `fab -l` lists it, `fab --help TASK` documents a task.

    fab dataset.sample && fab dataset.clean --schema-version v1 && fab dataset.split
    fab train.run --config configs/training.yaml
    fab eval.generate --split validation && fab eval.judge --split validation
    fab package.export --config configs/package.yaml --output models/export
    fab demo          # all of it on the sample data with a tiny model, CPU, minutes
"""

from invoke import Collection

from fab_tasks import dataset, demo, env, evaluate, ops, package, train

# Task names keep their underscores (`ops.project_tokens`) in listings too;
# fabric.yaml sets the same for parsing the command line.
ns = Collection(auto_dash_names=False)
for module, name in ((env, "env"), (dataset, "dataset"), (train, "train"), (evaluate, "eval"),
                     (package, "package"), (ops, "ops")):
    ns.add_collection(Collection.from_module(module, name=name, auto_dash_names=False))
ns.add_task(demo.demo)

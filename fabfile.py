"""Root task tree: `fab -l` lists it, `fab --help TASK` documents a task.

    fab dataset.sample && fab dataset.clean --schema-version v1 && fab dataset.split
    fab train.run --config configs/training.yaml
    fab eval.generate --split validation && fab eval.judge --split validation
"""

from invoke import Collection

from fab_tasks import dataset, env, evaluate, ops, package, train

ns = Collection()
ns.add_collection(Collection.from_module(env, name="env"))
ns.add_collection(Collection.from_module(dataset, name="dataset"))
ns.add_collection(Collection.from_module(train, name="train"))
ns.add_collection(Collection.from_module(evaluate, name="eval"))
ns.add_collection(Collection.from_module(package, name="package"))
ns.add_collection(Collection.from_module(ops, name="ops"))

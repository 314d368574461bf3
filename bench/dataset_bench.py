"""dataset.clean speed and memory, as ratios to DuckDB's own JSON export.

    .venv/bin/python bench/dataset_bench.py [--rows 100000] [--seed 0]

Builds a sample database, then in one run times (a) DuckDB's
`COPY (SELECT * FROM examples) TO 'x.json'` and (b) `dataset.clean`, each in
a fresh child process so peak RSS is the child's own. Targets: ratio <= 3,
peak RSS < 1 GiB. Prints ratios, not absolute times, since machines are noisy.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

CHILD = r"""
import json, resource, sys, time
from pathlib import Path
sys.path.insert(0, {repo!r})
mode, db, out = sys.argv[1:4]
start = time.perf_counter()
if mode == "copy":
    import duckdb
    con = duckdb.connect(db, read_only=True)
    con.execute(f"COPY (SELECT * FROM examples) TO '{{out}}/x.json'")
else:
    from scripts.config import load_config
    from scripts.dataset.clean import clean_dataset
    from scripts.dataset.config import DatasetsConfig
    cfg = load_config(Path({repo!r}) / "configs/datasets.yaml", DatasetsConfig, {{"processed_dir": out}})
    clean_dataset(Path(db), cfg, cfg.schema_version)
seconds = time.perf_counter() - start
print(json.dumps({{"seconds": seconds, "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}}))
"""


def run_child(mode: str, db: Path, out: Path) -> dict:
    script = CHILD.format(repo=str(REPO))
    result = subprocess.run([sys.executable, "-c", script, mode, str(db), str(out)],
                            check=True, capture_output=True, text=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from scripts.sample_data import generate_sample

    with tempfile.TemporaryDirectory(prefix="dataset-bench-") as tmp:
        tmp_path = Path(tmp)
        db = tmp_path / "bench.duckdb"
        start = time.perf_counter()
        generate_sample(db, rows=args.rows, seed=args.seed)
        print(f"sample: {args.rows} rows, {db.stat().st_size / 2**20:.0f} MiB "
              f"in {time.perf_counter() - start:.1f}s")
        copy = run_child("copy", db, tmp_path)
        clean = run_child("clean", db, tmp_path / "processed")
        copy_again = run_child("copy", db, tmp_path)  # bracket clean: noise shows as spread
    baseline = (copy["seconds"] + copy_again["seconds"]) / 2
    ratio = clean["seconds"] / baseline
    rss_mib = clean["peak_rss_kib"] / 1024
    print(f"duckdb COPY to JSON: {copy['seconds']:.2f}s / {copy_again['seconds']:.2f}s "
          f"(peak RSS {copy['peak_rss_kib'] / 1024:.0f} MiB)")
    print(f"dataset.clean:       {clean['seconds']:.2f}s, {args.rows / clean['seconds']:,.0f} rows/s, "
          f"peak RSS {rss_mib:.0f} MiB")
    print(f"ratio clean/COPY: {ratio:.2f} (target <= 3) {'OK' if ratio <= 3 else 'OVER'}; "
          f"peak RSS {'OK' if rss_mib < 1024 else 'OVER'} (target < 1024 MiB)")


if __name__ == "__main__":
    main()

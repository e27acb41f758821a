"""Time the default workflow (`snakemake --cores all` on config/config.yaml) from scratch.

Runs the workflow in a fresh temporary folder, so nothing cached counts, then checks that a
second run has nothing to do. Prints wall time, the issue's 5-minute target and their ratio,
and the peak memory of the largest job.

    python benchmarks/workflow_default.py [--cores all] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_S = 300.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cores", default="all")
    parser.add_argument("--config", type=Path, default=ROOT / "config" / "config.yaml")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"),
               "--directory", tmp, "--configfile", str(args.config.resolve()),
               "--cores", args.cores, "--quiet"]
        t0 = time.perf_counter()
        first = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if first.returncode != 0:
            print(first.stderr[-3000:])
            return 1
        again = subprocess.run([*cmd, "--dry-run"], capture_output=True, text=True)
        nothing = "Nothing to be done" in again.stdout + again.stderr
        n_reports = len(list(Path(tmp, "reports").rglob("*.html")))
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    result = {
        "wall_s": round(wall, 1), "target_s": TARGET_S, "ratio_to_target": round(wall / TARGET_S, 3),
        "peak_job_rss_mb": round(peak_mb), "reports": n_reports, "second_run_nothing_to_do": nothing,
        "cores": os.cpu_count(), "machine": platform.platform(), "python": platform.python_version(),
    }
    print(f"default workflow: {wall:.1f} s wall on {os.cpu_count()} cores "
          f"(target {TARGET_S:.0f} s, ratio {wall / TARGET_S:.2f}); peak job RSS {peak_mb:.0f} MB; "
          f"{n_reports} reports; second run does nothing: {nothing}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if nothing else 1


if __name__ == "__main__":
    sys.exit(main())

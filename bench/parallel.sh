#!/usr/bin/env bash
# Does running cells in parallel change what they measure? Runs the same cell twice alone
# (--jobs 1) and twice side by side (--jobs 2), then prints per-cell phase times, throughput and
# peak memory, and the ratios. By hand, not in CI: it takes a few minutes under TCG.
# Usage: bench/parallel.sh [RAM_MIB] [FILE_SIZE]
set -euo pipefail
cd "$(dirname "$0")/.."
ram=${1:-512}
size=${2:-256M}
out=$(mktemp -d /tmp/perfvm-bench-parallel.XXXX)
bin=./target/release/perfvm
for jobs in 1 2; do
  start=$(date +%s)
  $bin matrix --ram "$ram" --file-size "$size" --repeat 2 --jobs "$jobs" --fresh --results-dir "$out/jobs$jobs" >/dev/null 2>&1
  echo "jobs=$jobs wall $(( $(date +%s) - start )) s"
done
python3 - "$out" <<'PY'
import json, glob, sys, statistics as st
out = sys.argv[1]
def cells(jobs):
    doc = json.load(open(glob.glob(f"{out}/jobs{jobs}/*/results.json")[0]))
    return doc["cells"]
rows = {}
for jobs in (1, 2):
    cs = cells(jobs)
    ready = [c["phases"]["agent"] + c["phases"]["cloud_init"] + c["phases"]["healthy"] for c in cs]
    rows[jobs] = dict(
        ready=st.mean(ready),
        tput=st.mean(c["throughput_mbps"] for c in cs),
        peak=st.mean(c["peak_memory_mb"] for c in cs),
        collect=st.mean(c["phases"]["collect"] for c in cs),
    )
    print(f"jobs={jobs}: ready {rows[jobs]['ready']:.1f} s, throughput {rows[jobs]['tput']:.1f} MiB/s, "
          f"peak {rows[jobs]['peak']:.1f} MiB, collect {rows[jobs]['collect']:.1f} s (mean of 2 cells)")
for k in ("ready", "tput", "peak", "collect"):
    print(f"ratio parallel/alone {k}: {rows[2][k] / rows[1][k]:.2f}")
PY
echo "results under $out"

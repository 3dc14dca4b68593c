#!/usr/bin/env bash
# What does sampling cost? Runs the same cell with all sources (memory, CPU, I/O, pressure) and
# with --sample-memory-only, and prints each result's sampler_cost (host sampler thread, guest
# probe, guest agent; sum in % of one core over the upload). By hand, not in CI.
# Usage: bench/sampler-cost.sh [RAM_MIB] [FILE_SIZE] [ROUNDS]
# PERFVM=path/to/perfvm measures another build (its perfvm-probe beside it), e.g. the commit
# before a change, for a before/after in one session.
set -euo pipefail
cd "$(dirname "$0")/.."
ram=${1:-512}
size=${2:-1G}
rounds=${3:-1}
bin=${PERFVM:-./target/release/perfvm}
out=$(mktemp -d /tmp/perfvm-bench-sampler.XXXX)
for i in $(seq 1 "$rounds"); do
  for mode in full memory; do
    flag=""
    [ "$mode" = memory ] && flag="--sample-memory-only"
    "$bin" run --ram "$ram" --file-size "$size" $flag --results-dir "$out/$mode" >/dev/null 2>&1 || true
  done
done
python3 - "$out" <<'PY'
import json, glob, sys, statistics as st
for mode in ("full", "memory"):
    rs = [json.load(open(p)) for p in sorted(glob.glob(f"{sys.argv[1]}/{mode}/*/result.json"))]
    for r in rs:
        c = r["sampler_cost"] or {}
        print(f"{mode:6}: {c.get('percent_of_one_core')}% of one core over {r['duration_seconds']} s "
              f"(host thread {c.get('host_thread_cpu_seconds')} s, guest probe {c.get('guest_probe_cpu_seconds')} s, "
              f"guest agent {c.get('guest_agent_cpu_seconds')} s), {r['sample_count']} samples, "
              f"mean interval {r['sample_mean_interval_ms']} ms, throughput {r['throughput_mbps']} MiB/s")
    if len(rs) > 1:
        print(f"{mode:6}: median {st.median(r['sampler_cost']['percent_of_one_core'] for r in rs)}% of one core over {len(rs)} runs")
PY
echo "results under $out"

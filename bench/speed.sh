#!/usr/bin/env bash
# Where a cell's time goes and what the harness itself costs, measured on this host; the method
# and the latest figures are in docs/performance.md. Not part of CI: run it by hand (as root,
# after scripts/setup.sh and cargo build --release). Takes ~15 min under TCG (+16 min with
# BENCH_MATRIX=1, +10 min with section 6, +20 min with BENCH_SEED=1). Every figure below comes
# from one run of this script.
#
#   bench/speed.sh [RUNS]      RUNS cells for the phase medians (default 3)
#   BENCH_SECTIONS="1 3" bench/speed.sh    only some sections (default "1 2 3 4"; 5 is the matrix)
#   BENCH_SECTIONS=6 BENCH_VERIFY_SIZES="1G 5G" bench/speed.sh    where the stored file is hashed
#   BENCH_SECTIONS=8 BENCH_SEED=1 bench/speed.sh    cold vs saved boots, per cell and the seed matrix
#   Before/after an image change: PERFVM_RECIPE_DIR=<old checkout>/vm-images BENCH_SECTIONS=1
#   bench/speed.sh runs section 1 on the old image (still cached), then again without it.
#
# Sections: 1 phase breakdown (median of RUNS cells 512 MiB / 64M) and overhead; 2 perfvm's
# own peak RSS at 64M vs 2G; 3 sampler cost at 10 Hz vs sampling once a minute; 4 perfvm's
# uploader vs curl -T, alternating, on one kept guest; 5 (BENCH_MATRIX=1) a 4 × 4 matrix with
# --jobs 1 vs the default jobs; 6 the stored file hashed on the host vs in the guest (--verify),
# 512 MiB at each of BENCH_VERIFY_SIZES (1G 5G); 7 (BENCH_SEED=1) the 20-cell seed matrix,
# --jobs 1, where its cells' time goes, for each of BENCH_SEED_BOOTS (cold saved); 8 a cold boot
# vs a saved guest (--boot), 512 MiB, at each of BENCH_BOOT_SIZES (64M 1G; a size given twice runs twice).
set -euo pipefail
cd "$(dirname "$0")/.."
PERFVM=${PERFVM:-./target/release/perfvm}
RUNS=${1:-3}
OUT=${BENCH_OUT:-/tmp/perfvm-bench-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
log() { printf '\n== %s\n' "$*" | tee -a "$OUT/summary.txt"; }
say() { printf '%s\n' "$*" | tee -a "$OUT/summary.txt"; }
# Field of the single result.json under a results dir.
field() { python3 -c 'import json,sys,glob; r=json.load(open(glob.glob(sys.argv[1]+"/*/result.json")[0])); v=r
for k in sys.argv[2].split("."): v=v[k] if v is not None else None
print(v)' "$1" "$2"; }

SECTIONS=" ${BENCH_SECTIONS:-1 2 3 4} "
[ "${BENCH_MATRIX:-0}" = 1 ] && SECTIONS="$SECTIONS 5 "
[ "${BENCH_SEED:-0}" = 1 ] && SECTIONS="$SECTIONS 7 "
want() { [[ "$SECTIONS" == *" $1 "* ]]; }

say "perfvm bench, $(date -u +%FT%TZ), host $(hostname), $(nproc) cores, $("$PERFVM" --version)"
say "accel: $("$PERFVM" doctor | grep -o 'acceleration: [a-z]*' || true)"

if want 1; then
log "1. phase breakdown: $RUNS × perfvm run --ram 512 --file-size 64M"
for i in $(seq "$RUNS"); do
  "$PERFVM" run --ram 512 --file-size 64M --results-dir "$OUT/phases/$i" >/dev/null 2>&1 || true
done
python3 - "$OUT/phases" <<'PY' | tee -a "$OUT/summary.txt"
import json, glob, statistics, sys
rs = [json.load(open(p)) for p in sorted(glob.glob(sys.argv[1] + "/*/*/result.json"))]
ok = [r for r in rs if r["success"]]
print(f"{len(ok)}/{len(rs)} cells succeeded")
names = ["prepare", "boot", "agent", "cloud_init", "healthy", "upload", "collect", "teardown"]
med = {n: statistics.median(r["phases"][n] for r in ok) for n in names}
for n in names:
    print(f"  {n:<11} {med[n]:7.2f} s")
over = [sum(r["phases"][n] for n in names if n != "upload") for r in ok]
print(f"  overhead (all but the upload): median {statistics.median(over):.1f} s (min {min(over):.1f}, max {max(over):.1f}); the old harness: ~360 s")
top = sorted((n for n in names if n != "upload"), key=lambda n: -med[n])[:3]
print("  three biggest costs: " + ", ".join(f"{n} {med[n]:.1f} s" for n in top))
PY
fi

if want 2; then
log "2. perfvm's own peak RSS (harness_peak_rss_bytes) at 64M vs 2G"
for s in 64M 2G; do
  "$PERFVM" run --ram 512 --file-size "$s" --results-dir "$OUT/rss-$s" >/dev/null 2>&1 || true
  say "  $s: $(python3 -c "print(round(int('$(field "$OUT/rss-$s" harness_peak_rss_bytes)')/2**20,1))") MiB (upload $(field "$OUT/rss-$s" throughput_mbps) MiB/s)"
done
fi

if want 3; then
log "3. sampler cost: 512 MiB / 1G at 100 ms vs 60000 ms (one sample at start and end)"
for ms in 100 60000; do
  d="$OUT/sampler-$ms"
  "$PERFVM" run --ram 512 --file-size 1G --sample-interval "$ms" --results-dir "$d" >/dev/null 2>&1 || true
  say "  interval $ms ms: $(field "$d" throughput_mbps) MiB/s, target cpu $(field "$d" target_cpu_seconds) s, qemu cpu $(field "$d" host_qemu_cpu_seconds) s, samples $(field "$d" sample_count), sampler cost $(field "$d" sampler_cost.percent_of_one_core) % of one core (host thread $(field "$d" sampler_cost.host_thread_cpu_seconds) s, probe $(field "$d" sampler_cost.guest_probe_cpu_seconds) s, agent $(field "$d" sampler_cost.guest_agent_cpu_seconds) s)"
done
fi

if want 4; then
log "4. perfvm's uploader vs curl -T, same 512M file, same kept guest, alternating ×3"
"$PERFVM" files generate 512M --dir "$OUT/files" >/dev/null
file="$OUT/files/random-512M-s1.bin"
"$PERFVM" run --ram 1024 --file-size 1M --keep-vm --results-dir "$OUT/kept" >"$OUT/kept.txt" 2>&1 || true
port=$(field "$OUT/kept" host_port)
dom=$(field "$OUT/kept" domain)
for i in 1 2 3; do
  c=$(curl -sS -o /dev/null -w '%{time_total}' -T "$file" "http://127.0.0.1:$port/upload/curl-$i.bin")
  p=$("$PERFVM" upload --file "$file" --url "http://127.0.0.1:$port/upload/perfvm-$i.bin" | sed -n 's/.* in \([0-9.]*\) s .*/\1/p')
  echo "$c $p" >>"$OUT/uploader.txt"
  say "  round $i: curl $c s, perfvm $p s"
done
python3 - "$OUT/uploader.txt" <<'PY' | tee -a "$OUT/summary.txt"
import statistics, sys
rows = [tuple(map(float, l.split())) for l in open(sys.argv[1]) if l.strip()]
c = statistics.median(r[0] for r in rows); p = statistics.median(r[1] for r in rows)
mib = 512
print(f"  median: curl {mib/c:.1f} MiB/s, perfvm {mib/p:.1f} MiB/s; perfvm/curl throughput ratio {c/p:.3f}")
PY
virsh -c qemu:///system destroy "$dom" >/dev/null 2>&1 || true
"$PERFVM" cleanup >/dev/null
fi

if want 5; then
  log "5. 4 × 4 matrix (--cpus 1, 1M–4M files): --jobs 1 vs the default"
  for jobs in 1 default; do
    extra=(); [ "$jobs" = 1 ] && extra=(--jobs 1)
    t0=$(date +%s)
    "$PERFVM" matrix --ram 256,320,384,448 --file-size 1M,2M,3M,4M --cpus 1 "${extra[@]}" --results-dir "$OUT/matrix-$jobs" >"$OUT/matrix-$jobs.txt" 2>&1 || true
    say "  jobs $jobs: $(( $(date +%s) - t0 )) s wall ($(grep -o 'cells finished, [0-9]* passed' "$OUT/matrix-$jobs.txt" | head -1))"
  done
fi
if want 6; then
  log "6. the stored file hashed in the guest vs on the host (--verify), 512 MiB"
  for size in ${BENCH_VERIFY_SIZES:-1G 5G}; do
    for where in guest host; do
      d="$OUT/verify-$size-$where"
      "$PERFVM" run --ram 512 --file-size "$size" --verify "$where" --results-dir "$d" >/dev/null 2>&1 || true
      say "  $size $where: verified $(field "$d" verified) by $(field "$d" verification.by) in $(field "$d" verification.seconds) s; collect $(field "$d" phases.collect) s; all but the upload $(python3 -c 'import json,sys,glob; r=json.load(open(glob.glob(sys.argv[1]+"/*/result.json")[0])); print(round(sum(v for k,v in r["phases"].items() if v is not None and k!="upload"),1))' "$d") s; upload $(field "$d" phases.upload) s"
    done
  done
fi

if want 8; then
  log "8. a cold boot vs a saved guest (--boot), 512 MiB, at each of BENCH_BOOT_SIZES"
  # The saved guest is built (booted and saved) first, by a cell of its own, timed apart.
  d="$OUT/boot-build"; t0=$(date +%s.%N)
  "$PERFVM" run --ram 512 --file-size 1M --boot saved --results-dir "$d" >/dev/null 2>&1 || true
  say "  first saved cell (builds the saved guest): built in $(field "$d" saved_state.built_seconds) s, the cell $(python3 -c "import time;print(round(time.time()-$t0,1))") s wall"
  n=0
  for size in ${BENCH_BOOT_SIZES:-64M 1G}; do
    n=$((n + 1))
    for boot in cold saved; do
      d="$OUT/boot-$n-$size-$boot"
      "$PERFVM" run --ram 512 --file-size "$size" --boot "$boot" --results-dir "$d" >/dev/null 2>&1 || true
      say "  $size $boot: $(python3 - "$d" <<'PY'
import json, glob, sys
r = json.load(open(glob.glob(sys.argv[1] + "/*/result.json")[0]))
p = {k: v for k, v in r["phases"].items() if v is not None}
ready = sum(p.get(k, 0) for k in ["prepare", "boot", "agent", "cloud_init", "deliver", "healthy"])
harness = sum(v for k, v in p.items() if k != "upload")
print(f"{r['exit_reason']}; healthy after {ready:.1f} s; all but the upload {harness:.1f} s "
      f"({', '.join(f'{k} {v:.1f}' for k, v in p.items() if k != 'upload')}); upload {p.get('upload', 0):.1f} s; peak {r['peak_memory_bytes'] / 2**20:.2f} MiB")
PY
)"
    done
  done
fi

if want 7; then
  for boot in ${BENCH_SEED_BOOTS:-cold saved}; do
  log "7. the 20-cell seed matrix, --jobs 1, --boot $boot"
  t0=$(date +%s)
  "$PERFVM" matrix --ram 256,512,1024,2048 --file-size 100M,500M,1G,2G,5G --jobs 1 --boot "$boot" --results-dir "$OUT/seed-$boot" >"$OUT/seed-$boot.txt" 2>&1 || true
  say "  $(( $(date +%s) - t0 )) s wall ($(grep -o 'cells finished, [0-9]* passed' "$OUT/seed-$boot.txt" | head -1))"
  python3 - "$OUT/seed-$boot" <<'PY' | tee -a "$OUT/summary.txt"
import json, glob, sys
rs = [json.load(open(p)) for p in glob.glob(sys.argv[1] + "/*/cells/*/a*/result.json")]
ph = lambda n: sum((r["phases"].get(n) or 0) for r in rs) / 60
print(f"  {len(rs)} attempts: uploads {ph('upload'):.1f} min, collect {ph('collect'):.1f} min, boot to healthy {sum(ph(n) for n in ['prepare','boot','agent','cloud_init','deliver','healthy']):.1f} min, teardown {ph('teardown'):.1f} min")
built = [r["saved_state"]["built_seconds"] for r in rs if (r.get("saved_state") or {}).get("built_seconds")]
if built:
    print(f"  saved guests built: {len(built)}, {sum(built) / 60:.1f} min (in the wall time, outside the cells' phases)")
by = {}
for r in rs:
    v = (r.get("verification") or {}).get("by", "-")
    by[v] = by.get(v, 0) + 1
print(f"  hashed: {by}")
PY
  done
fi
say ""
say "all output in $OUT"

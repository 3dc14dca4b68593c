#!/usr/bin/env bash
# One host or two: the wall time of the same small matrix on this machine's libvirtd alone
# (--jobs 1, then its default jobs) and spread over it and a second libvirt host
# (scripts/second-host.sh, reached over qemu+ssh, one job each). Both "hosts" share this
# machine's cores here, so the comparison shows the scheduling and the remote path's cost, not
# more hardware. By hand, not in CI. Usage: bench/hosts.sh [RAM,...] [SIZE,...]
set -euo pipefail
cd "$(dirname "$0")/.."
rams=${1:-256,384}
sizes=${2:-1M,2M,4M}
out=$(mktemp -d /tmp/perfvm-bench-hosts.XXXX)
bin=./target/release/perfvm
h2dir="$out/h2"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
uri=$(bash scripts/second-host.sh start "$h2dir" "$port")
trap 'bash scripts/second-host.sh stop "$h2dir"' EXIT
cat > "$out/hosts.toml" <<TOML
[[host]]
name = "here"
uri = "qemu:///system"
jobs = 1

[[host]]
name = "h2"
uri = "$uri"
memory_mib = 8000
jobs = 1
TOML
common=(--ram "$rams" --file-size "$sizes" --cpus 1 --fresh)
run() {
  local name=$1; shift
  local start; start=$(date +%s.%N)
  $bin matrix "${common[@]}" --results-dir "$out/$name" "$@" >"$out/$name.log" 2>&1 || { echo "$name failed, see $out/$name.log" >&2; exit 1; }
  python3 -c "import sys; print(f'$name: {float(sys.argv[2]) - float(sys.argv[1]):.1f} s wall')" "$start" "$(date +%s.%N)"
}
# The image upload to h2 happens once, before the timed two-host run.
$bin matrix --ram 256 --file-size 1M --cpus 1 --hosts "$out/hosts.toml" --results-dir "$out/warm" --only 256/1M >/dev/null 2>&1
run one-host-jobs1 --jobs 1
run one-host-default
run two-hosts --hosts "$out/hosts.toml"
python3 - "$out" <<'PY'
import json, glob, sys, statistics as st
out = sys.argv[1]
for name in ("one-host-jobs1", "one-host-default", "two-hosts"):
    doc = json.load(open(glob.glob(f"{out}/{name}/*/results.json")[0]))
    cs = doc["cells"]
    hosts = {}
    for c in cs:
        hosts[c.get("host")] = hosts.get(c.get("host"), 0) + 1
    ready = [c["phases"]["agent"] + c["phases"]["cloud_init"] + c["phases"]["healthy"] for c in cs]
    print(f"{name}: {len(cs)} cells, {sum(c['success'] for c in cs)} passed, by host {hosts}, "
          f"median ready {st.median(ready):.1f} s, median prepare {st.median(c['phases']['prepare'] for c in cs):.2f} s, "
          f"median boot {st.median(c['phases']['boot'] for c in cs):.2f} s, median teardown {st.median(c['phases']['teardown'] for c in cs):.2f} s")
PY
echo "results under $out"

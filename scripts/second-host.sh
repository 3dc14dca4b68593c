#!/usr/bin/env bash
# A second, independent libvirt host on this machine, reached like a remote one: its own
# virtlogd and libvirtd in a private mount namespace (own /etc/libvirt, /run/libvirt,
# /var/lib/libvirt, /var/log/libvirt, /var/cache/libvirt under DIR), and an sshd on
# 127.0.0.1:PORT inside that namespace with a key made for it. Its URI is qemu+ssh, so perfvm
# treats it as another machine: storage-pool uploads and an ssh tunnel. For tests and for
# trying several hosts out; all traffic stays on loopback.
#
#   scripts/second-host.sh start DIR PORT   # prints the URI
#   scripts/second-host.sh stop DIR         # stops its daemons and any qemu it left
set -euo pipefail

usage() { echo "usage: $0 start DIR PORT | stop DIR" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "second-host.sh must run as root (mount namespace, libvirtd)" >&2; exit 1; }

start() {
  local dir port
  dir=$(realpath -m "$1"); port=$2
  [[ "$port" =~ ^[0-9]+$ ]] || usage
  [ -x /usr/sbin/sshd ] || { echo "sshd is missing: run scripts/setup.sh (it installs openssh-server)" >&2; exit 1; }
  if [ -f "$dir/libvirtd.pid" ] && kill -0 "$(cat "$dir/libvirtd.pid")" 2>/dev/null; then
    echo "a second host already runs in $dir; stop it first" >&2; exit 1
  fi
  mkdir -p "$dir"/{run,lib,log,cache,etc,ssh} /run/sshd
  [ -e "$dir/etc/libvirtd.conf" ] || cp -a /etc/libvirt/. "$dir/etc/"
  [ -e "$dir/ssh/hostkey" ] || ssh-keygen -q -t ed25519 -N '' -f "$dir/ssh/hostkey"
  [ -e "$dir/ssh/client" ] || ssh-keygen -q -t ed25519 -N '' -f "$dir/ssh/client"
  cp "$dir/ssh/client.pub" "$dir/ssh/authorized_keys"
  chmod 600 "$dir/ssh/authorized_keys" "$dir/ssh/client"
  cat > "$dir/ssh/sshd_config" <<CONF
ListenAddress 127.0.0.1
Port $port
HostKey $dir/ssh/hostkey
AuthorizedKeysFile $dir/ssh/authorized_keys
PidFile $dir/sshd.pid
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
AllowTcpForwarding local
StrictModes no
CONF
  rm -f "$dir"/*.pid "$dir/run/libvirt-sock"
  # The daemons keep the namespace alive after unshare's shell exits.
  DIR="$dir" unshare -m --propagation private sh -c '
    for m in run:/run/libvirt lib:/var/lib/libvirt log:/var/log/libvirt cache:/var/cache/libvirt etc:/etc/libvirt; do
      mount --bind "$DIR/${m%%:*}" "${m#*:}" || exit 1
    done
    virtlogd -d -p "$DIR/virtlogd.pid" && libvirtd -d -p "$DIR/libvirtd.pid" && /usr/sbin/sshd -f "$DIR/ssh/sshd_config"'
  for _ in $(seq 1 100); do
    [ -S "$dir/run/libvirt-sock" ] && [ -f "$dir/sshd.pid" ] && break
    sleep 0.1
  done
  [ -S "$dir/run/libvirt-sock" ] || { echo "the second libvirtd did not start (see $dir/log)" >&2; exit 1; }
  echo "qemu+ssh://root@127.0.0.1:$port/system?keyfile=$dir/ssh/client&no_verify=1"
}

stop() {
  local dir pid
  dir=$(realpath -m "$1")
  # qemu processes outlive a killed libvirtd: stop them by the pid files it kept.
  for f in "$dir"/run/qemu/*.pid; do
    [ -f "$f" ] || continue
    pid=$(cat "$f"); kill "$pid" 2>/dev/null || true
  done
  for f in libvirtd virtlogd sshd; do
    pid=$(cat "$dir/$f.pid" 2>/dev/null) || continue
    # A daemon stopped with SIGSTOP (a test freezing the host) must go on to see the TERM.
    kill -CONT "$pid" 2>/dev/null; kill "$pid" 2>/dev/null || true
    rm -f "$dir/$f.pid"
  done
  return 0
}

case "${1:-}" in
  start) [ $# -eq 3 ] || usage; start "$2" "$3" ;;
  stop) [ $# -eq 2 ] || usage; stop "$2" ;;
  *) usage ;;
esac

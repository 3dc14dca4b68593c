#!/usr/bin/env bash
# Idempotent host set-up for perfvm: apt packages, libvirt daemons, /dev/kvm access.
# Safe to run again: installs only what is missing, starts daemons only if they are not running.
set -euo pipefail

# What running perfvm needs. openssh-client: libvirt reaches a remote host (qemu+ssh) with it.
# e2fsprogs: debugfs for `perfvm doctor --image`. python3-pip: the PyPI profiles fetch their
# wheel with pip, pinned and hash-checked.
PACKAGES=(pkg-config qemu-system-x86 qemu-utils libvirt-daemon-system libvirt-clients libvirt-dev mmdebstrap genisoimage openssh-client e2fsprogs python3-pip)
# `--test`: what only the test suite and bench/ need. grub-pc-bin: a whole bootable disk for the
# `--image` test (tests/data/make-bootable-disk.sh). chromium: report.html rendered headless.
# openssh-server: the multi-host test runs a second libvirt host behind sshd on 127.0.0.1
# (scripts/second-host.sh; not started here). libreoffice-calc: matrix.csv read by a
# spreadsheet. curl: bench/speed.sh compares perfvm's uploader with `curl -T`.
TEST_PACKAGES=(grub-pc-bin chromium openssh-server libreoffice-calc curl)

# Without systemd as PID 1, libvirtd runs under tini as a child subreaper: libvirt daemonizes
# qemu, so a stopped qemu is reaped by its nearest subreaper, and libvirt's destroy returns only
# once the process is gone. Some init processes reap late (this project's build machines: ~1.7 s
# per process, which was most of a cell's teardown).
[ -d /run/systemd/system ] || PACKAGES+=(tini)
usage() { echo "usage: setup.sh [--test]   (--test: also the packages the test suite needs)"; }
case "${1:-}" in
  "") ;;
  --test) PACKAGES+=("${TEST_PACKAGES[@]}") ;;
  -h|--help) usage; exit 0 ;;
  *) usage >&2; exit 2 ;;
esac

log() { printf '[setup] %s\n' "$*"; }

if [ "$(id -u)" -ne 0 ]; then
  echo "setup.sh must run as root (it installs packages and starts libvirtd)" >&2
  exit 1
fi

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
updated=no
# Check each package right before its install: installing one can remove another (here
# qemu-system-x86 7.2 replaced a newer preinstalled qemu-utils).
for p in "${PACKAGES[@]}"; do
  installed "$p" && continue
  if [ "$updated" = no ]; then apt-get update -q; updated=yes; fi
  log "installing $p"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$p"
done
for p in "${PACKAGES[@]}"; do
  installed "$p" || { echo "package $p is still missing after install" >&2; exit 1; }
done
log "packages present: ${PACKAGES[*]}"

# FUSE, for reading a cell's disk on the host (--verify host; without it cells hash in the guest).
# Built into some kernels (this machine's), a module elsewhere.
if [ ! -e /dev/fuse ]; then
  modprobe fuse 2>/dev/null && log "fuse module loaded" || log "no FUSE: stored files are hashed in the guest (slower)"
fi

# Before libvirtd starts: /dev/kvm for group kvm (libvirt's qemu user is in it). Needed for KVM,
# and needed even where KVM is unusable (kvm_pvm): libvirt probes qemu's capabilities as root with KVM, then checks KVM
# access as the qemu user; when the two disagree it throws the cache away and re-probes on every
# domain start (measured here: ~80 s per cell). perfvm decides acceleration itself (--accel), so
# this does not make perfvm use a broken KVM.
if [ -e /dev/kvm ] && getent group kvm >/dev/null; then
  chown root:kvm /dev/kvm && chmod 660 /dev/kvm
  log "/dev/kvm: group kvm, mode 660"
fi

running() { pgrep -x "$1" >/dev/null 2>&1; }

if [ -d /run/systemd/system ]; then
  # systemd (every usual host): the daemons are socket-activated units; starting them by hand
  # would put a second libvirtd beside systemd's.
  log "systemd: enabling virtlogd.socket and libvirtd.socket"
  systemctl enable --now virtlogd.socket libvirtd.socket
else
  # No systemd as PID 1 (containers, this project's build machines): start them by hand.
  if running virtlogd; then log "virtlogd running"; else log "starting virtlogd"; virtlogd -d; fi
  if running libvirtd; then
    log "libvirtd running"
    [ "$(ps -o comm= -p "$(ps -o ppid= -p "$(pgrep -xo libvirtd)" | tr -d ' ')")" = tini ] ||
      log "note: this libvirtd is not under tini: each destroyed guest waits for PID 1 to reap its qemu (stop libvirtd and run setup.sh again)"
  else
    log "starting libvirtd (under tini, which reaps the qemu processes it leaves)"
    mkdir -p /var/log/libvirt
    setsid tini -s -- libvirtd </dev/null >>/var/log/libvirt/perfvm-libvirtd.log 2>&1 &
  fi
fi

# Wait for libvirtd's socket so the next command does not race it.
for _ in $(seq 1 50); do
  if virsh -c qemu:///system version >/dev/null 2>&1; then break; fi
  sleep 0.2
done
virsh -c qemu:///system version >/dev/null 2>&1 || { echo "libvirtd did not come up" >&2; exit 1; }
log "libvirt reachable at qemu:///system"

if [ -d /sys/module/kvm_intel ] || [ -d /sys/module/kvm_amd ]; then
  log "KVM usable (vendor module loaded): --accel auto will use it"
else
  log "no kvm_intel/kvm_amd module: --accel auto uses TCG (software emulation)"
fi

#!/usr/bin/env bash
# Turn a Linux VM (or host) with a Soft-RoCE capable kernel into an RDMA host:
# load rdma_rxe, add rxe0 on a network interface, check the memlock limit, list devices.
#
#   sudo ./scripts/softroce-setup.sh [NETDEV]     (default: the default route's interface)
#
# Run it on both VMs; then run each lesson's smoke.sh (see README.md). Without Soft-RoCE
# in the kernel (no rdma_rxe module), use the lab VMs instead: ./scripts/tour.sh
set -euo pipefail
say() { echo "softroce-setup: $*"; }
die() { echo "softroce-setup: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "run as root: sudo $0 $*"

# User-space side: the rxe provider for libibverbs, the rdma tool, ibv_devices.
need=()
for p in ibverbs-providers ibverbs-utils iproute2; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  say "installing ${need[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

# 1. The kernel driver.
if ! modprobe rdma_rxe 2>/dev/null; then
  die "cannot load rdma_rxe on kernel $(uname -r). On Ubuntu install linux-modules-extra-$(uname -r);
  if this kernel has no Soft-RoCE (CONFIG_RDMA_RXE), run the lessons in the lab VMs: ./scripts/tour.sh"
fi
say "rdma_rxe loaded"

# 2. A Soft-RoCE device on a network interface.
netdev=${1:-$(ip -o route show default | awk '{for (i = 1; i < NF; i++) if ($i == "dev") {print $(i + 1); exit}}')}
[ -n "$netdev" ] || die "no default route: name the interface, e.g. sudo $0 eth0"
ip link show "$netdev" >/dev/null 2>&1 || die "no network interface '$netdev' (see: ip -br link)"
existing=$(rdma link show 2>/dev/null | awk -v nd="$netdev" '$0 ~ ("netdev " nd "( |$)") {split($2, a, "/"); print a[1]; exit}')
if [ -n "$existing" ]; then
  say "$existing already runs on $netdev"
else
  rdma link add rxe0 type rxe netdev "$netdev"
  say "added rxe0 on $netdev"
fi

# 3. Memory registration pins pages; unprivileged users are limited by RLIMIT_MEMLOCK.
say "memlock limit for this shell: $(ulimit -l) KiB (root is exempt through CAP_IPC_LOCK)"
say "  for a normal user raise it: '* - memlock unlimited' in /etc/security/limits.conf, then log in again"

# 4. What the lessons will see.
ibv_devices
dev=${existing:-rxe0}
ibv_devinfo -d "$dev" | grep -E "state|active_mtu|link_layer"
say "GID table of $dev port 1 (the lessons pick the RoCE v2 entry with your IPv4 address):"
for g in /sys/class/infiniband/"$dev"/ports/1/gids/*; do
  i=${g##*/}
  gid=$(cat "$g" 2>/dev/null) || continue
  [ "$gid" = "0000:0000:0000:0000:0000:0000:0000:0000" ] && continue
  type=$(cat /sys/class/infiniband/"$dev"/ports/1/gid_attrs/types/"$i" 2>/dev/null || echo "?")
  echo "  GID[$i] $gid  $type"
done
say "ready: run e.g. lessons/01-verbs-send-recv/smoke.sh local"

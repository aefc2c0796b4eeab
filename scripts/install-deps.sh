#!/usr/bin/env bash
# Install the Debian/Ubuntu packages the tutorial needs, only the ones missing.
# Run as root (or with sudo available). Used by tour.sh and test.sh; safe to run again.
#
#   build:     cmake g++ pkg-config libibverbs-dev librdmacm-dev libcli11-dev libgtest-dev doxygen
#              libssl-dev (lesson 05: TLS 1.3)
#   certs:     openssl (the command, for scripts/make-certs.sh)
#   run:       ibverbs-providers (the rxe user-space driver), ibverbs-utils, rdmacm-utils, iproute2 (rdma)
#   lab VMs:   qemu-system-x86 busybox-static cpio kmod xz-utils (the guest kernel comes from apt too)
#   captures:  tshark tcpdump python3
#   fuzzing:   clang libclang-rt-dev (libFuzzer and clang's sanitizer runtimes, for
#              tests/fuzz/run_fuzz.sh; only recommended by clang, so named here)
#   userspace RoCE runtime: zlib1g-dev (crc32 for the ICRC), python3-scapy (an independent
#              ICRC check of its captures, tests/tools/roce_wire_check.py); perftest and
#              python3-pyverbs (rdma-core's own test suite): programs nobody here wrote,
#              run against it as conformance tests
set -euo pipefail

packages=(
  cmake g++ make pkg-config
  libibverbs-dev librdmacm-dev ibverbs-providers ibverbs-utils rdmacm-utils iproute2
  libcli11-dev libgtest-dev doxygen libssl-dev openssl
  qemu-system-x86 busybox-static cpio kmod xz-utils
  tshark tcpdump python3
  clang libclang-rt-dev
  zlib1g-dev python3-scapy perftest python3-pyverbs
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "install-deps: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  sudo=(sudo)
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-deps: done"

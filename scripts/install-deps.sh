#!/usr/bin/env bash
# Install the Debian/Ubuntu packages the tutorial needs, only the ones missing.
# Run as root (or with sudo available). Used by tour.sh and test.sh; safe to run again.
#
#   scripts/install-deps.sh              every group below (what scripts/test.sh needs)
#   scripts/install-deps.sh --for tour   only what scripts/tour.sh needs: build, certs, run,
#                                        lab VMs, captures, runtime (no docs, browser, plots,
#                                        fuzzing or conformance tools)
#
# The groups:
#   build:     cmake g++ pkg-config libibverbs-dev librdmacm-dev libcli11-dev
#              libssl-dev (lesson 05: TLS 1.3)
#   unit tests: libgtest-dev (GoogleTest)
#   certs:     openssl (the command, for scripts/make-certs.sh)
#   run:       ibverbs-providers (the rxe user-space driver), ibverbs-utils, rdmacm-utils, iproute2 (rdma)
#              procps (pkill, pgrep, ps: how the smokes and tests stop what they started)
#   lab VMs:   qemu-system-x86 busybox-static cpio kmod xz-utils (the guest kernel comes from apt too)
#   captures:  tshark tcpdump python3
#   runtime:   zlib1g-dev (the userspace RoCE runtime's crc32 for the ICRC)
#   fuzzing:   clang libclang-rt-dev (libFuzzer and clang's sanitizer runtimes, for
#              tests/fuzz/run_fuzz.sh; only recommended by clang, so named here)
#   userspace RoCE runtime tests: python3-scapy (an independent ICRC check of its captures,
#              tests/tools/roce_wire_check.py); perftest and python3-pyverbs (rdma-core's own
#              test suite): programs nobody here wrote, run against it as conformance tests
#   plots:     gnuplot-nox (lesson 06's plot.sh: its latency and bandwidth SVG plots)
#   docs:      doxygen graphviz (the site's diagrams; Doxygen's mscgen is built in)
#              doxygen-awesome-css (the site's theme; without it the site keeps Doxygen's)
#   docs tests (ctest -L docs): chromium chromium-driver python3-selenium (the pages
#              rendered in headless Chromium, docs/site/render_pages.py)
set -euo pipefail

build=(cmake g++ make pkg-config libibverbs-dev librdmacm-dev libcli11-dev libssl-dev)
unit_tests=(libgtest-dev)
certs=(openssl)
run=(ibverbs-providers ibverbs-utils rdmacm-utils iproute2 procps)
lab=(qemu-system-x86 busybox-static cpio kmod xz-utils)
captures=(tshark tcpdump python3)
runtime=(zlib1g-dev)
fuzzing=(clang libclang-rt-dev)
runtime_tests=(python3-scapy perftest python3-pyverbs)
plots=(gnuplot-nox)
docs=(doxygen graphviz doxygen-awesome-css)
docs_tests=(chromium chromium-driver python3-selenium)

case "${1:-}" in
  "") packages=("${build[@]}" "${certs[@]}" "${run[@]}" "${lab[@]}" "${captures[@]}" "${runtime[@]}"
                "${unit_tests[@]}" "${fuzzing[@]}" "${runtime_tests[@]}" "${plots[@]}" "${docs[@]}"
                "${docs_tests[@]}") ;;
  --for)
    case "${2:-}" in
      tour) packages=("${build[@]}" "${certs[@]}" "${run[@]}" "${lab[@]}" "${captures[@]}" "${runtime[@]}") ;;
      *) echo "install-deps: --for takes 'tour' (no argument: everything)" >&2; exit 2 ;;
    esac ;;
  -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
  *) echo "install-deps: unknown argument '$1' (see --help)" >&2; exit 2 ;;
esac

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

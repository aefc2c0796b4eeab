#!/usr/bin/env bash
# The runtime's librdmacm.so.1 exports exactly what Debian's rdma-core 44 librdmacm.so.1
# does: the same function names in the same version nodes (RDMACM_1.0 ... RDMACM_1.3).
# Debian binaries are linked with BIND_NOW, so one missing name or version and a program
# such as rping does not start; an extra one would be a leak of internals.
#   rdmacm_exports.sh [OURS [THEIRS]]
# OURS defaults to $BUILD_DIR/userspace-roce/lib/librdmacm.so.1, THEIRS to the system's.
# Prints PASS/FAIL; exit 0, 1 on a difference, 77 (skip) without objdump or the system
# library (under CI=true a failure: lib.sh's t_skip; scripts/install-deps.sh installs both,
# binutils with g++, librdmacm1 with librdmacm-dev).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"   # ROOT, BUILD_DIR, t_skip
ours=${1:-$BUILD_DIR/userspace-roce/lib/librdmacm.so.1}
theirs=${2:-/usr/lib/x86_64-linux-gnu/librdmacm.so.1}
command -v objdump >/dev/null || t_skip "objdump (binutils) is not installed" "scripts/install-deps.sh installs it (with g++)"
[ -e "$theirs" ] || t_skip "no system librdmacm at $theirs" "scripts/install-deps.sh installs it (librdmacm1, with librdmacm-dev)"
[ -e "$ours" ] || { echo "FAIL: no $ours: build it (cmake --build \$BUILD_DIR --target uroce_rdmacm)"; exit 1; }

# "VERSION NAME" for every defined dynamic symbol (functions and version nodes).
exports() {
  objdump -T "$1" | awk '$0 ~ /^[0-9a-f]+ / && $0 !~ /\*UND\*/ { print $(NF-1), $NF }' |
    sed 's/[()]//g' | sort -u
}
diff_out=$(diff <(exports "$theirs") <(exports "$ours") || true)
n=$(exports "$ours" | wc -l)
if [ -z "$diff_out" ]; then
  echo "PASS: $ours exports the same $n names and versions as $theirs"
  exit 0
fi
echo "FAIL: exports differ from $theirs ('<' only there, '>' only in ours):"
echo "$diff_out"
exit 1

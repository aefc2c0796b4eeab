#!/usr/bin/env bash
# On a host without RDMA devices, a lesson's programs must fail cleanly: exit 1, one
# ERROR naming the problem, a remedy pointing to softroce-setup.sh and the lab VMs.
#
#   no_device.sh PORT SERVER CLIENT     (the client is pointed at 127.0.0.1:PORT)
#
# CLIENT may be "-": lesson 05's client verifies the server over TLS before it touches
# RDMA at all, so without a server it never reaches the device (its smoke test covers it).
set -uo pipefail
port=$1 server=$2 client=$3
if [ -n "$(ls /sys/class/infiniband 2>/dev/null)" ]; then
  echo "this host has RDMA devices ($(ls /sys/class/infiniband | tr '\n' ' ')): nothing to test"
  exit 77
fi
status=0
cmds=("$server -p $port")
[ "$client" != - ] && cmds+=("$client 127.0.0.1 -p $port")
for cmd in "${cmds[@]}"; do
  out=$($cmd 2>&1); rc=$?
  echo "$out" | sed 's/^/  | /'
  if [ $rc -ne 1 ]; then echo "FAIL: '$cmd' exited $rc, expected 1"; status=1; fi
  echo "$out" | grep -Eq "ERROR (no RDMA device found|ibv_get_device_list failed|rdma_create_event_channel failed)" \
    || { echo "FAIL: '$cmd' did not say there is no RDMA device"; status=1; }
  echo "$out" | grep -q "scripts/softroce-setup.sh" \
    || { echo "FAIL: '$cmd' did not point to scripts/softroce-setup.sh"; status=1; }
  echo "$out" | grep -q "scripts/tour.sh" \
    || { echo "FAIL: '$cmd' did not point to the lab VMs"; status=1; }
done
exit $status

#!/bin/sh
# guest-init.sh - becomes /init (PID 1) in the lab guest's initramfs.
#
# Runs under busybox sh inside the qemu guest that lab.sh boots. Its job:
#   1. load the kernel modules (Soft-RoCE, virtio NIC, 9p, netem),
#   2. bring up eth0 with the address lab.sh gave us (and the extra ones of
#      a userspace-runtime guest),
#   3. build a root file system out of the HOST's own files: the host's `/` is
#      shared read-only over 9p, so the guest runs the host's binaries and
#      libraries (rdma-core, the lessons' builds) unchanged,
#   4. step the clock to the host's, then either (kernel runtime) create the
#      Soft-RoCE device rxe0 on eth0 and wait until it is usable, or
#      (userspace runtime) wait for eth0 and check that UDP port 4791 is free
#      for the userspace RoCE runtime; then apply the netem impairment if
#      lab.sh asked for one,
#   5. run the command lab.sh wrote into <out>/cmd.sh, inside that root,
#      recording its output and exit code in <out>/ (a read-write 9p share
#      mounted at the same absolute path as on the host) - or, for
#      `lab.sh shell`, an interactive bash on the second serial port (ttyS1),
#      which lab.sh connects to the learner's terminal,
#   6. power off (in a shell guest: when that shell ends).
#
# Settings come from the kernel command line (lab.sh builds it):
#   lab.name=server|client   role of this guest
#   lab.ip=10.0.0.1/24       our address on eth0
#   lab.server_ip=, lab.client_ip=   both addresses, for the command's env
#   lab.out=/abs/path        per-guest output directory (host path)
#   lab.repo=/abs/path       repository root, the command's working directory
#   lab.timeout=SECONDS      limit for the command
#   lab.mode=run|shell       run <out>/cmd.sh (default), or an interactive
#                            shell on ttyS1
#   lab.sync=/abs/path       the directory both guests share read-write
#                            (lab-ready / lab-wait), mounted at that path
#   lab.term=NAME            TERM for the shell (default xterm)
#   lab.size=ROWSxCOLS       the shell terminal's size, if lab.sh knew it
#   lab.runtime=kernel|userspace     what provides RDMA here (default kernel):
#                            rdma_rxe + rxe0, or nothing in the kernel and
#                            UDP port 4791 left free for the userspace runtime
#   lab.peer_runtime=kernel|userspace|none   the other guest's, for the env
#   lab.extra_ips=A,B,...    more addresses for eth0 (same prefix length as
#                            lab.ip), added after it; may be empty
#   lab.netem=WORD,WORD,...  a netem spec with its spaces written as commas
#   lab.netem_in=WORD,...    the same for eth0's ingress (through ifb0)
#                            (the command line is split at spaces); empty:
#                            no impairment
#
# Golden rule: PID 1 must never hang and never just exit (exiting PID 1 is a
# kernel panic). Every failure prints a clear "lab-init: ERROR" line on the
# console, writes it to <out>/init-error and rc=255 when <out> is mounted, and
# powers off. lab.sh additionally kills qemu after a host-side timeout.

PATH=/bin
export PATH

# devtmpfs first: the initramfs has no /dev/console node (making one needs
# root when building the image), so the kernel started us without stdin/out.
mount -t devtmpfs devtmpfs /dev 2>/dev/null
exec </dev/console >/dev/console 2>&1

NEWROOT=/newroot      # the root the command runs in (host / + mounts)
OUT_MOUNTED=""        # set once <out> is writable: then errors go there too

say() { echo "lab-init: $*"; }

# Power off now. `poweroff -f` calls reboot(2) directly (no init system to
# ask). qemu runs with -no-reboot and the kernel with panic=-1, so even if
# this failed, the panic after PID 1 exits would still end qemu.
power_off() {
    sync
    poweroff -f
    echo o >/proc/sysrq-trigger 2>/dev/null
    sleep 5
    exit 1
}

fail() {
    say "ERROR: $*"
    if [ -n "$OUT_MOUNTED" ]; then
        echo "$*" >"$NEWROOT$LAB_OUT/init-error"
        echo 255 >"$NEWROOT$LAB_OUT/rc"
    fi
    power_off
}

mount -t proc proc /proc || fail "cannot mount /proc"
mount -t sysfs sysfs /sys || fail "cannot mount /sys"

# --- settings from the kernel command line ----------------------------------
LAB_NAME=""; LAB_IP=""; LAB_SERVER_IP=""; LAB_CLIENT_IP=""
LAB_OUT=""; LAB_REPO=""; LAB_TIMEOUT=120
LAB_RUNTIME=kernel; LAB_PEER_RUNTIME=none; LAB_EXTRA_IPS=""; LAB_NETEM=""; LAB_NETEM_IN=""
LAB_MODE=run; LAB_SYNC=""; LAB_TERM=xterm; LAB_SIZE=""
for word in $(cat /proc/cmdline); do
    case "$word" in
        lab.name=*)      LAB_NAME=${word#*=} ;;
        lab.ip=*)        LAB_IP=${word#*=} ;;
        lab.server_ip=*) LAB_SERVER_IP=${word#*=} ;;
        lab.client_ip=*) LAB_CLIENT_IP=${word#*=} ;;
        lab.out=*)       LAB_OUT=${word#*=} ;;
        lab.repo=*)      LAB_REPO=${word#*=} ;;
        lab.timeout=*)   LAB_TIMEOUT=${word#*=} ;;
        lab.runtime=*)   LAB_RUNTIME=${word#*=} ;;
        lab.peer_runtime=*) LAB_PEER_RUNTIME=${word#*=} ;;
        lab.extra_ips=*) LAB_EXTRA_IPS=$(echo "${word#*=}" | tr , ' ') ;;
        lab.netem=*)     LAB_NETEM=$(echo "${word#*=}" | tr , ' ') ;;
        lab.netem_in=*)  LAB_NETEM_IN=$(echo "${word#*=}" | tr , ' ') ;;
        lab.mode=*)      LAB_MODE=${word#*=} ;;
        lab.sync=*)      LAB_SYNC=${word#*=} ;;
        lab.term=*)      LAB_TERM=${word#*=} ;;
        lab.size=*)      LAB_SIZE=${word#*=} ;;
    esac
done
say "starting '$LAB_NAME' (kernel $(cat /kernel-version), ip $LAB_IP, runtime $LAB_RUNTIME, up $(cut -d' ' -f1 /proc/uptime) s)"
[ -n "$LAB_NAME" ] && [ -n "$LAB_IP" ] && [ -n "$LAB_OUT" ] && [ -n "$LAB_REPO" ] && [ -n "$LAB_SYNC" ] ||
    fail "missing lab.name/lab.ip/lab.out/lab.repo/lab.sync on the kernel command line: $(cat /proc/cmdline)"
case "$LAB_MODE" in
    run|shell) ;;
    *) fail "lab.mode must be run or shell, not '$LAB_MODE'" ;;
esac
case "$LAB_RUNTIME" in
    kernel|userspace) ;;
    *) fail "lab.runtime must be kernel or userspace, not '$LAB_RUNTIME'" ;;
esac
hostname "$LAB_NAME"

# --- 1. modules ---------------------------------------------------------------
# load-order was computed by build-image.sh with modprobe --show-depends, so
# plain insmod in that order satisfies every dependency.
# A userspace-runtime guest skips rdma_rxe: in this kernel (6.1) it opens its
# UDP tunnel socket on port 4791 when it loads, not when rxe0 is created, and
# the userspace runtime needs that port. Nothing else depends on rdma_rxe;
# what it depends on (ib_core, udp_tunnel, ...) loads harmlessly.
while read -r mod; do
    [ "$LAB_RUNTIME" = userspace ] && [ "$mod" = rdma_rxe.ko ] && continue
    insmod "/lib/modules/$mod" || fail "insmod $mod failed"
done </lib/modules/load-order

# --- 2. network ---------------------------------------------------------------
# virtio_net registers eth0 while it is loaded; wait a little in case the
# device shows up late. Bounded, like every wait here.
i=0
while [ ! -e /sys/class/net/eth0 ]; do
    i=$((i + 1)); [ $i -gt 50 ] && fail "no eth0 (virtio_net did not find the NIC)"
    sleep 0.1
done
ip link set lo up || fail "cannot bring up lo"
ip addr add "$LAB_IP" dev eth0 || fail "cannot set $LAB_IP on eth0"
# Extra addresses (userspace-runtime guests: one per runtime process). Added
# after the main one, in the same subnet, they are secondary addresses: the
# main one stays the source of the guest's own traffic.
for a in $LAB_EXTRA_IPS; do
    ip addr add "$a/${LAB_IP#*/}" dev eth0 || fail "cannot add $a/${LAB_IP#*/} on eth0"
done
ip link set eth0 up || fail "cannot bring up eth0"

# --- 3. the root file system ------------------------------------------------
# The host's / arrives read-only over 9p (tag hostroot). msize = size of one
# 9p message: bigger means fewer round trips when programs load libraries.
# cache=loose lets the guest cache what it read: the tree is read-only and
# this guest lives for seconds, so nothing can go stale that matters.
mount -t 9p -o ro,trans=virtio,version=9p2000.L,msize=512000,cache=loose hostroot "$NEWROOT" ||
    fail "cannot mount the host's / (9p tag hostroot)"
# A second view of the host tree without anything mounted on top: used below
# to bring back the repository if a tmpfs hides it.
mount -o bind "$NEWROOT" /hostro || fail "cannot bind the host tree to /hostro"

# The guest's own kernel interfaces, not the host's files.
mount -t proc proc "$NEWROOT/proc" || fail "cannot mount proc in the new root"
mount -t sysfs sysfs "$NEWROOT/sys" || fail "cannot mount sysfs in the new root"
mount -o bind /dev "$NEWROOT/dev" || fail "cannot bind /dev in the new root"
mkdir -p /dev/pts /dev/shm
# What udev would create: bash's process substitution <(...) opens /dev/fd/N.
[ -e /dev/fd ] || ln -s /proc/self/fd /dev/fd
[ -e /dev/stdin ] || ln -s /proc/self/fd/0 /dev/stdin
[ -e /dev/stdout ] || ln -s /proc/self/fd/1 /dev/stdout
[ -e /dev/stderr ] || ln -s /proc/self/fd/2 /dev/stderr
mount -t devpts devpts "$NEWROOT/dev/pts" || fail "cannot mount devpts"
mount -t tmpfs -o mode=1777 tmpfs "$NEWROOT/dev/shm" || fail "cannot mount /dev/shm"
# Writable scratch space; everything else is the read-only host tree.
# /root too, because HOME=/root and tools like to write dotfiles there.
for d in /tmp /run /root; do
    mode=0755; [ "$d" = /tmp ] && mode=1777
    mount -t tmpfs -o mode=$mode tmpfs "$NEWROOT$d" || fail "cannot mount tmpfs on $d"
done
# If the repository lives under one of those (e.g. /tmp/x or /root/x), the
# tmpfs just hid it: bind it back from the untouched view.
case "$LAB_REPO/" in
    /tmp/*|/run/*|/root/*)
        mkdir -p "$NEWROOT$LAB_REPO" &&
        mount -o bind "/hostro$LAB_REPO" "$NEWROOT$LAB_REPO" ||
            fail "cannot bring back the repository $LAB_REPO" ;;
esac
# The per-guest output directory, read-write (tag labout), at the same path
# as on the host: a path printed inside the guest is valid outside it.
mkdir -p "$NEWROOT$LAB_OUT" || fail "output dir $LAB_OUT does not exist in the host tree"
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 labout "$NEWROOT$LAB_OUT" ||
    fail "cannot mount the output dir $LAB_OUT (9p tag labout)"
OUT_MOUNTED=1
[ "$LAB_MODE" = shell ] || [ -f "$NEWROOT$LAB_OUT/cmd.sh" ] || fail "$LAB_OUT/cmd.sh not found"
# The directory both guests share (tag labsync): lab-ready leaves its announcements
# there, lab-wait looks for them. Plain 9p without cache=, so that every look goes
# to the host and sees what the other guest wrote.
mkdir -p "$NEWROOT$LAB_SYNC" || fail "shared directory $LAB_SYNC does not exist in the host tree"
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 labsync "$NEWROOT$LAB_SYNC" ||
    fail "cannot mount the shared directory $LAB_SYNC (9p tag labsync)"
[ -d "$NEWROOT$LAB_REPO" ] || fail "repository $LAB_REPO not found in the host tree"

# The clock. The kernel set it from the emulated RTC at boot, which only has
# whole seconds, so the guest starts up to ~1 s behind the host (and two
# guests can disagree by that much). Refine it: a file we create on the
# read-write share gets its timestamp from the HOST's clock (to a few ms).
# bash's $EPOCHREALTIME, read just before and after the create (no process
# started in between), tells our own time at that moment; the difference is
# our error, and GNU date applies it as a relative step ("now +0.25 seconds").
# All of this runs with the host's bash and date, inside the new root.
if offset=$(chroot "$NEWROOT" /bin/bash -c '
        f=$1/.lab-clock
        a=${EPOCHREALTIME/./}; : >"$f" || exit 1; b=${EPOCHREALTIME/./}
        m=$(date -r "$f" +%s%6N) || exit 1; rm -f "$f"
        us=$(( m - (a + b) / 2 )); sign=+
        [ $us -lt 0 ] && sign=- && us=$(( -us ))
        rel=$sign$(( us / 1000000 )).$(printf %06d $(( us % 1000000 )))
        date -u -s "now $rel seconds" >/dev/null || exit 1
        echo "$rel"' bash "$LAB_OUT"); then
    say "clock synced to the host (stepped ${offset} s)"
else
    say "WARNING: could not sync the clock to the host, keeping the RTC time"
fi

ip4=${LAB_IP%/*}
# Host tools (iproute2's rdma and tc, ss) run inside the new root.
host_tool() { chroot "$NEWROOT" /usr/bin/env PATH=/usr/sbin:/usr/bin:/sbin:/bin "$@"; }

# --- 4. RDMA: Soft-RoCE (kernel runtime) --------------------------------------
# Sets gid_index: where the IPv4 RoCE v2 GID is (for LAB_GID_INDEX).
setup_rxe() {
    # `rdma` is iproute2's tool from the host tree. This is the same command
    # a learner runs on a real machine to get a Soft-RoCE device.
    host_tool rdma link add rxe0 type rxe netdev eth0 || fail "rdma link add rxe0 type rxe netdev eth0 failed"

    # The port must be ACTIVE, eth0 must be fully up (the kernel reports the
    # carrier with a short delay), and the GID table must hold
    # our IPv4 address as an IPv4-mapped IPv6 GID (::ffff:a.b.c.d), the GID
    # that RoCE v2 over IPv4 uses. It is filled asynchronously, so poll
    # (bounded).
    want_gid=$(echo "$ip4" | { IFS=. read -r a b c d; printf '0000:0000:0000:0000:0000:ffff:%02x%02x:%02x%02x' "$a" "$b" "$c" "$d"; })
    port=/sys/class/infiniband/rxe0/ports/1
    i=0
    gid_index=""
    while :; do
        if grep -q ACTIVE "$port/state" 2>/dev/null &&
           [ "$(cat /sys/class/net/eth0/operstate)" = up ]; then
            # rxe has 1024 GID slots; ours is among the first few.
            for g in 0 1 2 3 4 5 6 7; do
                v=""; read -r v <"$port/gids/$g" 2>/dev/null
                [ "$v" = "$want_gid" ] && gid_index=$g && break
            done
            [ -n "$gid_index" ] && break
        fi
        i=$((i + 1))
        [ $i -gt 200 ] && fail "rxe0 not ready after 20 s: port state '$(cat "$port/state" 2>/dev/null)', eth0 $(cat /sys/class/net/eth0/operstate), GID for $ip4 at index '$gid_index'"
        sleep 0.1
    done
    say "rxe0 on eth0: $(cat "$port/state"), GID index $gid_index = ::ffff:$ip4 (up $(cut -d' ' -f1 /proc/uptime) s)"
    [ "$gid_index" = 1 ] || say "WARNING: the IPv4 GID is at index $gid_index, not 1; lessons assume -g 1 / -x 1"
}

# --- 4. RDMA: none in the kernel (userspace runtime) ---------------------------
# The command brings its own RDMA device (the userspace RoCE runtime), which
# binds UDP port 4791 on one of our addresses. Wait for eth0 to be fully up,
# as setup_rxe does, then make sure nothing holds port 4791 (0x12B7 in
# /proc/net/udp and udp6, where addresses and ports are hex). The runtime's
# only GID is at index 0.
setup_userspace() {
    i=0
    until [ "$(cat /sys/class/net/eth0/operstate)" = up ]; do
        i=$((i + 1))
        [ $i -gt 200 ] && fail "eth0 not up after 20 s: operstate $(cat /sys/class/net/eth0/operstate)"
        sleep 0.1
    done
    if awk 'FNR > 1 && $2 ~ /:12B7$/ { found = 1 } END { exit !found }' /proc/net/udp /proc/net/udp6; then
        holders=$(host_tool ss -Hlnuap 'sport = :4791' 2>&1)
        # (A socket with no process listed is the kernel's own, e.g. rxe's.)
        fail "UDP port 4791 is already in use, the userspace runtime could not bind it: $(printf '%s' "$holders" | tr -s ' \n' ' ')"
    fi
    n=0; first=""; last=""
    for a in $LAB_EXTRA_IPS; do n=$((n + 1)); [ -n "$first" ] || first=$a; last=$a; done
    extra=""
    [ $n -gt 0 ] && extra=" + $n more ($first - $last)"
    say "userspace runtime, no rdma_rxe: eth0 up with $LAB_IP$extra, UDP port 4791 free (up $(cut -d' ' -f1 /proc/uptime) s)"
    gid_index=0
}

if [ "$LAB_RUNTIME" = userspace ]; then setup_userspace; else setup_rxe; fi

# --- 4b. impairment ----------------------------------------------------------------
# netem on eth0's egress, with iproute2's tc from the host tree (busybox's tc
# has no netem). Each guest does it, so both directions are impaired.
if [ -n "$LAB_NETEM" ]; then
    # $LAB_NETEM unquoted: one argument per word of the spec.
    # shellcheck disable=SC2086
    out=$(host_tool tc qdisc add dev eth0 root netem $LAB_NETEM 2>&1) ||
        fail "tc qdisc add dev eth0 root netem $LAB_NETEM failed: $(printf '%s' "$out" | tr '\n' ' ')"
    say "netem on eth0: $LAB_NETEM; tc qdisc show dev eth0:"
    host_tool tc qdisc show dev eth0 2>&1 | sed 's/^/lab-init:   /'
fi
# netem on what eth0 receives: an ingress qdisc on eth0 whose one filter redirects
# every packet to ifb0 (the ifb module makes it: an "intermediate functional block"
# whose egress is where the packets go on), and netem on ifb0's egress.
if [ -n "$LAB_NETEM_IN" ]; then
    # shellcheck disable=SC2086
    out=$( { [ -e /sys/class/net/ifb0 ] || host_tool ip link add ifb0 type ifb; } 2>&1 &&
           host_tool ip link set ifb0 up 2>&1 &&
           host_tool tc qdisc add dev eth0 handle ffff: ingress 2>&1 &&
           host_tool tc filter add dev eth0 parent ffff: matchall action mirred egress redirect dev ifb0 2>&1 &&
           host_tool tc qdisc add dev ifb0 root netem $LAB_NETEM_IN 2>&1) ||
        fail "netem on eth0's ingress ($LAB_NETEM_IN, through ifb0) failed: $(printf '%s' "$out" | tr '\n' ' ')"
    say "netem on what eth0 receives: $LAB_NETEM_IN; tc qdisc show dev ifb0:"
    host_tool tc qdisc show dev ifb0 2>&1 | sed 's/^/lab-init:   /'
fi

# --- 4c. after a failed command: does eth0 still transmit? -----------------------
# Rarely (seen twice in full test runs, both times in the client guest, qemu
# 7.2 with TCG), a guest lost its network: TCP connects to the other
# guest timed out for minutes, and the kernel printed a WARNING with a trace.
# In the one whose first lines we have, the WARNING came from __rxe_cleanup
# (rxe_pool.c) while a QP was destroyed: references to the QP were still held
# when its wait ran out (rxe holds one for every packet it handed to the NIC,
# dropped when the driver reclaims the packet's buffer), and later the NETDEV
# WATCHDOG said "transmit queue 0 timed out" every ~5 s: the NIC had stopped
# taking frames off its transmit ring. A command that fails then fails because
# of the lab, not because of what it runs. So after a failed command, send a
# few frames and see whether the NIC takes them: virtio_net counts a frame in
# tx_packets only when the device has taken it off the ring (the driver
# reclaims the buffer then), while the root qdisc's "Sent" counts what it
# handed to the driver. Frames handed over (or, with no netem, held by the
# qdisc), or a new transmit timeout on the queue (the watchdog's count: the
# ring is full and the queue stopped), and none taken within 10 s: the NIC is
# stuck, and <out>/nic-stuck says so for lab.sh, which then runs the whole lab
# once more ("A NIC that stopped" there). Only transmitting is checked: a NIC
# that stopped receiving passes. A link that is down, or frames a netem qdisc
# dropped or still holds, are not judged.
root_qdisc() {  # prints: <packets the root qdisc handed to the driver> <packets it holds>
    host_tool tc -s qdisc show dev eth0 root 2>/dev/null | awk '
        / Sent / && !gs { gs = 1; for (i = 1; i <= NF; i++) if ($(i) == "pkt") { s = $(i - 1); break } }
        / backlog / && !gb { gb = 1; for (i = 1; i <= NF; i++) if ($(i) ~ /^[0-9]+p$/) { b = $(i); sub(/p$/, "", b); break } }
        END { print (s ~ /^[0-9]+$/ ? s : 0), (b ~ /^[0-9]+$/ ? b : 0) }'
}
tx_timeouts() {
    t=$(cat /sys/class/net/eth0/queues/tx-0/tx_timeout 2>/dev/null)
    case "$t" in ''|*[!0-9]*) echo 0 ;; *) echo "$t" ;; esac
}
check_nic() {
    state=$(cat /sys/class/net/eth0/operstate 2>/dev/null)
    if [ "$state" != up ]; then
        say "NIC check: eth0 is ${state:-gone}, not up; not checked"
        return
    fi
    peer=$LAB_CLIENT_IP; [ "$LAB_NAME" = client ] && peer=$LAB_SERVER_IP
    tx0=$(cat /sys/class/net/eth0/statistics/tx_packets)
    set -- $(root_qdisc); sent0=$1
    timeouts0=$(tx_timeouts)
    start=$(cut -d' ' -f1 /proc/uptime)
    i=0 tx=$tx0
    # One small datagram to the discard port of the other guest every 0.5 s (the
    # other guest may be gone: an ARP request goes out then); each send also makes
    # the driver reclaim what the device took. Stop as soon as one is taken.
    while [ $i -lt 20 ] && [ "$tx" = "$tx0" ]; do
        [ $i -lt 10 ] && host_tool bash -c "echo nic-check >/dev/udp/$peer/9" 2>/dev/null
        sleep 0.5
        i=$((i + 1))
        tx=$(cat /sys/class/net/eth0/statistics/tx_packets)
    done
    took=$(awk -v a="$start" -v b="$(cut -d' ' -f1 /proc/uptime)" 'BEGIN { printf "%.1f", b - a }')
    set -- $(root_qdisc); sent=$(( $1 - sent0 )) backlog=$2
    timeouts=$(( $(tx_timeouts) - timeouts0 ))
    if [ "$tx" != "$tx0" ]; then
        say "NIC check: eth0 transmits (tx_packets $tx0 -> $tx in $took s; the root qdisc handed $sent frames to the driver)"
    elif [ $sent -gt 0 ] || [ $timeouts -gt 0 ] || { [ -z "$LAB_NETEM" ] && [ $backlog -gt 0 ]; }; then
        msg="eth0 took no frame off its transmit ring in $took s: tx_packets stayed $tx0 while the root qdisc handed $sent more frames to the driver and holds $backlog; new transmit timeouts on queue 0: $timeouts"
        say "NIC check: STUCK: $msg"
        echo "$msg" >"$NEWROOT$LAB_OUT/nic-stuck"
    else
        say "NIC check: no frame reached the driver in $took s (the root qdisc handed over none and holds $backlog${LAB_NETEM:+; netem: $LAB_NETEM}); not judged"
    fi
}

# --- 5. the command (or the shell) -------------------------------------------------
# The environment of the command and of the shell: exactly these variables (env -i).
# Output is line-buffered: coreutils' libstdbuf.so, preloaded, sets the buffering of
# every program's stdout that uses C stdio (_STDBUF_O=L: one write per line; stderr
# stays unbuffered), the way `stdbuf -oL` does, so that a log file shows stdout and
# stderr lines in the order they happened and a program killed by the timeout loses
# nothing it printed. An ASan-built program refuses any preload placed ahead of its
# runtime unless ASAN_OPTIONS has verify_asan_link_order=0. Python does not buffer
# through C stdio: PYTHONUNBUFFERED=1 does the same for it.
STDBUF_LIB=/usr/libexec/coreutils/libstdbuf.so
[ -f "$NEWROOT$STDBUF_LIB" ] ||
    fail "$STDBUF_LIB is missing in the host tree; it makes the command's output line-buffered (Debian package coreutils)"
lab_env() {  # TERM CMD...: runs CMD in the new root, in the command's environment
    term=$1; shift
    chroot "$NEWROOT" /usr/bin/env -i \
        PATH="$LAB_REPO/scripts/lab/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
        HOME=/root LANG=C.UTF-8 TERM="$term" \
        LD_PRELOAD="$STDBUF_LIB" _STDBUF_O=L ASAN_OPTIONS=verify_asan_link_order=0 PYTHONUNBUFFERED=1 \
        LAB_ROLE="$LAB_NAME" LAB_IP="$ip4" \
        LAB_SERVER_IP="$LAB_SERVER_IP" LAB_CLIENT_IP="$LAB_CLIENT_IP" \
        LAB_OUT="$LAB_OUT" LAB_REPO="$LAB_REPO" LAB_SYNC="$LAB_SYNC" LAB_TIMEOUT="$LAB_TIMEOUT" \
        LAB_RUNTIME="$LAB_RUNTIME" LAB_PEER_RUNTIME="$LAB_PEER_RUNTIME" \
        LAB_GID_INDEX="$gid_index" LAB_EXTRA_IPS="$LAB_EXTRA_IPS" LAB_NETEM="$LAB_NETEM" \
        LAB_NETEM_INGRESS="$LAB_NETEM_IN" "$@"
}

if [ "$LAB_MODE" = shell ]; then
    # The learner's shell, on the second serial port: lab.sh joins it to a terminal
    # (lab.sh shell / attach). The port is opened here, before telling the host it
    # may send (shell-ready): input that reaches an unopened port can be lost.
    tty=/dev/ttyS1
    exec 3<>"$tty" || fail "cannot open $tty for the shell"
    case "$LAB_SIZE" in
        *x*) chroot "$NEWROOT" /usr/bin/stty rows "${LAB_SIZE%x*}" cols "${LAB_SIZE#*x}" <&3 ;;
    esac
    say "shell on $tty (the guest powers off when it exits)"
    : >"$NEWROOT$LAB_OUT/shell-ready"
    # setsid -c: a session of its own with the port as controlling terminal, so that
    # Ctrl-C and job control work; -w: wait for bash even if setsid had to fork.
    lab_env "$LAB_TERM" /bin/bash -c 'cd "$LAB_REPO" || exit 126
        exec setsid -c -w bash --rcfile "$LAB_REPO/scripts/lab/shell-rc.sh" -i' <&3 >&3 2>&3 3>&-
    rc=$?
    exec 3>&-
    echo $rc >"$NEWROOT$LAB_OUT/rc"
    # Tell the other guest (lab-wait <role>-shell-exited), now that rc is written: the
    # server's shell, whose end ends the lab, can wait for the client's to be over.
    printf '%s %s shell exited with %s\n' "$LAB_NAME" "$(date -u +%H:%M:%S)" "$rc" \
        >"$NEWROOT$LAB_SYNC/.$LAB_NAME-shell-exited" &&
        mv -f "$NEWROOT$LAB_SYNC/.$LAB_NAME-shell-exited" "$NEWROOT$LAB_SYNC/$LAB_NAME-shell-exited"
    say "the shell exited with $rc (up $(cut -d' ' -f1 /proc/uptime) s), powering off"
    power_off
fi

# env -i: a clean, documented environment. `timeout -k 5`: SIGTERM at the
# limit, SIGKILL 5 s later if the command ignores it (exit code 124
# with TERM, 137 when KILL was needed). stdin is /dev/null: nothing can wait
# for input.
say "running $LAB_OUT/cmd.sh (timeout ${LAB_TIMEOUT} s)"
t0=$(cut -d. -f1 /proc/uptime)
lab_env dumb /bin/bash -c 'cd "$LAB_REPO" || exit 126; exec timeout -k 5 "$LAB_TIMEOUT" bash "$LAB_OUT/cmd.sh"' \
    </dev/null >"$NEWROOT$LAB_OUT/cmd.log" 2>&1
rc=$?
elapsed=$(( $(cut -d. -f1 /proc/uptime) - t0 ))
# 124/137 alone could also be the command's own exit code; the elapsed time
# tells a real timeout apart.
if { [ $rc = 124 ] || [ $rc = 137 ]; } && [ $elapsed -ge "$LAB_TIMEOUT" ]; then
    msg="command timed out after $LAB_TIMEOUT s and was killed (exit $rc)"
    echo "lab: $msg" >>"$NEWROOT$LAB_OUT/cmd.log"
    echo "$msg" >"$NEWROOT$LAB_OUT/timed-out"
    say "$msg"
fi
echo $rc >"$NEWROOT$LAB_OUT/rc"
[ "$rc" = 0 ] || check_nic
say "command exited with $rc (up $(cut -d' ' -f1 /proc/uptime) s), powering off"

# --- 6. done ---------------------------------------------------------------------
power_off

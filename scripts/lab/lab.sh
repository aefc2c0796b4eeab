#!/usr/bin/env bash
# lab.sh - run commands on a Soft-RoCE pair of tiny qemu guests.
#
# Usage:
#   scripts/lab/lab.sh run --out DIR [--timeout SEC] [--capture PCAP]
#                          [--server-runtime kernel|userspace]
#                          [--client-runtime kernel|userspace]
#                          [--netem 'SPEC'] [--netem-ingress 'SPEC']
#                          --server 'CMD' [--client 'CMD']
#   scripts/lab/lab.sh --help
#
# Why: RDMA needs kernel support (here: Soft-RoCE, the `rdma_rxe` driver) that
# many machines - CI runners, containers, this project's build host - do not
# have and cannot load. lab.sh boots one or two small Debian guests that do
# (built by build-image.sh from Debian packages), wires them together with a
# private virtual Ethernet cable, and runs one shell command in each. The
# guests see the host's files read-only at the same paths, so the host's
# rdma-core tools and the lessons you built run there unchanged.
#
#   server guest: eth0 10.0.0.1/24, Soft-RoCE device rxe0 on it
#   client guest: eth0 10.0.0.2/24, Soft-RoCE device rxe0 on it
#   (only with --client; with --server alone, one guest boots: enough for
#   "both sides on one host" programs)
# That is the default, kernel runtime; see Runtimes below for the other.
#
# On each kernel-runtime guest the IPv4 RoCE v2 GID (::ffff:10.0.0.x) is at
# GID index 1: rdma-core examples take `-g 1`, perftest takes `-x 1`.
#
# Runtimes: --server-runtime / --client-runtime RUNTIME (default: kernel)
# choose what provides RDMA in that guest (--client-runtime is ignored
# without --client).
#   kernel     Soft-RoCE in the guest's kernel: rdma_rxe, device rxe0 on
#              eth0, as described above.
#   userspace  no kernel RDMA device: rdma_rxe is not loaded (in this kernel
#              it binds UDP port 4791 as soon as it loads), so the project's
#              userspace RoCE runtime (userspace-roce/, a drop-in
#              libibverbs.so.1 + librdmacm.so.1 picked with LD_LIBRARY_PATH,
#              see scripts/userspace-roce.sh) can bind port 4791 itself. The
#              guest checks before the command that nothing holds UDP port
#              4791 (a guest setup failure otherwise). The runtime binds one
#              address per process, so such a guest has 15 more addresses on
#              eth0 besides its own (secondary, same /24), one per process:
#                server 10.0.0.101 - 10.0.0.115
#                client 10.0.0.201 - 10.0.0.215
#              (kernel guests have none). Its device is uroce0, and its only
#              GID (index 0) is ::ffff:<the address the process bound>. The
#              runtime's default address is on loopback, which does not reach
#              the wire: give each process one with UROCE_ADDR (an address, or
#              UROCE_ADDR=eth0: the first address of eth0 that no other
#              process holds), e.g. a client on the runtime against a server
#              on kernel rxe:
#   --server 'ibv_rc_pingpong -g $LAB_GID_INDEX' --client-runtime userspace
#   --client 'export LD_LIBRARY_PATH=build/userspace-roce/lib UROCE_ADDR=$LAB_IP;
#             for i in $(seq 50); do ibv_rc_pingpong -g $LAB_GID_INDEX $LAB_SERVER_IP && exit 0; sleep 0.2; done; exit 1'
# Mixing the two puts the runtime and kernel rxe on the two ends of one
# (virtual) wire; --capture records what each sends.
#
# Impairments: --netem 'SPEC' runs `tc qdisc add dev eth0 root netem SPEC`
# in each guest once eth0 is up, before the command, e.g.
#   --netem 'loss 3% delay 1ms'    (each guest's egress: both directions)
# SPEC is netem's own syntax (tc-netem(8)), limited to the characters
# A-Z a-z 0-9 . % _ - and space. If tc refuses it, the guest setup fails
# (DIR/<role>/init-error has tc's message). The console log shows the
# resulting `tc qdisc show dev eth0`.
# --netem-ingress 'SPEC' impairs what each guest RECEIVES instead (eth0's
# incoming packets redirected through an ifb device that carries the netem
# qdisc; tc-mirred(8)). The difference shows in --capture, which qemu records
# at the server's NIC, outside the guest: a packet lost on its sender's egress
# never reaches the NIC and is missing from the capture, while a packet lost
# on its receiver's ingress was on the wire and is recorded, so every resend
# of it shows as its PSN seen twice. Use --netem-ingress to watch
# retransmission in a capture, --netem to see what a sender's corrupted (or
# delayed, duplicated) packets look like on the wire. Both may be given.
#
# Both guests boot at the same time, so a client must retry its connect until
# the server listens, e.g.:
#   --client 'for i in $(seq 50); do ibv_rc_pingpong -g 1 10.0.0.1 && exit 0; sleep 0.2; done; exit 1'
#
# Inside a guest the command runs as `bash DIR/<role>/cmd.sh`, as root, with
# the repository root as working directory, stdin from /dev/null, under
# `timeout`. Its environment is exactly:
#   LAB_ROLE       server | client
#   LAB_IP         this guest's address (10.0.0.1 or 10.0.0.2)
#   LAB_SERVER_IP  10.0.0.1
#   LAB_CLIENT_IP  10.0.0.2
#   LAB_OUT        DIR/<role> - writable, same path inside and outside:
#                  put any file the host should get back there
#   LAB_REPO       the repository root
#   LAB_TIMEOUT    the --timeout value
#   LAB_RUNTIME    this guest's runtime: kernel | userspace
#   LAB_PEER_RUNTIME  the other guest's runtime: kernel | userspace, or none
#                  when only the server boots
#   LAB_GID_INDEX  the GID index of this guest's IPv4 RoCE v2 GID: 1 on kernel
#                  guests (where rxe puts it; the index found at boot), 0 on
#                  userspace guests (the runtime's only GID)
#   LAB_EXTRA_IPS  the extra addresses of a userspace guest, space-separated
#                  (10.0.0.101 ... 10.0.0.115 on the server, 10.0.0.201 ...
#                  10.0.0.215 on the client); empty on kernel guests
#   LAB_NETEM      the --netem SPEC, or empty
#   LAB_NETEM_INGRESS  the --netem-ingress SPEC, or empty
#   PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
#   HOME=/root  LANG=C.UTF-8  TERM=dumb
# The guest's file system is the host's / read-only, except: tmpfs (empty,
# writable) on /tmp, /run, /root and /dev/shm, and LAB_OUT (read-write,
# shared with the host). Guest clock = host clock (UTC): set from the emulated
# RTC at boot, then stepped to the host's time to within ~10-20 ms.
#
# Output layout:
#   DIR/lab-info              key=value: kernel, qemu, accel, timeout,
#                             server_runtime, client_runtime, netem, ...
#   DIR/<role>/cmd.sh         the command, as written by lab.sh
#   DIR/<role>/cmd.log        its stdout + stderr
#   DIR/<role>/rc             its exit code (255 = guest setup failed)
#   DIR/<role>/console.log    the guest's serial console (kernel + /init)
#   DIR/<role>/init-error     only if the guest setup failed: why
#   DIR/<role>/timed-out      only if the command hit --timeout
#   DIR/<role>/qemu.log       qemu's own messages (usually empty)
#   PCAP (--capture)          every frame on the wire, seen at the server NIC
#
# Exit status: 0 when every command exited 0; 1 otherwise (failure, timeout,
# guest crash); 2 for bad usage.
#
# Environment knobs (optional):
#   LAB_IMAGE_DIR  where the image is built/cached (default <repo>/build/lab/image)
#   LAB_ACCEL      force qemu's accelerator: kvm or tcg (default: auto)
#   LAB_BOOT_MARGIN  seconds the host waits beyond --timeout before killing a
#                  guest that did not power off (default 90)
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/../.." && pwd)
IMAGE_DIR=${LAB_IMAGE_DIR:-$REPO_ROOT/build/lab/image}

SERVER_IP=10.0.0.1
CLIENT_IP=10.0.0.2
PREFIX=24
# A userspace-runtime guest's extra addresses (one per runtime process):
# 10.0.0.<base+1> ... 10.0.0.<base+EXTRA_IPS>, i.e. .101-.115 and .201-.215.
SERVER_EXTRA_BASE=100
CLIENT_EXTRA_BASE=200
EXTRA_IPS=15
MEM_MB=256            # 128 MiB is too little for the ~6 MB initramfs + kernel
# Seconds allowed on top of --timeout for boot + setup + power-off before the
# host kills qemu. Generous: TCG on a loaded CI runner can be several times
# slower than the ~3 s a boot takes on an idle machine.
BOOT_MARGIN=${LAB_BOOT_MARGIN:-90}

usage() {
    # The comment header above is the manual: print it.
    sed -n '2,/^set -euo pipefail/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
}
die_usage() {
    printf 'lab.sh: %s\n' "$*" >&2
    sed -n '/^# Usage:/,/^#$/{s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}" >&2
    echo "Run 'lab.sh --help' for the details." >&2
    exit 2
}
die() { printf 'lab: ERROR: %s\n' "$*" >&2; exit 1; }
say() { printf 'lab: %s\n' "$*"; }

# --- arguments ---------------------------------------------------------------
[ $# -gt 0 ] || die_usage "missing command"
case "$1" in
    -h|--help|help) usage; exit 0 ;;
    run) shift ;;
    *) die_usage "unknown command '$1'" ;;
esac

OUT="" TIMEOUT=120 CAPTURE="" SERVER_CMD="" CLIENT_CMD="" HAVE_SERVER="" HAVE_CLIENT=""
SERVER_RUNTIME=kernel CLIENT_RUNTIME=kernel NETEM="" HAVE_NETEM="" NETEM_IN="" HAVE_NETEM_IN=""
while [ $# -gt 0 ]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --out|--timeout|--capture|--server|--client|--server-runtime|--client-runtime|--netem|--netem-ingress)
            [ $# -ge 2 ] || die_usage "$1 needs a value"
            case "$1" in
                --out) OUT=$2 ;;
                --timeout) TIMEOUT=$2 ;;
                --capture) CAPTURE=$2 ;;
                --server) SERVER_CMD=$2; HAVE_SERVER=1 ;;
                --client) CLIENT_CMD=$2; HAVE_CLIENT=1 ;;
                --server-runtime) SERVER_RUNTIME=$2 ;;
                --client-runtime) CLIENT_RUNTIME=$2 ;;
                --netem) NETEM=$2; HAVE_NETEM=1 ;;
                --netem-ingress) NETEM_IN=$2; HAVE_NETEM_IN=1 ;;
            esac
            shift 2 ;;
        *) die_usage "unknown argument '$1'" ;;
    esac
done
[ -n "$OUT" ] || die_usage "--out DIR is required"
[ -n "$HAVE_SERVER" ] || die_usage "--server CMD is required"
[[ $TIMEOUT =~ ^[1-9][0-9]*$ ]] || die_usage "--timeout must be a positive number of seconds"
for r in "server:$SERVER_RUNTIME" "client:$CLIENT_RUNTIME"; do
    case "${r#*:}" in
        kernel|userspace) ;;
        *) die_usage "--${r%%:*}-runtime must be kernel or userspace, not '${r#*:}'" ;;
    esac
done
# The SPEC travels on the kernel command line, which the kernel splits at
# spaces (and where quotes have a meaning): only plain characters, and the
# spaces become commas there (netem's words never contain one). Runs of
# spaces are squeezed to one. The length bound keeps the command line well
# under the kernel's 2048 bytes.
netem_spec() {  # OPTION VALUE: prints the checked spec, spaces squeezed
    [[ $2 =~ ^[A-Za-z0-9.%_\ -]+$ ]] && [[ $2 =~ [^\ ] ]] && [ ${#2} -le 200 ] ||
        die_usage "$1 SPEC must be netem words made of A-Z a-z 0-9 . % _ - and spaces (at most 200 characters), not '$2'"
    local words
    read -ra words <<<"$2"
    echo "${words[*]}"
}
[ -z "$HAVE_NETEM" ] || NETEM=$(netem_spec --netem "$NETEM") || exit 2
[ -z "$HAVE_NETEM_IN" ] || NETEM_IN=$(netem_spec --netem-ingress "$NETEM_IN") || exit 2
[[ $BOOT_MARGIN =~ ^[0-9]+$ ]] || die "LAB_BOOT_MARGIN must be a number of seconds"

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
if [ -n "$CAPTURE" ]; then
    mkdir -p "$(dirname "$CAPTURE")"
    CAPTURE=$(cd "$(dirname "$CAPTURE")" && pwd)/$(basename "$CAPTURE")
fi
# These paths travel on the kernel command line (split at spaces) and in
# qemu options (split at commas): keep them to plain characters.
for p in "$OUT" "$REPO_ROOT" ${CAPTURE:+"$CAPTURE"}; do
    [[ $p =~ ^[A-Za-z0-9._/+-]+$ ]] ||
        die "path '$p' has characters the lab cannot pass to the guest (use letters, digits, . _ / + -)"
done

ROLES=(server)
[ -n "$HAVE_CLIENT" ] && ROLES+=(client)

for tool in qemu-system-x86_64 timeout ss; do
    command -v "$tool" >/dev/null 2>&1 || die "'$tool' not found (install the project's packages first)"
done

# --- the image ---------------------------------------------------------------
"$SCRIPT_DIR/build-image.sh" "$IMAGE_DIR" || die "building the guest image failed"
KVER=$(cat "$IMAGE_DIR/kernel-version")

# --- accelerator -------------------------------------------------------------
# KVM runs the guest on the real CPU: much faster, but only with hardware
# virtualisation (vmx = Intel, svm = AMD) and access to /dev/kvm. Some
# machines expose a /dev/kvm without them (a software hypervisor) on which a
# stock kernel does not boot, so both conditions are required. Otherwise TCG,
# qemu's CPU emulator: slower, works everywhere.
ACCEL=${LAB_ACCEL:-}
if [ -z "$ACCEL" ]; then
    ACCEL=tcg
    if grep -qwE 'vmx|svm' /proc/cpuinfo && [ -r /dev/kvm ] && [ -w /dev/kvm ]; then
        ACCEL=kvm
    fi
fi
case "$ACCEL" in
    kvm) ACCEL_ARGS=(-accel kvm -cpu host) ;;
    tcg) ACCEL_ARGS=(-accel tcg) ;;
    *) die "LAB_ACCEL must be kvm or tcg, not '$ACCEL'" ;;
esac

# --- the wire ------------------------------------------------------------------
# qemu's UDP socket netdev: each guest sends its Ethernet frames as UDP
# datagrams to the other's port on 127.0.0.1. No root, no bridge, no tap.
# (The TCP variant adds ~40 ms stalls per round trip.) Pick a pair of free
# ports, starting from one derived from our PID so that concurrent lab runs
# start far apart, then probing.
port_busy() { [ -n "$(ss -Hlnu "sport = :$1" 2>/dev/null)" ]; }
PORT=""
base=$(( 20000 + ($$ * 2) % 40000 ))
for i in $(seq 0 200); do
    p=$(( 20000 + (base - 20000 + i * 2) % 40000 ))
    if ! port_busy "$p" && ! port_busy "$((p + 1))"; then PORT=$p; break; fi
done
[ -n "$PORT" ] || die "no free UDP port pair found on 127.0.0.1"

# --- per guest -----------------------------------------------------------------
QEMU_VERSION=$(qemu-system-x86_64 --version | head -n1)
HOST_TIMEOUT=$((TIMEOUT + BOOT_MARGIN))

cat >"$OUT/lab-info" <<EOF
kernel=$KVER
kernel_package=$(cat "$IMAGE_DIR/kernel-package")
qemu=$QEMU_VERSION
accel=$ACCEL
roles=${ROLES[*]}
server_ip=$SERVER_IP
client_ip=$CLIENT_IP
timeout=$TIMEOUT
capture=$CAPTURE
server_runtime=$SERVER_RUNTIME
client_runtime=$CLIENT_RUNTIME
netem=$NETEM
netem_ingress=$NETEM_IN
started=$(date -u +%Y-%m-%dT%H:%M:%SZ)
EOF

declare -A PID
start_guest() {
    local role=$1 cmd ip mac lport rport runtime peer_runtime extra_base extra=""
    local dir="$OUT/$role"
    mkdir -p "$dir"
    # Results of an earlier run in the same DIR must not be mistaken for ours.
    rm -f "$dir"/{cmd.sh,cmd.log,rc,console.log,init-error,timed-out,qemu.log}
    if [ "$role" = server ]; then
        cmd=$SERVER_CMD ip=$SERVER_IP mac=52:54:00:00:00:01 lport=$PORT rport=$((PORT + 1))
        runtime=$SERVER_RUNTIME peer_runtime=$CLIENT_RUNTIME extra_base=$SERVER_EXTRA_BASE
        [ -n "$HAVE_CLIENT" ] || peer_runtime=none
    else
        cmd=$CLIENT_CMD ip=$CLIENT_IP mac=52:54:00:00:00:02 lport=$((PORT + 1)) rport=$PORT
        runtime=$CLIENT_RUNTIME peer_runtime=$SERVER_RUNTIME extra_base=$CLIENT_EXTRA_BASE
    fi
    # Only userspace guests get extra addresses (comma-separated: the
    # kernel command line is split at spaces).
    if [ "$runtime" = userspace ]; then
        local i
        for i in $(seq $((extra_base + 1)) $((extra_base + EXTRA_IPS))); do
            extra+=${extra:+,}${ip%.*}.$i
        done
    fi
    {
        echo "# $role command, written by scripts/lab/lab.sh; run as: bash cmd.sh"
        printf '%s\n' "$cmd"
    } >"$dir/cmd.sh"

    # shellcheck disable=SC2054  # the commas are qemu's, not array separators
    local args=(
        -name "lab-$role" -nodefaults -no-user-config
        "${ACCEL_ARGS[@]}" -m "$MEM_MB" -smp 1
        -display none
        # Panic or reboot => qemu exits instead of booting again.
        -no-reboot
        # Guest clock: the emulated RTC starts at the host's UTC time; the
        # kernel reads it at boot (CONFIG_RTC_HCTOSYS).
        -rtc base=utc,clock=host
        # vmlinux is an ELF with a PVH entry: no decompression at boot.
        -kernel "$IMAGE_DIR/vmlinux" -initrd "$IMAGE_DIR/initramfs.cpio"
        -append "console=ttyS0 panic=-1 lab.name=$role lab.ip=$ip/$PREFIX lab.server_ip=$SERVER_IP lab.client_ip=$CLIENT_IP lab.out=$dir lab.repo=$REPO_ROOT lab.timeout=$TIMEOUT lab.runtime=$runtime lab.peer_runtime=$peer_runtime${extra:+ lab.extra_ips=$extra}${NETEM:+ lab.netem=${NETEM// /,}}${NETEM_IN:+ lab.netem_in=${NETEM_IN// /,}}"
        -serial "file:$dir/console.log"
        # The wire. Distinct MACs: qemu would give both guests the same one.
        # speed/duplex: virtio-net reports none by default, and rxe asks for
        # it on every query (console spam "eth0 speed is unknown").
        -netdev "socket,id=n0,udp=127.0.0.1:$rport,localaddr=127.0.0.1:$lport"
        -device "virtio-net-pci,netdev=n0,mac=$mac,speed=1000,duplex=full"
        # The host's / read-only, and this guest's output dir read-write.
        # security_model=none: files are accessed with the rights of the user
        # running qemu, no ownership mapping. multidevs=remap: / spans several
        # host file systems whose inode numbers could collide in the guest.
        -fsdev "local,id=hostroot,path=/,security_model=none,readonly=on,multidevs=remap"
        -device "virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot"
        -fsdev "local,id=labout,path=$dir,security_model=none"
        -device "virtio-9p-pci,fsdev=labout,mount_tag=labout"
    )
    if [ "$role" = server ] && [ -n "$CAPTURE" ]; then
        rm -f "$CAPTURE"
        # qemu writes every frame this NIC sends or receives to a pcap file;
        # nothing runs in the guest for it.
        args+=(-object "filter-dump,id=cap0,netdev=n0,file=$CAPTURE")
    fi
    # The host-side limit: if the guest never powers off (hung boot, kernel
    # trouble), qemu is killed. -k: SIGKILL if SIGTERM is not enough.
    timeout -k 5 "$HOST_TIMEOUT" qemu-system-x86_64 "${args[@]}" >"$dir/qemu.log" 2>&1 &
    PID[$role]=$!
}

NOTES="runtime: server $SERVER_RUNTIME"
[ -n "$HAVE_CLIENT" ] && NOTES+=", client $CLIENT_RUNTIME"
[ -n "$NETEM" ] && NOTES+=", netem '$NETEM'"
[ -n "$NETEM_IN" ] && NOTES+=", netem on ingress '$NETEM_IN'"
say "booting ${ROLES[*]} (kernel $KVER, $ACCEL, udp ports $PORT/$((PORT + 1)), timeout $TIMEOUT s, $NOTES)"
T0=$SECONDS
for role in "${ROLES[@]}"; do start_guest "$role"; done

# If we are interrupted (Ctrl-C, CI cancel), do not leave guests running.
# `timeout` runs in its own process group, so Ctrl-C does not reach it by
# itself; killing it makes it stop its qemu.
stop_guests() { for p in "${PID[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap stop_guests EXIT
trap 'stop_guests; say "interrupted, guests stopped"; exit 130' INT TERM HUP

declare -A QEMU_RC
for role in "${ROLES[@]}"; do
    QEMU_RC[$role]=0
    wait "${PID[$role]}" || QEMU_RC[$role]=$?
done
trap - EXIT INT TERM HUP
say "guests done in $((SECONDS - T0)) s"

# --- report --------------------------------------------------------------------
show_tail() {   # file, what
    if [ -s "$1" ]; then
        echo "---- last lines of $2 ($1) ----"
        tail -n 20 "$1" | sed 's/^/  | /'
    else
        echo "---- $2 ($1): empty or missing ----"
    fi
}

STATUS=0
for role in "${ROLES[@]}"; do
    dir="$OUT/$role"
    where="(log: $dir/cmd.log, console: $dir/console.log)"
    rc=$(cat "$dir/rc" 2>/dev/null || true)
    qrc=${QEMU_RC[$role]}
    if [ "$rc" = 0 ] && [ "$qrc" = 0 ]; then
        say "$role: exit 0 $where"
        continue
    fi
    STATUS=1
    if [ "$qrc" = 124 ] || [ "$qrc" = 137 ]; then
        say "$role: FAILED: the guest did not power off within $HOST_TIMEOUT s (--timeout $TIMEOUT + $BOOT_MARGIN s for boot), qemu was killed $where"
    elif [ -z "$rc" ]; then
        say "$role: FAILED: no exit code; the guest stopped before running the command (qemu exit $qrc) $where"
    elif [ -f "$dir/init-error" ]; then
        say "$role: FAILED: guest setup failed: $(cat "$dir/init-error") $where"
    elif [ -f "$dir/timed-out" ]; then
        say "$role: TIMEOUT: $(cat "$dir/timed-out") $where"
    else
        say "$role: exit $rc $where"
    fi
    [ -s "$dir/qemu.log" ] && show_tail "$dir/qemu.log" "qemu messages"
    show_tail "$dir/console.log" "console"
    # The command's output exists only if the command was started.
    [ -n "$rc" ] && [ ! -f "$dir/init-error" ] && show_tail "$dir/cmd.log" "command output"
done
[ -n "$CAPTURE" ] && say "capture: $CAPTURE ($(stat -c %s "$CAPTURE" 2>/dev/null || echo 0) bytes)"
exit $STATUS

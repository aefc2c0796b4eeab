#!/usr/bin/env bash
# lab.sh - run commands on a Soft-RoCE pair of tiny qemu guests, or sit in them.
#
# Usage:
#   scripts/lab/lab.sh run --out DIR [--timeout SEC] [--capture PCAP]
#                          [--server-runtime kernel|userspace]
#                          [--client-runtime kernel|userspace]
#                          [--netem 'SPEC'] [--netem-ingress 'SPEC']
#                          --server 'CMD' [--client 'CMD']
#   scripts/lab/lab.sh shell [--out DIR] [--timeout SEC] [--capture PCAP]
#                          [--server-runtime ...] [--client-runtime ...]
#                          [--netem 'SPEC'] [--netem-ingress 'SPEC']
#   scripts/lab/lab.sh attach server|client [--out DIR]
#   scripts/lab/lab.sh --help
#
# Why: RDMA needs kernel support (here: Soft-RoCE, the `rdma_rxe` driver) that
# many machines - CI runners, containers, this project's build host - do not
# have and cannot load. lab.sh boots one or two small Debian guests that do
# (built by build-image.sh from Debian packages), wires them together with a
# private virtual Ethernet cable, and runs one shell command in each (or
# gives you an interactive shell in each). The guests see the host's files
# read-only at the same paths, so the host's rdma-core tools and the lessons
# you built run there unchanged.
#
#   server guest: eth0 10.0.0.1/24, Soft-RoCE device rxe0 on it
#   client guest: eth0 10.0.0.2/24, Soft-RoCE device rxe0 on it
#   (only with --client; with --server alone, one guest boots: enough for
#   "both sides on one host" programs)
# That is the default, kernel runtime; see Runtimes below for the other.
#
# `run` runs one command in each guest and powers them off (below: Commands).
# `shell` boots both guests and gives you an interactive shell in each (below:
# Shells): the same environment, tools and files as a command.
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
#   --server 'lab-ready pp --tcp-listen 18515 -- ibv_rc_pingpong -g $LAB_GID_INDEX'
#   --client-runtime userspace
#   --client 'export LD_LIBRARY_PATH=build/userspace-roce/lib UROCE_ADDR=$LAB_IP;
#             lab-wait pp && ibv_rc_pingpong -g $LAB_GID_INDEX $LAB_SERVER_IP'
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
# Waiting for the server: both guests boot at the same time, so a client must
# not connect before its server listens. Two tools on the guests' PATH (in
# scripts/lab/bin/; each has --help) do that without a retry loop:
#   lab-ready NAME CONDITION -- PROGRAM ARGS   (server side) starts PROGRAM and
#       announces NAME once CONDITION holds: --tcp-listen PORT (a TCP socket
#       listens), --cm-listen PORT (an RDMA CM id listens; kernel guests), or
#       --log-line FILE REGEX (the program printed that line), --new-line
#       FILE REGEX (the same among lines added after lab-ready started). NAME is
#       withdrawn when PROGRAM exits (without `-- PROGRAM`, it stays announced).
#   lab-wait NAME                               (client side) returns once NAME
#       is announced; fails after --timeout (default 120 s), or at once if the
#       server's lab-ready gave up, with a message saying which and why.
# e.g.
#   --server 'lab-ready pp --tcp-listen 18515 -- ibv_rc_pingpong -g 1'
#   --client 'lab-wait pp && ibv_rc_pingpong -g 1 $LAB_SERVER_IP'
#   --server 'lab-ready rping --cm-listen 7174 -- rping -s -v -a $LAB_IP -C 3'
#   --client 'lab-wait rping && rping -c -v -a $LAB_SERVER_IP -C 3'
# The client's first attempt is then the one that connects: no refused attempt
# in its log or on the wire. The announcements travel through DIR/sync, a
# directory both guests share with the host (LAB_SYNC), not over the guests'
# network; DIR/sync/log records each announcement and wait. Give each server
# run its own NAME (run1, run2, ...): a client waiting for the second run must
# not take the first run's announcement for it.
#
# Commands: inside a guest the command runs as `bash DIR/<role>/cmd.sh`, as
# root, with the repository root as working directory, stdin from /dev/null,
# under `timeout`. Its environment is exactly:
#   LAB_ROLE       server | client
#   LAB_IP         this guest's address (10.0.0.1 or 10.0.0.2)
#   LAB_SERVER_IP  10.0.0.1
#   LAB_CLIENT_IP  10.0.0.2
#   LAB_OUT        DIR/<role> - writable, same path inside and outside:
#                  put any file the host should get back there
#   LAB_SYNC       DIR/sync - shared by both guests and the host, writable:
#                  lab-ready's announcements, lab-wait's log
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
#   PATH=<repo>/scripts/lab/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
#                  (the first for lab-ready and lab-wait)
#   HOME=/root  LANG=C.UTF-8  TERM=dumb (a shell: lab.sh's TERM, or xterm)
#   LD_PRELOAD=/usr/libexec/coreutils/libstdbuf.so  _STDBUF_O=L
#                  every program's stdout is line-buffered (what `stdbuf -oL`
#                  does): a log shows stdout and stderr lines in the order they
#                  happened, and a program killed by the timeout keeps all it
#                  printed. Programs that set their own buffering, or do not
#                  use C stdio, are not affected (hence PYTHONUNBUFFERED).
#   ASAN_OPTIONS=verify_asan_link_order=0
#                  an AddressSanitizer build aborts when a library is preloaded
#                  ahead of its runtime, unless this is set; if you set your own
#                  ASAN_OPTIONS, keep it: ASAN_OPTIONS=$ASAN_OPTIONS:detect_leaks=1
#   PYTHONUNBUFFERED=1   the same for python's own buffering
# The userspace runtime is chosen by LD_LIBRARY_PATH, which this does not
# touch (scripts/userspace-roce.sh adds its preloads in front of this one).
# The guest's file system is the host's / read-only, except: tmpfs (empty,
# writable) on /tmp, /run, /root and /dev/shm, and LAB_OUT and LAB_SYNC
# (read-write, shared with the host). Guest clock = host clock (UTC): set from the emulated
# RTC at boot, then stepped to the host's time to within ~10-20 ms.
#
# A NIC that stopped: when a command fails, its guest then checks that eth0
# still transmits (a few datagrams; the console says "NIC check: ..."). Rarely
# a guest's NIC stops transmitting for good, and the command fails because of
# it; the guest then leaves DIR/<role>/nic-stuck, and lab.sh runs the whole lab
# once more with the same arguments (its output shows both attempts), keeping
# the first attempt's guest directories, DIR/sync, DIR/lab-info and the capture
# in DIR.nic-stuck. DIR then holds the second attempt, and the exit status is
# the second attempt's; a NIC stuck in the second attempt too fails the run.
#
# Shells: `lab.sh shell` boots both guests and runs an interactive bash in
# each instead of a command, as root, in the repository root, with the
# environment above (TERM from your terminal) and a prompt naming the guest:
#   [lab server 10.0.0.1] /path/to/repo#
# The host's tools are at hand: iproute2's rdma, rdma-core's ibv_devices,
# ibv_devinfo, ibv_rc_pingpong and rping, perftest, tcpdump and tshark (those
# the host has installed), and the lessons you built; `busybox ping` pings
# (the host has no ping). This terminal
# becomes the server's shell once it is up; for the client's, run in another
# terminal:
#   scripts/lab/lab.sh attach client [--out DIR]
# (Ctrl-] detaches an `attach` terminal and leaves that shell running; attach
# again to get back. One terminal per guest at a time.) In the two shells,
# e.g.:
#   server# lab-ready pp --tcp-listen 18515 -- ibv_rc_pingpong -g $LAB_GID_INDEX
#   client# lab-wait pp && ibv_rc_pingpong -g $LAB_GID_INDEX $LAB_SERVER_IP
# With tmux, both in one window: start `lab.sh shell` in one pane and
# `lab.sh attach client` in another (Ctrl-b " splits the window).
# When a guest's shell exits, that guest announces <role>-shell-exited (in the
# server's shell, `lab-wait client-shell-exited` waits for the client's to end).
# When the lab ends: leaving a guest's shell (exit, Ctrl-D, or poweroff, which
# the shell defines for this) powers that guest off. The lab lives as long as
# the server's shell: when it ends, lab.sh stops the client guest too, whatever
# runs there, and exits. lab.sh stopped by a signal (Ctrl-C in its terminal
# goes to the guest instead; closing the terminal, kill) stops both guests;
# if lab.sh is killed with SIGKILL, each guest is stopped at the latest when
# --timeout (default for shell: 3600 s) plus LAB_BOOT_MARGIN runs out, as it
# always is. DIR defaults to <repo>/build/lab/shell for both shell and attach.
# --capture records the wire of a shell session the same way.
#
# Output layout:
#   DIR/lab-info              key=value: mode, kernel, qemu, accel, timeout,
#                             server_runtime, client_runtime, netem, ...
#   DIR/sync/                 lab-ready's announcements; sync/log: what was
#                             announced and waited for, and when
#   DIR/<role>/cmd.sh         the command, as written by lab.sh (run)
#   DIR/<role>/cmd.log        its stdout + stderr (run)
#   DIR/<role>/rc             its exit code, or the shell's (255 = guest setup
#                             failed)
#   DIR/<role>/console.log    the guest's serial console (kernel + /init)
#   DIR/<role>/init-error     only if the guest setup failed: why
#   DIR/<role>/timed-out      only if the command hit --timeout
#   DIR/<role>/nic-stuck      only if, after the command failed, the guest found
#                             that its NIC no longer transmits (A NIC that
#                             stopped, above): what it saw
#   DIR.nic-stuck/            the first attempt, if lab.sh ran the lab again
#   DIR/<role>/qemu.log       qemu's own messages (usually empty)
#   DIR/<role>/qemu.pid       qemu's process id while it runs
#   DIR/<role>/shell.sock     shell: the guest's shell port, for attach
#   DIR/<role>/shell-ready    shell: written once the guest's shell port is open
#   PCAP (--capture)          every frame on the wire, seen at the server NIC
#
# What lab.sh prints: `run` ends with one line per guest; on success also the
# last 10 lines of its cmd.log (or, if the command printed nothing because it
# sent its programs' output to *.log files in LAB_OUT, the last 10 lines of
# each of those, at most 3); on failure, why, with the last lines of the
# console, of cmd.log and of DIR/sync/log.
#
# Exit status: 0 when every command exited 0 (shell: when the server's shell
# ended by itself and no guest setup failed); 1 otherwise (failure, timeout,
# guest crash); 2 for bad usage. After a stuck NIC, the second attempt's.
#
# Environment knobs (optional):
#   LAB_IMAGE_DIR  where the image is built/cached (default <repo>/build/lab/image)
#   LAB_ACCEL      force qemu's accelerator: kvm or tcg (default: auto)
#   LAB_BOOT_MARGIN  seconds the host waits beyond --timeout before killing a
#                  guest that did not power off (default 90); also how long
#                  `shell` and `attach` wait for a guest's shell to come up
#   LAB_NIC_RETRIED  set by lab.sh itself for the second attempt after a stuck
#                  NIC; set beforehand, it keeps lab.sh from running a lab again
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
LAB_ARGS=("$@")   # to run the lab once more (below: A NIC that stopped)
MODE=$1
case "$MODE" in
    -h|--help|help) usage; exit 0 ;;
    run|shell|attach) shift ;;
    *) die_usage "unknown command '$1'" ;;
esac
DEFAULT_SHELL_OUT=$REPO_ROOT/build/lab/shell

# lab.sh attach ROLE [--out DIR]: this terminal joins a running lab's shell.
if [ "$MODE" = attach ]; then
    ROLE="" OUT=$DEFAULT_SHELL_OUT
    while [ $# -gt 0 ]; do
        case "$1" in
            -h|--help) usage; exit 0 ;;
            --out) [ $# -ge 2 ] || die_usage "--out needs a value"; OUT=$2; shift 2 ;;
            server|client) ROLE=$1; shift ;;
            *) die_usage "attach: unknown argument '$1' (attach server|client [--out DIR])" ;;
        esac
    done
    [ -n "$ROLE" ] || die_usage "attach needs a guest: server or client"
    # lab-attach.py waits (LAB_BOOT_MARGIN s at most) for the lab to come up, so
    # attach may be started before or while `lab.sh shell` boots.
    command -v python3 >/dev/null 2>&1 || die "'python3' not found (install the project's packages first)"
    exec python3 "$SCRIPT_DIR/lab-attach.py" --role "$ROLE" --dir "$OUT/$ROLE" \
        --wait "$BOOT_MARGIN" --detach-key
fi

OUT="" TIMEOUT=120 CAPTURE="" SERVER_CMD="" CLIENT_CMD="" HAVE_SERVER="" HAVE_CLIENT=""
SERVER_RUNTIME=kernel CLIENT_RUNTIME=kernel NETEM="" HAVE_NETEM="" NETEM_IN="" HAVE_NETEM_IN=""
if [ "$MODE" = shell ]; then
    # A shell lab: both guests, no commands, a longer default limit, a default DIR.
    OUT=$DEFAULT_SHELL_OUT TIMEOUT=3600 HAVE_SERVER=1 HAVE_CLIENT=1
fi
while [ $# -gt 0 ]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --server|--client)
            [ "$MODE" = run ] || die_usage "$1 is for lab.sh run; lab.sh shell gives each guest a shell instead"
            ;;&
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
[[ $BOOT_MARGIN =~ ^[0-9]+$ ]] || die "LAB_BOOT_MARGIN must be a number of seconds, not '$BOOT_MARGIN'"
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

TOOLS=(qemu-system-x86_64 timeout ss)
[ "$MODE" = shell ] && TOOLS+=(python3)
for tool in "${TOOLS[@]}"; do
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

# The directory both guests share read-write: lab-ready's announcements, lab-wait's
# log. Emptied first: an announcement from an earlier run must not count.
SYNC=$OUT/sync
mkdir -p "$SYNC"
find "$SYNC" -mindepth 1 -delete

cat >"$OUT/lab-info" <<EOF
mode=$MODE
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
    rm -f "$dir"/{cmd.sh,cmd.log,rc,console.log,init-error,timed-out,nic-stuck,qemu.log,qemu.pid,shell.sock,shell-ready,shell.lock}
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
    if [ "$MODE" = run ]; then
        {
            echo "# $role command, written by scripts/lab/lab.sh; run as: bash cmd.sh"
            printf '%s\n' "$cmd"
        } >"$dir/cmd.sh"
    fi

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
        -append "console=ttyS0 panic=-1 lab.name=$role lab.ip=$ip/$PREFIX lab.server_ip=$SERVER_IP lab.client_ip=$CLIENT_IP lab.out=$dir lab.repo=$REPO_ROOT lab.timeout=$TIMEOUT lab.runtime=$runtime lab.peer_runtime=$peer_runtime lab.mode=$MODE lab.sync=$SYNC${TERM_ARG:+ lab.term=$TERM_ARG}${SIZE_ARG:+ lab.size=$SIZE_ARG}${extra:+ lab.extra_ips=$extra}${NETEM:+ lab.netem=${NETEM// /,}}${NETEM_IN:+ lab.netem_in=${NETEM_IN// /,}}"
        -serial "file:$dir/console.log"
        # The wire. Distinct MACs: qemu would give both guests the same one.
        # speed/duplex: virtio-net reports none by default, and rxe asks for
        # it on every query (console spam "eth0 speed is unknown").
        -netdev "socket,id=n0,udp=127.0.0.1:$rport,localaddr=127.0.0.1:$lport"
        -device "virtio-net-pci,netdev=n0,mac=$mac,speed=1000,duplex=full"
        # Entropy from the host (/dev/urandom), so that the guest's random number
        # generator is ready at boot (build-image.sh: virtio_rng).
        -object rng-random,id=rng0,filename=/dev/urandom -device virtio-rng-pci,rng=rng0
        # The host's / read-only, and this guest's output dir read-write.
        # security_model=none: files are accessed with the rights of the user
        # running qemu, no ownership mapping. multidevs=remap: / spans several
        # host file systems whose inode numbers could collide in the guest.
        -fsdev "local,id=hostroot,path=/,security_model=none,readonly=on,multidevs=remap"
        -device "virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot"
        -fsdev "local,id=labout,path=$dir,security_model=none"
        -device "virtio-9p-pci,fsdev=labout,mount_tag=labout"
        # The directory both guests share (lab-ready / lab-wait).
        -fsdev "local,id=labsync,path=$SYNC,security_model=none"
        -device "virtio-9p-pci,fsdev=labsync,mount_tag=labsync"
        -pidfile "$dir/qemu.pid"
    )
    if [ "$MODE" = shell ]; then
        # The second serial port (ttyS1 in the guest, where its shell runs) on a Unix
        # socket that lab-attach.py connects to; wait=off: the guest does not wait
        # for it, and what the shell prints while nobody is attached is dropped.
        args+=(-chardev "socket,id=shell,path=$dir/shell.sock,server=on,wait=off"
               -serial chardev:shell)
    fi
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

# The shell's terminal type and size travel on the kernel command line: only plain
# characters.
TERM_ARG="" SIZE_ARG=""
if [ "$MODE" = shell ]; then
    [[ ${TERM:-} =~ ^[A-Za-z0-9._+-]+$ ]] && TERM_ARG=$TERM
    size=$(stty size 2>/dev/null || true)
    [[ $size =~ ^([0-9]+)\ ([0-9]+)$ ]] && SIZE_ARG=${BASH_REMATCH[1]}x${BASH_REMATCH[2]}
fi

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
ATTACH_PID="" ATTACH_RC=0
stop_guests() {
    [ -z "$ATTACH_PID" ] || kill "$ATTACH_PID" 2>/dev/null || true
    for p in "${PID[@]}"; do kill "$p" 2>/dev/null || true; done
}
trap stop_guests EXIT
trap 'stop_guests; say "interrupted, guests stopped"; exit 130' INT TERM HUP

if [ "$MODE" = shell ]; then
    say "the server's shell comes up in this terminal; for the client's, in another terminal:"
    say "  scripts/lab/lab.sh attach client --out $OUT"
    say "leaving the server's shell (exit, Ctrl-D, poweroff) ends the lab: both guests stop"
    # The server's shell in this terminal, until it ends (the guest powers off then).
    # In the background with `wait`, so that a signal to lab.sh is handled at once;
    # <&0: it reads this terminal (a background command would get /dev/null).
    python3 "$SCRIPT_DIR/lab-attach.py" --role server --dir "$OUT/server" --wait "$BOOT_MARGIN" <&0 &
    ATTACH_PID=$!
    ATTACH_RC=0
    wait "$ATTACH_PID" || ATTACH_RC=$?
    ATTACH_PID="" ATTACH_RC=0
    # The lab lives as long as the server's shell: stop the client guest too.
    stop_guests
fi

declare -A QEMU_RC
for role in "${ROLES[@]}"; do
    QEMU_RC[$role]=0
    wait "${PID[$role]}" || QEMU_RC[$role]=$?
done
trap - EXIT INT TERM HUP
say "guests done in $((SECONDS - T0)) s"

# --- a NIC that stopped --------------------------------------------------------
# After a failed command each guest checks that its NIC still sends (guest-init.sh,
# 4c); <role>/nic-stuck says it does not: the guest's NIC stopped taking frames off
# its transmit ring, a fault of the lab (qemu's emulated NIC or the guest's driver),
# not of the command. Such a run says nothing about the command, so run the whole
# lab once more, with the same arguments and output directory; what the first
# attempt left (both guests' directories, the sync directory, lab-info, the capture)
# is kept in <DIR>.nic-stuck. Only once (LAB_NIC_RETRIED=1 marks the second attempt):
# a NIC stuck again fails the run as usual.
if [ "$MODE" = run ]; then
    stuck=""
    for role in "${ROLES[@]}"; do
        [ -f "$OUT/$role/nic-stuck" ] && [ "$(cat "$OUT/$role/rc" 2>/dev/null)" != 0 ] || continue
        stuck+="${stuck:+ }$role"
        say "$role: its NIC stopped sending: $(cat "$OUT/$role/nic-stuck") (console: $OUT/$role/console.log)"
    done
    if [ -n "$stuck" ] && [ -z "${LAB_NIC_RETRIED:-}" ]; then
        for role in "${ROLES[@]}"; do
            say "$role (first attempt): exit $(cat "$OUT/$role/rc" 2>/dev/null || echo none); last lines of its console:"
            tail -n 12 "$OUT/$role/console.log" 2>/dev/null | sed 's/^/  | /'
        done
        aside=$OUT.nic-stuck
        rm -rf "$aside"
        mkdir -p "$aside"
        for d in "${ROLES[@]}" sync lab-info; do [ -e "$OUT/$d" ] && mv "$OUT/$d" "$aside/$d"; done
        [ -n "$CAPTURE" ] && [ -e "$CAPTURE" ] && mv "$CAPTURE" "$aside/$(basename "$CAPTURE")"
        say "the command's failure is the lab's (a stuck NIC in: $stuck), not the command's:" \
            "running the lab once more; the first attempt is in $aside"
        LAB_NIC_RETRIED=1 exec bash "$SCRIPT_DIR/lab.sh" "${LAB_ARGS[@]}"
    fi
    [ -z "$stuck" ] || say "a NIC was stuck again: this run fails"
fi

# --- report --------------------------------------------------------------------
show_tail() {   # file, what
    if [ -s "$1" ]; then
        echo "---- last lines of $2 ($1) ----"
        tail -n 20 "$1" | sed 's/^/  | /'
    else
        echo "---- $2 ($1): empty or missing ----"
    fi
}

# On success: the last lines the command printed (cmd.log); if it printed nothing
# because it sent its programs' output to files in LAB_OUT (as the captures'
# scenarios do), the last lines of those *.log files instead (at most 3).
show_success() {  # role dir
    local f n=0
    if [ -s "$2/cmd.log" ]; then
        tail -n 10 "$2/cmd.log" | sed "s/^/  $1 | /"
        return
    fi
    for f in "$2"/*.log; do
        case ${f##*/} in cmd.log|console.log|qemu.log) continue ;; esac
        [ -s "$f" ] || continue
        n=$((n + 1)); [ $n -le 3 ] || break
        echo "  $1: the command printed nothing; last lines of $f:"
        tail -n 10 "$f" | sed "s/^/  $1 | /"
    done
}

STATUS=0
if [ "$MODE" = shell ]; then
    for role in "${ROLES[@]}"; do
        dir="$OUT/$role"
        rc=$(cat "$dir/rc" 2>/dev/null || true)
        if [ -f "$dir/init-error" ]; then
            STATUS=1
            say "$role: FAILED: guest setup failed: $(cat "$dir/init-error") (console: $dir/console.log)"
            show_tail "$dir/console.log" "console"
        elif [ -n "$rc" ]; then
            say "$role: the shell exited with $rc; the guest powered off"
        elif [ "$role" = server ] && [ "$ATTACH_RC" != 0 ]; then
            STATUS=1
            say "server: FAILED: this terminal could not be joined to its shell (lab-attach.py exit $ATTACH_RC, its message is above) (console: $dir/console.log)"
            show_tail "$dir/console.log" "console"
        elif [ "$role" = server ]; then
            STATUS=1
            say "server: FAILED: its shell never ended by itself (the guest stopped or the lab's --timeout $TIMEOUT s ran out; qemu exit ${QEMU_RC[$role]}) (console: $dir/console.log)"
            show_tail "$dir/console.log" "console"
        else
            say "client: stopped with the lab (its shell was still open)"
        fi
    done
    [ -n "$CAPTURE" ] && say "capture: $CAPTURE ($(stat -c %s "$CAPTURE" 2>/dev/null || echo 0) bytes)"
    [ -s "$SYNC/log" ] && say "lab-ready / lab-wait log: $SYNC/log"
    exit $STATUS
fi

for role in "${ROLES[@]}"; do
    dir="$OUT/$role"
    where="(log: $dir/cmd.log, console: $dir/console.log)"
    rc=$(cat "$dir/rc" 2>/dev/null || true)
    qrc=${QEMU_RC[$role]}
    if [ "$rc" = 0 ] && [ "$qrc" = 0 ]; then
        say "$role: exit 0 $where"
        show_success "$role" "$dir"
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
# Who announced what (lab-ready) and who waited for it (lab-wait), if anyone did.
[ $STATUS -ne 0 ] && [ -s "$SYNC/log" ] && show_tail "$SYNC/log" "lab-ready / lab-wait log"
[ -n "$CAPTURE" ] && say "capture: $CAPTURE ($(stat -c %s "$CAPTURE" 2>/dev/null || echo 0) bytes)"
exit $STATUS

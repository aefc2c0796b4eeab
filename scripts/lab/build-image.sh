#!/usr/bin/env bash
# build-image.sh [IMAGE_DIR] - build the kernel + initramfs that lab.sh boots.
#
# Why this exists: the lessons need a real kernel RDMA stack (Soft-RoCE, the
# `rdma_rxe` driver). Many machines (CI runners, containers, this project's own
# build host) run a kernel without it and cannot load modules. So we boot a
# tiny guest under qemu that runs a stock Debian kernel, where `rdma_rxe` is a
# normal module. Everything comes from Debian packages; nothing is compiled.
#
# What it produces in IMAGE_DIR (default: <repo>/build/lab/image):
#   vmlinux          the uncompressed kernel (ELF). qemu boots an ELF kernel
#                    through its PVH entry point, which skips the kernel's own
#                    xz decompressor: under TCG (pure emulation) that saves
#                    ~3 s on every boot.
#   initramfs.cpio   busybox + the kernel modules we need + /init
#                    (guest-init.sh). Left uncompressed for the same reason.
#   kernel-version   `uname -r` of that kernel, e.g. 6.1.0-56-amd64
#   kernel-package   the Debian package and version, e.g.
#                    linux-image-6.1.0-56-amd64=6.1.192-2
#   inputs           the stamp: what the image was built from (see below)
#   cache/           the downloaded kernel .deb, kept so that a change of
#                    /init alone does not download 70 MB again
#
# Caching: the image depends only on (a) the kernel package apt would pick,
# (b) the installed busybox-static version and (c) the content of this script
# and guest-init.sh. Those are written to IMAGE_DIR/inputs; if they match, we
# print "image up to date" and do nothing (no network needed). lab.sh is not
# an input: changing how guests are started does not change the image.
#
# Needs (Debian packages): apt (apt-get, apt-cache), dpkg, busybox-static,
# kmod (depmod, modprobe), cpio, xz-utils, util-linux (flock). It does not need
# root: `apt-get download` and `dpkg-deb -x` work as a normal user.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/../.." && pwd)
IMAGE_DIR=${1:-$REPO_ROOT/build/lab/image}
INIT_SRC=$SCRIPT_DIR/guest-init.sh

# The modules the guest loads. modprobe resolves their dependencies below.
#   rdma_rxe       Soft-RoCE itself (pulls in ib_core, ib_uverbs, udp_tunnel);
#                  guest-init.sh does not load it in a userspace-runtime guest
#   rdma_ucm       /dev/infiniband/rdma_cm, used by librdmacm (rdma_cm lessons)
#   ib_umad        /dev/infiniband/umad*, used by some diagnostics tools
#   crc32_generic  rxe computes the RoCE ICRC with the kernel "crc32" crypto
#                  driver; without one loaded, creating rxe0 fails
#   virtio_net, virtio_pci      the guest's network card (eth0)
#   9pnet_virtio, 9p            the host directories shared into the guest
#   sch_netem      the netem qdisc: lab.sh --netem (loss, delay, ... on eth0)
#   ifb sch_ingress act_mirred cls_matchall   lab.sh --netem-ingress: what eth0
#                  receives, redirected to ifb0, which carries the netem qdisc
#   virtio_rng     qemu's virtio-rng device, fed from the host's /dev/urandom: the
#                  kernel seeds its random number generator from it at once, instead
#                  of after ~5 s of boot, so getrandom() (std::random_device, OpenSSL:
#                  the lessons' random PSNs) does not block the first program
MODULES=(virtio_pci virtio_rng rdma_rxe rdma_ucm ib_umad crc32_generic virtio_net 9pnet_virtio 9p sch_netem
         ifb sch_ingress act_mirred cls_matchall)

log() { printf 'build-image: %s\n' "$*" >&2; }
die() { printf 'build-image: ERROR: %s\n' "$*" >&2; exit 1; }

for tool in apt-get apt-cache dpkg-deb dpkg-query depmod modprobe cpio xz flock sha256sum; do
    command -v "$tool" >/dev/null 2>&1 || die "'$tool' not found (install the project's packages first)"
done

mkdir -p "$IMAGE_DIR"
IMAGE_DIR=$(cd "$IMAGE_DIR" && pwd)

# Two lab runs started at the same time (CI jobs, a learner with two
# terminals) would otherwise both rebuild into the same files.
exec 9>"$IMAGE_DIR/.lock"
flock 9

# --- 1. What would we build from? -------------------------------------------
# linux-image-amd64 is a meta package that depends on the current real kernel
# package (e.g. linux-image-6.1.0-56-amd64). It moves with Debian point
# releases, and the archive only keeps the current build, so we always follow
# it and record what we actually used.
# Its Depends line names the exact version too, e.g.
#   Depends: linux-image-6.1.0-56-amd64 (= 6.1.192-2)
# so one apt-cache call answers both (apt-cache can take ~0.5 s per call
# where apt's binary cache is disabled, as in many containers).
DEPENDS=$(apt-cache show --no-all-versions linux-image-amd64 2>/dev/null | sed -n 's/^Depends: //p' | head -n1)
KPKG=$(printf '%s\n' "$DEPENDS" | tr ',' '\n' | sed -n 's/^ *\(linux-image-[^ (|]*\).*/\1/p' | head -n1)
[ -n "$KPKG" ] || die "cannot resolve linux-image-amd64 (is this Debian/amd64? try: apt-get update)"
KPKG_VER=$(printf '%s\n' "$DEPENDS" | tr ',' '\n' | sed -n "s/^ *$KPKG (= \([^)]*\)).*/\1/p" | head -n1)
if [ -z "$KPKG_VER" ]; then   # no exact version in Depends: ask apt
    KPKG_VER=$(apt-cache show --no-all-versions "$KPKG" 2>/dev/null | sed -n 's/^Version: //p' | head -n1)
fi
[ -n "$KPKG_VER" ] || die "no version known for $KPKG (try: apt-get update)"

# busybox-static and the dynamic busybox package conflict; both install
# /bin/busybox. So if busybox-static is installed, /bin/busybox is the static
# build, which is what the initramfs needs (it carries no libc).
BUSYBOX=/bin/busybox
BB_VER=$(dpkg-query -W -f='${Version}' busybox-static 2>/dev/null || true)
[ -n "$BB_VER" ] && [ -x "$BUSYBOX" ] || die "busybox-static is not installed"

SCRIPTS_SUM=$(cat "${BASH_SOURCE[0]}" "$INIT_SRC" | sha256sum | cut -d' ' -f1)

NEW_INPUTS="kernel-package=$KPKG
kernel-package-version=$KPKG_VER
busybox-static=$BB_VER
scripts-sha256=$SCRIPTS_SUM"

# --- 2. Up to date? ---------------------------------------------------------
OLD_INPUTS=""
[ -f "$IMAGE_DIR/inputs" ] && OLD_INPUTS=$(cat "$IMAGE_DIR/inputs")
if [ "$OLD_INPUTS" = "$NEW_INPUTS" ] && [ -s "$IMAGE_DIR/vmlinux" ] &&
   [ -s "$IMAGE_DIR/initramfs.cpio" ] && [ -s "$IMAGE_DIR/kernel-version" ]; then
    log "image up to date ($(cat "$IMAGE_DIR/kernel-version"), $IMAGE_DIR)"
    exit 0
fi

# Say what changed, one line: learners should see why they wait.
if [ -z "$OLD_INPUTS" ]; then
    log "building image (none yet): $KPKG $KPKG_VER, busybox $BB_VER"
else
    # Compare key by key and name what differs in plain words.
    old_val() { printf '%s\n' "$OLD_INPUTS" | sed -n "s/^$1=//p"; }
    changes=""
    [ "$(old_val kernel-package)=$(old_val kernel-package-version)" = "$KPKG=$KPKG_VER" ] ||
        changes+="kernel $(old_val kernel-package)=$(old_val kernel-package-version) -> $KPKG=$KPKG_VER; "
    [ "$(old_val busybox-static)" = "$BB_VER" ] ||
        changes+="busybox-static $(old_val busybox-static) -> $BB_VER; "
    [ "$(old_val scripts-sha256)" = "$SCRIPTS_SUM" ] ||
        changes+="build-image.sh or guest-init.sh edited; "
    [ -n "$changes" ] || changes="output files missing; "
    changes=${changes%; }
    log "rebuilding image, changed: $changes"
fi

WORK=$(mktemp -d "$IMAGE_DIR/.build.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# --- 3. The kernel package --------------------------------------------------
DEB_NAME="${KPKG}_${KPKG_VER//:/%3a}_amd64.deb"
mkdir -p "$IMAGE_DIR/cache"
if [ ! -s "$IMAGE_DIR/cache/$DEB_NAME" ]; then
    log "downloading $KPKG=$KPKG_VER"
    # apt-get download writes into the current directory; no root needed.
    (cd "$WORK" && apt-get download -q "$KPKG=$KPKG_VER" >/dev/null 2>"$WORK/apt.err") ||
        { cat "$WORK/apt.err" >&2; die "apt-get download $KPKG=$KPKG_VER failed (try: apt-get update)"; }
    deb=$(ls "$WORK"/*.deb)
    rm -f "$IMAGE_DIR"/cache/*.deb          # keep only the kernel we use
    mv "$deb" "$IMAGE_DIR/cache/$DEB_NAME"
fi
dpkg-deb -x "$IMAGE_DIR/cache/$DEB_NAME" "$WORK/kernel"

KVER=$(find "$WORK/kernel/lib/modules" -mindepth 1 -maxdepth 1 -printf '%f\n' | head -n1)
[ -n "$KVER" ] || die "no lib/modules/<version> in $DEB_NAME"
VMLINUZ="$WORK/kernel/boot/vmlinuz-$KVER"
[ -f "$VMLINUZ" ] || die "no boot/vmlinuz-$KVER in $DEB_NAME"

# --- 4. vmlinuz -> vmlinux --------------------------------------------------
# vmlinuz = a small x86 boot stub + decompressor + the real kernel (an ELF
# file) compressed with xz. Find where the xz stream starts (its magic is
# FD 37 7A 58 5A 00) and decompress from there. The first hit is normally the
# payload; we try the next ones if it is not. --single-stream makes xz stop at
# the end of the stream and ignore the bytes of the stub that follow it.
found=""
for off in $(LC_ALL=C grep -obUaP '\xFD7zXZ\x00' "$VMLINUZ" | cut -d: -f1 | head -n 5); do
    # (xz stops reading at the end of the stream, so tail may die of SIGPIPE:
    # that is expected, hence the `|| true`; xz's own status still counts.)
    if { tail -c +"$((off + 1))" "$VMLINUZ" || true; } | xz -dc --single-stream >"$WORK/vmlinux" 2>/dev/null &&
       [ "$(head -c 4 "$WORK/vmlinux" | od -An -tx1 | tr -d ' \n')" = "7f454c46" ]; then
        found=$off; break
    fi
done
[ -n "$found" ] || die "could not find an xz-compressed ELF kernel inside $(basename "$VMLINUZ") (not xz-compressed?)"

# --- 5. The initramfs -------------------------------------------------------
ROOT="$WORK/initramfs"
mkdir -p "$ROOT"/{bin,dev,proc,sys,newroot,hostro,lib/modules}

# Modules with their dependencies, in load order. The .deb ships no
# modules.dep (its postinst would run depmod), so we run depmod on the
# extracted tree first. modprobe --show-depends prints one `insmod <path>` per
# module, dependencies first; builtin ones print `builtin <name>` and need
# nothing. One module per call: extra names would be taken as module options.
depmod -b "$WORK/kernel" "$KVER"
: >"$ROOT/lib/modules/load-order"
for m in "${MODULES[@]}"; do
    modprobe -d "$WORK/kernel" -S "$KVER" --show-depends "$m" ||
        die "module $m not found in $KPKG"
done | awk '$1 == "insmod" { print $2 }' | awk '!seen[$0]++' | while read -r path; do
    name=$(basename "$path")
    # Debian kernels newer than bookworm compress modules (.ko.xz / .ko.zst).
    # busybox insmod only takes plain .ko, so decompress them here.
    case "$name" in
        *.ko.xz)  xz -dc "$path" >"$ROOT/lib/modules/${name%.xz}";  name=${name%.xz} ;;
        *.ko.zst) zstd -qdc "$path" >"$ROOT/lib/modules/${name%.zst}"; name=${name%.zst} ;;
        *.ko.gz)  gzip -dc "$path" >"$ROOT/lib/modules/${name%.gz}"; name=${name%.gz} ;;
        *.ko)     cp "$path" "$ROOT/lib/modules/$name" ;;
        *) die "unexpected module file $path" ;;
    esac
    echo "$name" >>"$ROOT/lib/modules/load-order"
done
[ -s "$ROOT/lib/modules/load-order" ] || die "module list is empty"

# busybox gives us sh, mount, insmod, ip, chroot, poweroff... Create the
# applet links now rather than with `busybox --install` at every boot.
cp "$BUSYBOX" "$ROOT/bin/busybox"
for applet in $("$BUSYBOX" --list); do
    [ "$applet" = busybox ] || ln -s busybox "$ROOT/bin/$applet"
done
install -m 0755 "$INIT_SRC" "$ROOT/init"
echo "$KVER" >"$ROOT/kernel-version"

# newc is the cpio format the kernel unpacks. -R 0:0: files owned by root in
# the guest even if a normal user built the image. No /dev/console node is
# needed (creating one would need root): /init mounts devtmpfs first and then
# reopens its output on /dev/console.
(cd "$ROOT" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) >"$WORK/initramfs.cpio"

# --- 6. Install the results -------------------------------------------------
# Each file is moved into place whole; the stamp goes last, so an interrupted
# build is simply redone next time.
mv "$WORK/vmlinux" "$IMAGE_DIR/vmlinux"
mv "$WORK/initramfs.cpio" "$IMAGE_DIR/initramfs.cpio"
echo "$KVER" >"$IMAGE_DIR/kernel-version"
echo "$KPKG=$KPKG_VER" >"$IMAGE_DIR/kernel-package"
printf '%s\n' "$NEW_INPUTS" >"$IMAGE_DIR/inputs"
log "image built: kernel $KVER ($KPKG=$KPKG_VER), $(wc -l <"$ROOT/lib/modules/load-order") modules, initramfs $(( $(stat -c %s "$IMAGE_DIR/initramfs.cpio") / 1024 )) KiB, in $IMAGE_DIR"

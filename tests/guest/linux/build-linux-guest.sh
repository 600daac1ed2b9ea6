#!/usr/bin/env bash
# Builds the Linux test guest from Debian packages: the cloud kernel
# (linux-image-cloud-amd64) and an initramfs of busybox-static plus ./init.
#   build-linux-guest.sh OUT_DIR   ->  OUT_DIR/vmlinuz, OUT_DIR/initrd.cpio.gz
# Boot: -kernel vmlinuz -initrd initrd.cpio.gz -append "console=ttyS0 bnf.fill=64 bnf.work=files"
set -euo pipefail
OUT=${1:?usage: build-linux-guest.sh OUT_DIR}
HERE=$(cd "$(dirname "$0")" && pwd)
KERNEL=$(ls /boot/vmlinuz-*-cloud-amd64 2>/dev/null | sort -V | tail -1 || true)
[ -n "$KERNEL" ] || { echo "build-linux-guest: no /boot/vmlinuz-*-cloud-amd64 (install linux-image-cloud-amd64)" >&2; exit 1; }
[ -x /bin/busybox ] || { echo "build-linux-guest: no /bin/busybox (install busybox-static)" >&2; exit 1; }
file -L /bin/busybox 2>/dev/null | grep -q "statically linked" || ldd /bin/busybox 2>&1 | grep -q "not a dynamic" \
  || { echo "build-linux-guest: /bin/busybox is not static (install busybox-static)" >&2; exit 1; }
mkdir -p "$OUT"
ROOT=$(mktemp -d)
trap 'rm -rf "$ROOT"' EXIT
mkdir -p "$ROOT"/{bin,proc,sys,dev,data}
cp /bin/busybox "$ROOT/bin/busybox"
cp "$HERE/init" "$ROOT/init"
chmod 755 "$ROOT/init"
(cd "$ROOT" && find . | cpio -o -H newc --quiet) | gzip -1 > "$OUT/initrd.cpio.gz"
cp "$KERNEL" "$OUT/vmlinuz"
echo "linux guest: $OUT/vmlinuz ($(basename "$KERNEL")), $OUT/initrd.cpio.gz"

#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Packs warpdrive's test guest into a gzip'd newc cpio:
#   /init                   scripts/guest-init.sh
#   /bin/busybox            the host's static busybox (applets linked by /init)
#   /wd/modules/*.ko        the modules (-m, repeatable)
#   /wd/tests/              a kselftest output directory with its TESTS list (-t)
#   /wd/bin/                extra static binaries, e.g. the demo (-b, repeatable)
#
# Usage: initramfs.sh -o OUT.cpio.gz [-m MOD.ko]... [-t TESTDIR] [-b BIN]...
#
# A missing module, test directory or binary is left out with a warning, not
# an error: the guest then reports exactly what is missing as a failed check,
# which is clearer than a build that stops here.
#
# Everything in the guest must be static: there is no libc in the image.

set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
warn() { printf 'initramfs: warning: %s\n' "$*" >&2; }

out= testdir= mods=() bins=()
while getopts o:m:t:b: opt; do
	case "$opt" in
	o) out=$OPTARG ;;
	m) mods+=("$OPTARG") ;;
	t) testdir=$OPTARG ;;
	b) bins+=("$OPTARG") ;;
	*) exit 2 ;;
	esac
done
[ -n "$out" ] || { echo "usage: $0 -o OUT [-m MOD]... [-t DIR] [-b BIN]..." >&2; exit 2; }

busybox=/bin/busybox
case "$(ldd "$busybox" 2>&1 || true)" in *"not a dynamic executable"*) ;; *) false ;; esac ||
	{ echo "initramfs: $busybox is not static (install busybox-static)" >&2; exit 1; }

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,dev,proc,sys,tmp,root,wd/modules,wd/tests,wd/bin}
install -m 0755 "$busybox" "$root/bin/busybox"
install -m 0755 "$here/scripts/guest-init.sh" "$root/init"

for m in ${mods[@]+"${mods[@]}"}; do
	if [ -f "$m" ]; then install -m 0644 "$m" "$root/wd/modules/"; else warn "no module $m"; fi
done
if [ -n "$testdir" ] && [ -f "$testdir/TESTS" ]; then
	cp -a "$testdir/." "$root/wd/tests/"
else
	warn "no kselftests (${testdir:-none given}/TESTS missing)"
fi
for b in ${bins[@]+"${bins[@]}"}; do
	if [ -f "$b" ]; then install -m 0755 "$b" "$root/wd/bin/"; else warn "no binary $b"; fi
done

# The kernel opens /dev/console for /init's stdio before /init can mount
# devtmpfs. Its built-in initramfs (usr/default_cpio_list) already has that
# node; making it here too costs nothing when we are root.
[ "$(id -u)" -ne 0 ] || mknod -m 0600 "$root/dev/console" c 5 1

mkdir -p "$(dirname "$out")"
# A fixed order and owner keep the image stable for given inputs.
(cd "$root" && find . -mindepth 1 | LC_ALL=C sort |
	cpio --quiet -o -H newc -R 0:0 --reproducible) > "$out.tmp.cpio"
gzip -9n < "$out.tmp.cpio" > "$out.tmp"
rm -f "$out.tmp.cpio"
mv "$out.tmp" "$out"

#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# The debug profile of "make test": the same kselftests and demo binaries,
# on the debug kernel (.config.debug.fragment: KASAN, lockdep, DEBUG_VM,
# DEBUG_OBJECTS, kmemleak, fault injection), with the modules rebuilt
# against it, in one guest boot with the intel IOMMU.
#
# Usage: debug-profile.sh BUILD SRC_COPY INITRAMFS SELFTESTS BIN...
#   BUILD      build/ of the work tree; the log goes to BUILD/guest-test-debug.log
#   SRC_COPY   where the module sources are copied and built
#   INITRAMFS  the debug guest image to write
#   SELFTESTS  the kselftest output directory (user space: shared with the
#              normal profile)
#   BIN        the demo and example binaries
#
# The modules are built from a copy of the sources because the kernel's
# external-module build writes its objects next to them: building the work
# tree against two kernels would mix their objects.
#
# The kernel's own KUnit suites (Rust doctests included) run at boot here too,
# and the host's scan of the kernel log applies unchanged: any splat, KASAN,
# lockdep or kmemleak report fails the run.

set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/env.sh
. "$here/scripts/env.sh"

build=${1:?build dir}
src=${2:?source copy}
initramfs=${3:?initramfs}
selftests=${4:?selftests dir}
shift 4
bins=()
for b in "$@"; do bins+=(-b "$b"); done
log=$build/guest-test-debug.log

kdir=$("$here/scripts/kernel.sh" debug | tail -n1)

mkdir -p "$src"
# Only what Kbuild compiles; objects from an earlier debug build stay, so an
# unchanged source rebuilds nothing (cp -u keeps the copies' times).
for d in Kbuild drivers samples include; do
	cp -a -u "$here/$d" "$src/"
done
make -C "$kdir" M="$src" "${KMAKEFLAGS[@]}" modules

"$here/scripts/initramfs.sh" -o "$initramfs" -m "$src/warpdrive.ko" \
	-m "$src/warpdrive_edu.ko" -t "$selftests" "${bins[@]}"

# KASAN and lockdep under TCG make the whole run several times slower.
# Without an IOMMU or bouncing: the two normal boots cover the IOMMU's and
# swiotlb's mappings of registered memory, this one the direct mappings.
WD_PROFILE=debug WD_TIMEOUT=${WD_DEBUG_TIMEOUT:-3600} \
	"$here/scripts/guest.sh" test off "$kdir/arch/x86/boot/bzImage" \
	"$initramfs" "$log" || true

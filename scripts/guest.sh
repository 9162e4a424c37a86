#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Boots warpdrive's test guest in QEMU with two edu devices.
#
# Usage: guest.sh MODE on|off BZIMAGE INITRAMFS [LOG]
#   MODE     run, test, bench or shell (see scripts/guest-init.sh)
#   on|off   with or without an emulated intel IOMMU
#   LOG      run, test and bench: the serial console is also written here,
#            followed by a "### host: ..." line with QEMU's exit status and
#            the time
#
# Why our own initramfs and QEMU command instead of virtme-ng: the guest needs
# nothing from the host at run time (no 9p root, no udev for returning
# output), everything comes back over one serial console in a fixed order,
# and the same command works in CI without a terminal.
#
# Choices made here:
#   -m 2G with q35: all of the guest's RAM lies below 4 GiB (q35 only splits
#     RAM around the PCI hole from 2.75 GiB up). With dma_mask=0xffffffff the
#     edu device and the driver's 32-bit DMA mask then reach every page, so
#     no bounce buffering happens, with or without the IOMMU (unless
#     WD_SWIOTLB=force asks for it).
#   Two NUMA nodes of 1 GiB, one CPU each (one socket each, so that no cache
#     is shared across nodes, which the kernel warns about), so that
#     move_pages() and mbind() really migrate. Each edu device sits behind a
#     PCIe root port of its own expander bridge (pxb-pcie), which gives it a
#     node: device/numa_node reads 0 for one and 1 for the other.
#   Two virtio disks, created empty for each boot and thrown away after: the
#     guest puts ext2 on the first (file-backed tests on a real disk) and
#     swap on the second (reclaim of anonymous and shmem memory).
#   -device intel-iommu,intremap=off comes before the edu devices, so that
#     they sit behind it; interrupt remapping would need kernel-irqchip=split
#     and adds nothing for these tests.
#   KVM is used only when it works. On hosts where /dev/kvm exists but is a
#   nested software scheme (kvm_pvm) a guest hangs under it; see
#   pick_accel. WD_ACCEL=tcg|kvm overrides the detection.
#   Every non-interactive boot runs under a timeout (WD_TIMEOUT, 900 s):
#   a hung guest is a failed run, not a hung CI job.
#   WD_BENCH_PROFILE=CASE has the benchmark run that case once more under
#   ftrace's function profiler (wd_bench -P).
#   WD_TESTS="fuzz removal" runs only those kselftests (for working on them;
#   make test always runs them all).

set -euo pipefail

mode=${1:?mode}
iommu=${2:?on|off}
kernel=${3:?bzImage}
initrd=${4:?initramfs}
log=${5:-}

case "$mode" in run | test | bench | shell) ;; *) echo "guest: bad mode $mode" >&2; exit 2 ;; esac
case "$iommu" in on | off) ;; *) echo "guest: bad iommu $iommu" >&2; exit 2 ;; esac
[ -f "$kernel" ] || { echo "guest: no kernel $kernel" >&2; exit 1; }
[ -f "$initrd" ] || { echo "guest: no initramfs $initrd" >&2; exit 1; }

# KVM only if the device is there, the CPU has hardware virtualisation, and
# a kernel actually starts under it: the probe boots with no root file system
# and waits for the panic (panic=-1 plus -no-reboot makes QEMU exit).
pick_accel() {
	if [ -n "${WD_ACCEL:-}" ]; then
		echo "$WD_ACCEL"
		return
	fi
	local out
	if [ -r /dev/kvm ] && [ -w /dev/kvm ] && grep -qwE 'vmx|svm' /proc/cpuinfo; then
		out=$(probe kvm)
		case "$out" in *"Kernel panic"*) echo kvm; return ;; esac
	fi
	echo tcg
}
probe() {
	timeout 30 qemu-system-x86_64 -accel "$1" -cpu max -m 256M -display none \
		-monitor none -serial stdio -no-reboot -kernel "$kernel" \
		-append "console=ttyS0 panic=-1" </dev/null 2>&1 || true
}
accel=$(pick_accel)
# Without la57: a KASAN kernel booted with 5-level paging under TCG reported
# a wild access in rcu_is_watching() from an interrupt during identify_cpu()
# at boot, long before any module. Nothing here needs 5-level paging.
cpu=${WD_CPU:-max,la57=off}
[ "$accel" = kvm ] && cpu=host

# log_buf_len: the Rust doctests alone print hundreds of KUnit lines at boot,
# and the host reads them back from dmesg at the end, so none may rotate out.
append="console=ttyS0 panic=-1 log_buf_len=8M wd.mode=$mode wd.profile=${WD_PROFILE:-normal}"
[ -n "${WD_TESTS:-}" ] && append+=" wd.tests=$(echo $WD_TESTS | tr ' ' ,)"
[ -n "${WD_BENCH_PROFILE:-}" ] && append+=" wd.bench_profile=$WD_BENCH_PROFILE"
qemu=(qemu-system-x86_64 -machine q35 -accel "$accel" -cpu "$cpu"
	-smp 2,sockets=2,cores=1,threads=1 -m 2G
	-object memory-backend-ram,id=mem0,size=1G
	-object memory-backend-ram,id=mem1,size=1G
	-numa node,nodeid=0,cpus=0,memdev=mem0
	-numa node,nodeid=1,cpus=1,memdev=mem1
	-no-reboot -kernel "$kernel" -initrd "$initrd")
if [ "$iommu" = on ]; then
	qemu+=(-device intel-iommu,intremap=off)
	append+=" wd.iommu=1 intel_iommu=on"
else
	append+=" wd.iommu=0"
fi
if [ "${WD_SWIOTLB:-}" = force ]; then
	# Every streaming DMA mapping bounces: the per-access mappings of
	# registered buffers and the syncs of commands' own pins must be right.
	append+=" swiotlb=force wd.swiotlb=1"
fi
# The demo's output is what "run" is for; the boot log stays in dmesg.
[ "$mode" = run ] && append+=" quiet"
for node in 0 1; do
	qemu+=(-device "pxb-pcie,id=pxb$node,bus_nr=$((64 * (node + 1))),numa_node=$node,bus=pcie.0"
		-device "pcie-root-port,id=rp$node,bus=pxb$node,chassis=$((node + 1))"
		-device "edu,bus=rp$node,dma_mask=0xffffffff")
done
disks=$(mktemp -d "${TMPDIR:-/tmp}/wd-disks.XXXXXX")
trap 'rm -rf "$disks"' EXIT
truncate -s 256M "$disks/fs.img" "$disks/swap.img"
for d in fs swap; do
	qemu+=(-drive "file=$disks/$d.img,if=none,id=$d,format=raw,cache=unsafe"
		-device "virtio-blk-pci,drive=$d,bus=pcie.0")
done
qemu+=(-append "$append")

if [ "$mode" = shell ]; then
	# -nographic: the serial console and QEMU's monitor share the terminal
	# (Ctrl-A x quits, Ctrl-A c switches to the monitor).
	"${qemu[@]}" -nographic
	exit
fi

# Not interactive: the console is stdio with no monitor, stdin is closed,
# so the same command runs in CI, and Ctrl-C stops QEMU.
qemu+=(-display none -monitor none -serial stdio)
: "${log:=/dev/null}"
mkdir -p "$(dirname "$log")"
echo "### host: ${qemu[*]}" > "$log"
start=$(date +%s%N)
set +e
# The terminal gets less than the log: never the dmesg dump at the end, and
# in test and bench mode not the kernel's console lines either (the boot log
# with its hundreds of KUnit lines). scripts/report.py reads all of it from
# the log.
show_kernel=1
case "$mode" in test | bench) show_kernel=0 ;; esac
echo "guest: $mode, ${WD_PROFILE:-normal} kernel, iommu=$iommu, $accel; serial console in $log"
# --foreground keeps QEMU in the terminal's process group, so Ctrl-C
# reaches it.
timeout --foreground -k 10 "${WD_TIMEOUT:-900}" "${qemu[@]}" </dev/null 2>&1 |
	tee -a "$log" |
	awk -v k="$show_kernel" '
		/^### wd: begin dmesg/ { hide = 1 }
		!hide && (k || !/^\[ *[0-9]+\.[0-9]+\]/) { print; fflush() }
		/^### wd: end dmesg/ { hide = 0 }'
rc=${PIPESTATUS[0]}
set -e
ds=$((($(date +%s%N) - start) / 100000000))
line="### host: qemu rc=$rc accel=$accel seconds=$((ds / 10)).$((ds % 10))"
[ "$rc" -eq 124 ] && line+=" (timed out after ${WD_TIMEOUT:-900} s)"
echo "$line" | tee -a "$log"
exit "$rc"

#!/bin/busybox sh
# SPDX-License-Identifier: GPL-2.0
#
# /init of warpdrive's test guest (copied in by scripts/initramfs.sh).
#
# The kernel command line selects what it does:
#   wd.mode=run    load the modules, run the demo, show the driver's log lines
#   wd.mode=test   load the modules, run the C example on each device, then
#                  every kselftest listed in /wd/tests/TESTS
#   wd.mode=shell  load the modules, then an interactive shell on the console
#   wd.mode=bench  load the modules and wd_null_c.ko, run the benchmark
#                  (samples/warpdrive/bench/wd_bench.c)
#   wd.iommu=0|1   whether the host gave the guest an IOMMU; exported to the
#                  tests as WD_EXPECT_IOMMU and checked here
#   wd.profile=P   which kernel build this is (normal, debug); only a label
#   wd.tests=A,B   run only these kselftests (default: all of TESTS)
#
# Everything goes back to the host over the serial console. Lines starting
# with "### wd: " are markers that scripts/report.py parses:
#   ### wd: check NAME ok|fail [detail]
#   ### wd: begin kselftest NAME / ### wd: end kselftest NAME rc=N
#   ### wd: begin demo / ### wd: end demo rc=N
#   ### wd: begin bench / ### wd: end bench rc=N   (its table)
#   ### wd: begin bench-json / ### wd: end bench-json   (scripts/bench-report.py)
#   ### wd: begin dmesg / ### wd: end dmesg   (the whole kernel log)
#   ### wd: done
# At the end the guest reboots; QEMU runs with -no-reboot, so it exits.
# (poweroff -f without ACPI power-off would only halt, and QEMU would stay.)

/bin/busybox mkdir -p /proc /sys /dev /tmp /sbin /usr/bin /usr/sbin
/bin/busybox --install -s
export PATH=/wd/bin:/bin:/sbin:/usr/bin:/usr/sbin HOME=/root TERM=${TERM:-vt100}

mount -t proc proc /proc
mount -t sysfs sysfs /sys
# The kernel only auto-mounts devtmpfs on a real root fs, not on initramfs.
mount -t devtmpfs devtmpfs /dev
mount -t debugfs debugfs /sys/kernel/debug
mount -t tmpfs tmpfs /tmp
mkdir -p /root

mark() { echo "### wd: $*"; }
check() { mark "check $1 $2${3:+ $3}"; }

mode=shell iommu=0 profile=normal only= swiotlb=0 bench_profile=
for arg in $(cat /proc/cmdline); do
	case "$arg" in
	wd.mode=*) mode=${arg#wd.mode=} ;;
	wd.iommu=*) iommu=${arg#wd.iommu=} ;;
	wd.swiotlb=*) swiotlb=${arg#wd.swiotlb=} ;;
	wd.profile=*) profile=${arg#wd.profile=} ;;
	wd.tests=*) only=$(echo "${arg#wd.tests=}" | tr , ' ') ;;
	wd.bench_profile=*) bench_profile=${arg#wd.bench_profile=} ;;
	esac
done
export WD_EXPECT_IOMMU=$iommu WD_PROFILE=$profile WD_SWIOTLB=$swiotlb
mark "mode=$mode iommu=$iommu swiotlb=$swiotlb profile=$profile uptime=$(cut -d' ' -f1 /proc/uptime)"

# A task stuck in D state is reported ("INFO: task ... blocked for more than"),
# which the host's log scan fails the run on. No test blocks a task for this
# long; the debug kernel under TCG is several times slower.
hung=45
[ "$profile" = debug ] && hung=120
echo $hung > /proc/sys/kernel/hung_task_timeout_secs

# Kernel messages printed to the console while user space writes to it can
# land in the middle of a result line. While the guest prints results, only
# emergencies go to the console; the full log follows at the end (dmesg).
quiet_console() { dmesg -n 1; }

finish() {
	quiet_console
	mark "begin dmesg"
	dmesg
	mark "end dmesg"
	mark "done"
	swapoff -a 2>/dev/null
	umount /mnt/disk 2>/dev/null
	sync
	reboot -f
}

# The guest's memory layout (scripts/guest.sh): two NUMA nodes, an edu
# device on each, a disk for ext2 and one for swap, and cgroup v2 for memory
# limits. The tests are told what to expect, and fail when it is missing.
setup_machine() {
	nodes=$(ls -d /sys/devices/system/node/node[0-9]* 2>/dev/null | wc -l)
	edu_nodes=
	for d in /sys/bus/pci/devices/*; do
		[ "$(cat "$d/vendor")" = 0x1234 ] && [ "$(cat "$d/device")" = 0x11e8 ] || continue
		edu_nodes="$edu_nodes $(cat "$d/numa_node")"
	done
	if [ "$nodes" = 2 ] && [ "$(echo $edu_nodes | tr ' ' '\n' | sort | tr '\n' ' ')" = "0 1 " ]; then
		check numa ok "nodes=$nodes edu nodes:$edu_nodes"
	else
		check numa fail "nodes=$nodes edu nodes:$edu_nodes (want 2 nodes, one edu on each)"
	fi
	# scripts/guest.sh always gives the guest two nodes.
	export WD_EXPECT_NUMA_NODES=2
	mkdir -p /sys/fs/cgroup /mnt/disk
	mount -t cgroup2 cgroup2 /sys/fs/cgroup
	echo +memory > /sys/fs/cgroup/cgroup.subtree_control
	if [ -b /dev/vda ] && mke2fs -F /dev/vda >/dev/null 2>&1 &&
	   mount -t ext2 /dev/vda /mnt/disk; then
		export WD_DISK=/mnt/disk
		check disk ok "ext2 on /dev/vda at $WD_DISK"
	else
		check disk fail "no ext2 on /dev/vda"
	fi
	if [ -b /dev/vdb ] && mkswap /dev/vdb >/dev/null 2>&1 && swapon /dev/vdb; then
		check swap ok "$(grep SwapTotal /proc/meminfo | tr -s ' ')"
	else
		check swap fail "no swap on /dev/vdb"
	fi
}

load_modules() {
	missing= failed=
	for m in warpdrive warpdrive_edu; do
		if [ ! -f "/wd/modules/$m.ko" ]; then
			missing="$missing $m.ko"
		elif ! insmod "/wd/modules/$m.ko"; then
			failed="$failed $m.ko"
		fi
	done
	if [ -n "$missing$failed" ]; then
		check modules-loaded fail "${missing:+missing:$missing}${failed:+ insmod failed:$failed}"
	else
		check modules-loaded ok
	fi
}

# With wd.iommu=1 the intel IOMMU must be active and both edu devices in an
# IOMMU group, otherwise "iommu=on" would silently test the direct path.
check_iommu() {
	dmar=0 grouped=0 edu=0
	[ -e /sys/class/iommu/dmar0 ] && dmar=1
	for d in /sys/bus/pci/devices/*; do
		[ "$(cat "$d/vendor")" = 0x1234 ] && [ "$(cat "$d/device")" = 0x11e8 ] || continue
		edu=$((edu + 1))
		[ -e "$d/iommu_group" ] && grouped=$((grouped + 1))
	done
	detail="dmar0=$dmar edu=$edu grouped=$grouped"
	if [ "$iommu" = 1 ] && [ $dmar = 1 ] && [ $edu -gt 0 ] && [ $grouped = $edu ]; then
		check iommu-state ok "$detail"
	elif [ "$iommu" = 0 ] && [ $dmar = 0 ] && [ $grouped = 0 ]; then
		check iommu-state ok "$detail"
	else
		check iommu-state fail "$detail (expected iommu=$iommu)"
	fi
}

run_tests() {
	if [ ! -f /wd/tests/TESTS ]; then
		check kselftests-present fail "no /wd/tests/TESTS"
		return
	fi
	# The debug kernel (KASAN, lockdep, kmemleak) under TCG is several
	# times slower; each test binary has a bound either way.
	limit=600
	[ "$profile" = debug ] && limit=2400
	cd /wd/tests
	for t in ${only:-$(grep -v "^#" TESTS)}; do
		mark "begin kselftest $t"
		start=$(cut -d. -f1 /proc/uptime)
		if [ -x "./$t" ]; then
			timeout $limit "./$t" 2>&1
			rc=$?
		else
			echo "# $t: not found in the initramfs"
			rc=127
		fi
		mark "end kselftest $t rc=$rc seconds=$(($(cut -d. -f1 /proc/uptime) - start))"
	done
	cd /
}

run_demo() {
	mark "begin demo"
	if [ -x /wd/bin/wd_demo ]; then
		timeout 300 wd_demo 2>&1
		rc=$?
	else
		echo "wd_demo: not found in the initramfs"
		rc=127
	fi
	mark "end demo rc=$rc"
	# wdctl, the CLI of the user-space crate, on the same devices.
	if [ -x /wd/bin/wdctl ]; then
		mark "begin wdctl"
		wdctl list
		wdctl run memcpy --size 16M
		wdctl run factorial 12
		mark "end wdctl"
	fi
	mark "begin driver log"
	dmesg | grep warpdrive || echo "(no driver lines)"
	mark "end driver log"
}

# The benchmark also compares warpdrive's ioctl path with a C misc device's,
# wd_null_c.ko, which only this mode loads.
run_bench() {
	if insmod /wd/modules/wd_null_c.ko; then
		check null-c-loaded ok
	else
		check null-c-loaded fail
	fi
	mark "begin bench"
	if [ -x /wd/bin/wd_bench ]; then
		timeout 1200 wd_bench -o /tmp/bench.json \
			${bench_profile:+-P "$bench_profile"} 2>&1
		rc=$?
	else
		echo "wd_bench: not found in the initramfs"
		rc=127
	fi
	mark "end bench rc=$rc"
	if [ -f /tmp/bench.json ]; then
		mark "begin bench-json"
		cat /tmp/bench.json
		mark "end bench-json"
	fi
}

# The minimal C example (samples/warpdrive/wd_example.c) must keep working
# as written, on every device.
run_example() {
	for n in /dev/edu-*; do
		out=$(timeout 60 wd_example "$n" 2>&1)
		rc=$?
		out=$(echo "$out" | tr '\n' ' ')
		check "example-${n#/dev/}" "$([ $rc = 0 ] && echo ok || echo fail)" "$out"
	done
}

# The exit paths run too: warpdrive must refuse to go while its driver is
# loaded, and both must unload cleanly once the tests have closed everything.
unload_modules() {
	if rmmod warpdrive 2>/dev/null; then
		check warpdrive-pinned-by-driver fail "warpdrive unloaded under its driver"
	else
		check warpdrive-pinned-by-driver ok
	fi
	if rmmod warpdrive_edu && rmmod warpdrive; then
		check modules-unloaded ok
	else
		check modules-unloaded fail "$(cut -d' ' -f1,3 /proc/modules | tr '\n' ' ')"
	fi
}

# With kmemleak (the debug kernel), report what leaked into the kernel log,
# where the host's scan fails the run on "unreferenced object". kmemleak only
# reports objects older than five seconds, hence the wait between scans.
kmemleak_report() {
	k=/sys/kernel/debug/kmemleak
	[ -e $k ] || return 0
	echo scan > $k
	sleep 6
	echo scan > $k
	leaks=$(grep -c "unreferenced object" $k)
	grep . $k | while IFS= read -r l; do echo "kmemleak: $l" > /dev/kmsg; done
	check kmemleak-clean "$([ "$leaks" = 0 ] && echo ok || echo fail)" "$leaks objects"
}

# Driver messages from probing would otherwise split the check lines on the
# console; the shell keeps them, for people watching.
[ "$mode" = shell ] || quiet_console
setup_machine
load_modules
check_iommu

case "$mode" in
test)
	run_example
	run_tests
	unload_modules
	kmemleak_report
	;;
run)
	run_demo
	;;
bench)
	run_bench
	;;
*)
	echo "warpdrive guest: modules in /wd/modules, tests in /wd/tests, demo: wd_demo"
	echo "exit the shell to power off (or Ctrl-A x to kill QEMU)"
	# cttyhack gives the shell a controlling tty, so Ctrl-C works.
	setsid cttyhack sh -l
	sync
	reboot -f
	;;
esac
finish

# SPDX-License-Identifier: GPL-2.0
#
# warpdrive's entry points. Each target first does the set-up it needs
# (deps -> kernel -> modules), and each step returns quickly when it is
# up to date:
#
#   make [all|modules]  the two modules, warpdrive.ko and warpdrive_edu.ko
#                       (CLIPPY=1 runs clippy over the Rust code)
#   make selftests      the kselftests (selftests/warpdrive) and the demo
#   make run            boots a guest with two edu devices, loads the
#                       modules, runs the demo (IOMMU=on for an intel IOMMU)
#   make shell          the same guest with a shell on the console
#   make test           the whole suite three times: on the normal kernel with
#                       an IOMMU, and without one but with every DMA bounced
#                       (swiotlb=force), then on the debug kernel (KASAN,
#                       lockdep, kmemleak, fault injection) with direct DMA;
#                       the last line is "N passed, N failed" over all three
#   make test-normal    only the first two (PROFILES=debug: only the last)
#   make bench          the benchmark (samples/warpdrive/bench) in one guest
#                       boot: table and build/bench.json, plot build/bench.png
#                       (PROFILE_CASE=nop_batch_64: that case once more under
#                       ftrace's function profiler, printed after the table)
#   make rustfmt / rustfmtcheck, make clean
#   make deps / make kernel   host set-up / the kernel build on their own
#
# tools/warpdrive is the user-space crate and wdctl (cargo); make test runs
# its host tests, and its guest test (wd-guest-test) with the kselftests.
#
# The kernel tree is built and cached outside the work tree by
# scripts/kernel.sh (KDIR=... uses another tree). Guest logs and test
# binaries go to build/.

# The same tool paths as scripts/env.sh: rustc and bindgen come from rustup
# and cargo, and bookworm ships only the -19 suffixed LLVM tools.
export PATH := $(HOME)/.cargo/bin:$(PATH)
export LIBCLANG_PATH := /usr/lib/llvm-19/lib
KMAKEFLAGS := LLVM=-19 ARCH=x86_64

BUILD := $(CURDIR)/build
WD_CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/warpdrive

# KDIR is the kernel tree. Unless given, it comes from scripts/kernel.sh,
# run once, when a recipe first needs it (so "make clean" builds nothing).
# KTREE is the same tree without building it.
ifdef KDIR
KTREE := $(KDIR)
else
KTREE := $(WD_CACHE)/normal
kernel_tree = $(lastword $(shell $(CURDIR)/scripts/kernel.sh))$(if \
	$(filter 0,$(.SHELLSTATUS)),,$(error scripts/kernel.sh failed))
KDIR = $(eval KDIR := $(kernel_tree))$(KDIR)
endif

KMAKE = $(MAKE) -C $(KDIR) M=$(CURDIR) $(KMAKEFLAGS)
MODULES := $(CURDIR)/warpdrive.ko $(CURDIR)/warpdrive_edu.ko
BZIMAGE = $(KDIR)/arch/x86/boot/bzImage
INITRAMFS := $(BUILD)/initramfs.cpio.gz
DEMO := $(BUILD)/wd_demo
EXAMPLE := $(BUILD)/wd_example
IOMMU ?= off

# make bench: its own guest image, so that it never replaces the one of a
# test run, and the C module that it compares warpdrive's ioctl path with.
BENCH := $(BUILD)/wd_bench
BENCH_INITRAMFS := $(BUILD)/initramfs-bench.cpio.gz
NULL_C := $(CURDIR)/wd_null_c.ko

# The guest image is cheap to pack (under a second), so every boot repacks
# it from whatever modules and binaries exist; scripts/initramfs.sh warns
# about missing ones and the guest reports them as failed checks.
mkinitramfs = $(CURDIR)/scripts/initramfs.sh -o $(INITRAMFS) \
	$(addprefix -m ,$(MODULES)) -t $(BUILD)/selftests -b $(DEMO) \
	-b $(EXAMPLE)

# The debug profile's kernel, from "scripts/kernel.sh debug", and its modules,
# built from a copy of the sources so that the objects of the two kernel
# builds never mix in the work tree.
DEBUG_SRC := $(BUILD)/debug-src
DEBUG_MODULES := $(DEBUG_SRC)/warpdrive.ko $(DEBUG_SRC)/warpdrive_edu.ko
DEBUG_INITRAMFS := $(BUILD)/initramfs-debug.cpio.gz
PROFILES ?= normal debug

.PHONY: all deps kernel modules selftests demo wdctl run shell test \
	test-normal bench rustfmt rustfmtcheck clean

all: modules

deps:
	@$(CURDIR)/scripts/deps.sh

kernel: deps
	@echo "kernel: $(KDIR)"

modules: kernel
	$(KMAKE) $(if $(CLIPPY),CLIPPY=$(CLIPPY)) modules

selftests: kernel demo
	$(MAKE) -C selftests/warpdrive OUT=$(BUILD)/selftests KSRC=$(KDIR)

demo: $(DEMO) $(EXAMPLE)

# The demo of "make run", and the minimal example that the guest runs as a
# check in "make test": both use nothing but the UAPI header.
$(BUILD)/wd_%: samples/warpdrive/wd_%.c include/uapi/misc/warpdrive.h
	@mkdir -p $(BUILD)
	gcc -static -O2 -Wall -Wextra -I$(CURDIR)/include/uapi -o $@ $<

# wdctl, for the tour after the demo (and for the shell).
WDCTL := $(BUILD)/tools/wdctl
wdctl:
	@$(MAKE) --no-print-directory -C tools/warpdrive install \
		DESTDIR=$(BUILD)/tools >/dev/null

run: modules demo wdctl
	@$(mkinitramfs) -b $(WDCTL)
	@rm -f $(BUILD)/guest-run.log
	@$(CURDIR)/scripts/guest.sh run $(IOMMU) $(BZIMAGE) $(INITRAMFS) \
		$(BUILD)/guest-run.log; \
	$(CURDIR)/scripts/report.py $(BUILD)/guest-run.log

shell: modules demo wdctl
	@$(mkinitramfs) -b $(WDCTL)
	@$(CURDIR)/scripts/guest.sh shell $(IOMMU) $(BZIMAGE) $(INITRAMFS)

# A module or selftest build failure is counted as a failed check rather than
# stopping here, so that the rest still runs and the last line is always the
# count. A normal kernel that does not build stops everything; a debug kernel
# that does not build is one failed check.
test: kernel
	@mkdir -p $(BUILD); : > $(BUILD)/build-failures
	@rm -f $(BUILD)/guest-test-*.log
	@$(MAKE) --no-print-directory KDIR=$(KDIR) modules || \
		{ echo "modules did not build" >> $(BUILD)/build-failures; \
		  rm -f $(MODULES); }
	@$(MAKE) --no-print-directory KDIR=$(KDIR) selftests || \
		{ echo "selftests did not build" >> $(BUILD)/build-failures; \
		  rm -rf $(BUILD)/selftests; }
	@$(MAKE) --no-print-directory -C tools/warpdrive check \
		> $(BUILD)/host-tests.log 2>&1 || \
		echo "tools/warpdrive: rustfmt, clippy or a host test failed" \
			"(see build/host-tests.log)" >> $(BUILD)/build-failures
	@$(mkinitramfs)
	@if echo "$(PROFILES)" | grep -qw normal; then \
	for iommu in on off; do \
		WD_SWIOTLB=$$([ $$iommu = off ] && echo force) \
		$(CURDIR)/scripts/guest.sh test $$iommu \
			$(BZIMAGE) $(INITRAMFS) \
			$(BUILD)/guest-test-iommu-$$iommu.log || true; \
	done; fi
	@if echo "$(PROFILES)" | grep -qw debug; then \
		$(CURDIR)/scripts/debug-profile.sh $(BUILD) $(DEBUG_SRC) \
			$(DEBUG_INITRAMFS) $(BUILD)/selftests $(DEMO) \
			$(EXAMPLE) || \
		echo "debug profile did not run" >> $(BUILD)/build-failures; \
	fi
	@$(CURDIR)/scripts/report.py --failures $(BUILD)/build-failures \
		--host $(BUILD)/host-tests.log \
		$(if $(findstring normal,$(PROFILES)),$(BUILD)/guest-test-iommu-on.log \
		$(BUILD)/guest-test-iommu-off.log) \
		$(if $(findstring debug,$(PROFILES)),$(BUILD)/guest-test-debug.log)

test-normal:
	@$(MAKE) --no-print-directory test PROFILES=normal

$(BENCH): samples/warpdrive/bench/wd_bench.c include/uapi/misc/warpdrive.h
	@mkdir -p $(BUILD)
	gcc -static -O2 -Wall -Wextra -pthread -I$(CURDIR)/include/uapi -o $@ $<

# The numbers of one boot only mean something next to each other: the guest
# runs every case side by side, and scripts/bench-report.py prints the table
# and ratios and draws the plot.
bench: modules demo $(BENCH)
	@$(CURDIR)/scripts/initramfs.sh -o $(BENCH_INITRAMFS) \
		$(addprefix -m ,$(MODULES) $(NULL_C)) -b $(BENCH)
	@rm -f $(BUILD)/guest-bench.log $(BUILD)/bench.json $(BUILD)/bench.png
	@WD_BENCH_PROFILE=$(PROFILE_CASE) \
		$(CURDIR)/scripts/guest.sh bench $(IOMMU) $(BZIMAGE) \
		$(BENCH_INITRAMFS) $(BUILD)/guest-bench.log; \
	$(CURDIR)/scripts/bench-report.py $(BUILD)/guest-bench.log $(BUILD)

# The kernel's own "make M=... rustfmt" formats the kernel's source tree,
# not the external module's, so rustfmt runs here directly with the kernel's
# configuration on every .rs file of ours (rust/ included).
RS_FILES = $(shell find $(CURDIR) \( -path $(BUILD) -o -path $(CURDIR)/.git \
	-o -path $(CURDIR)/tools \) -prune \
	-o -name '*.rs' ! -name '*generated*' -print | LC_ALL=C sort)
# The kernel's .rustfmt.toml only sets these two, so no kernel is built
# just to read it.
RUSTFMT_FLAGS = --edition 2021 $(if $(wildcard $(KTREE)/.rustfmt.toml),\
	--config-path $(KTREE)/.rustfmt.toml,--config newline_style=Unix)

rustfmt rustfmtcheck:
	rustfmt $(RUSTFMT_FLAGS) $(if $(filter rustfmtcheck,$@),--check) $(RS_FILES)
	cd tools/warpdrive && cargo fmt $(if $(filter rustfmtcheck,$@),--check)

clean:
	@if [ -f $(KTREE)/Makefile ]; then \
		$(MAKE) -C $(KTREE) M=$(CURDIR) $(KMAKEFLAGS) clean; fi
	rm -rf $(BUILD)
	find $(CURDIR) -path $(CURDIR)/.git -prune -o -name '*.rmeta' -type f -print | xargs rm -f

#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Idempotent host set-up for a fresh Debian 12 (bookworm) machine, run as root.
#
# Everything comes from bookworm main, with two exceptions, each installed by
# name from a suite that is added in its own sources file at apt pin priority
# 100, so that nothing else is ever upgraded from it:
#  - linux-source-7.3, which only trixie-backports carries;
#  - QEMU, from bookworm-backports, because the machine image already ships
#    qemu-utils 10.0 from there, and it Breaks bookworm's qemu-system 7.2.
#
# A second run only checks and returns within seconds.

set -euo pipefail

PACKAGES=(
	clang-19 lld-19 llvm-19 libclang-19-dev
	flex bison bc libelf-dev libssl-dev cpio kmod xz-utils
	busybox-static gcc libc6-dev make python3 python3-matplotlib file
)
# Each entry is package/suite; the suite is added with a pin of 100.
PINNED_PACKAGES=(
	linux-source-7.3/trixie-backports
	qemu-system-x86/bookworm-backports
	qemu-system-common/bookworm-backports
	qemu-system-data/bookworm-backports
	seabios/bookworm-backports
)
BINDGEN_VERSION=0.72.1

log() { printf 'deps: %s\n' "$*" >&2; }

as_root() {
	if [ "$(id -u)" -eq 0 ]; then
		"$@"
	else
		sudo "$@"
	fi
}

missing_packages() {
	local p
	for p in "$@"; do
		dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null |
			grep -q '^install ok installed$' || printf '%s\n' "$p"
	done
}

# Adds SUITE in its own sources file, pinned at 100. Returns 0 if it changed
# anything, so that the caller knows apt's lists are stale.
add_pinned_suite() {
	local suite=$1
	local src=/etc/apt/sources.list.d/warpdrive-$suite.sources
	local pin=/etc/apt/preferences.d/warpdrive-$suite
	local want_src want_pin
	want_src="Types: deb
URIs: http://deb.debian.org/debian
Suites: $suite
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg"
	want_pin="Package: *
Pin: release n=$suite
Pin-Priority: 100"
	if [ "$(cat "$src" 2>/dev/null)" = "$want_src" ] &&
	   [ "$(cat "$pin" 2>/dev/null)" = "$want_pin" ]; then
		return 1
	fi
	log "adding $suite at apt pin priority 100"
	printf '%s\n' "$want_src" | as_root tee "$src" >/dev/null
	printf '%s\n' "$want_pin" | as_root tee "$pin" >/dev/null
}

apt_updated=0
apt_update() {
	if [ "$apt_updated" -eq 0 ]; then
		as_root apt-get update -qq
		apt_updated=1
	fi
}

mapfile -t need < <(missing_packages "${PACKAGES[@]}")
mapfile -t need_pinned < <(missing_packages "${PINNED_PACKAGES[@]%/*}")
if [ "${#need[@]}" -gt 0 ] || [ "${#need_pinned[@]}" -gt 0 ]; then
	for entry in "${PINNED_PACKAGES[@]}"; do
		if add_pinned_suite "${entry#*/}"; then
			apt_updated=0
		fi
	done
	apt_update
	# The pinned group goes in one transaction, so that the resolver sees
	# every package/suite choice at once.
	log "installing ${need[*]} ${need_pinned[*]}"
	as_root env DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq --no-install-recommends \
		"${need[@]}" "${PINNED_PACKAGES[@]}"
fi

# The Rust side of the kernel build: rustc from rustup, its sources, bindgen.
export PATH="$HOME/.cargo/bin:$PATH"
if ! command -v rustup >/dev/null; then
	log "rustup is missing: the machine image should provide it"
	exit 1
fi
if [ ! -d "$(rustc --print sysroot)/lib/rustlib/src/rust/library" ]; then
	log "adding rust-src"
	rustup component add rust-src
fi
if ! bindgen --version 2>/dev/null | grep -q "$BINDGEN_VERSION"; then
	log "installing bindgen-cli $BINDGEN_VERSION"
	cargo install --quiet --locked --version "$BINDGEN_VERSION" bindgen-cli
fi

log "host is ready"

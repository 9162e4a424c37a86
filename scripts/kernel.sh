#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Builds warpdrive's kernel in a cache outside the work tree:
#   $WD_CACHE/pristine/   the linux-source tarball, extracted once;
#   $WD_CACHE/<profile>/  source with rust/ applied, built in place.
#
# The build is keyed on its inputs (tarball, rust/, config fragments,
# toolchain). An unchanged kernel is never rebuilt; a changed input updates
# only the files that differ, so make rebuilds only what depends on them.
#
# Prints the build directory on stdout.

set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/env.sh
. "$here/scripts/env.sh"

profile=${1:-normal}
fragments=("$here/.config.fragment")
case "$profile" in
normal) ;;
*)
	fragments+=("$here/.config.$profile.fragment")
	;;
esac

tarball=$(ls /usr/src/linux-source-7.3.tar.* | head -n1)
pristine=$WD_CACHE/pristine
tree=$WD_CACHE/$profile

log() { printf 'kernel: %s\n' "$*" >&2; }

inputs_key() {
	{
		sha256sum "$tarball" | cut -d' ' -f1
		(cd "$here" && find rust -type f | LC_ALL=C sort | xargs sha256sum)
		# Contents only, not paths: every clone shares the cache.
		cat "${fragments[@]}" "$here/scripts/kernel.sh" \
			"$here/scripts/apply-rust.sh" "$here/drivers/warpdrive/Kconfig" |
			sha256sum
		rustc --version; bindgen --version; clang-19 --version | head -n1
	} | sha256sum | cut -d' ' -f1
}

mkdir -p "$WD_CACHE"
exec 9>"$WD_CACHE/.lock"
flock 9

if [ ! -f "$pristine/.extracted" ]; then
	log "extracting $tarball"
	rm -rf "$pristine" "$pristine.tmp"
	mkdir -p "$pristine.tmp"
	tar -C "$pristine.tmp" --strip-components=1 -xf "$tarball"
	touch "$pristine.tmp/.extracted"
	mv "$pristine.tmp" "$pristine"
fi

key=$(inputs_key)
if [ "$(cat "$tree/.warpdrive-key" 2>/dev/null)" = "$key" ] &&
   [ -f "$tree/arch/x86/boot/bzImage" ]; then
	log "up to date ($profile)"
	echo "$tree"
	exit 0
fi

if [ ! -f "$tree/Makefile" ]; then
	log "copying the pristine tree for $profile"
	rm -rf "$tree"
	cp -a "$pristine" "$tree"
	rm -f "$tree/.extracted"
fi

"$here/scripts/apply-rust.sh" "$pristine" "$tree"

# warpdrive's Kconfig entry, sourced from drivers/Kconfig, so that the
# kernel has what the out-of-tree module selects. Written only when it
# differs, as apply-rust.sh does, so that make rebuilds nothing for it.
install_if_changed() {
	cmp -s "$1" "$2" && return 0
	mkdir -p "$(dirname "$2")"
	cp "$1" "$2"
	log "updated ${2#"$tree"/}"
}
install_if_changed "$here/drivers/warpdrive/Kconfig" "$tree/drivers/warpdrive/Kconfig"
kconfig_stage=$(mktemp)
# Inside the "Device Drivers" menu, which the file's last line closes.
sed '$i source "drivers/warpdrive/Kconfig"' "$pristine/drivers/Kconfig" > "$kconfig_stage"
install_if_changed "$kconfig_stage" "$tree/drivers/Kconfig"
rm -f "$kconfig_stage"

kmake() { make -C "$tree" -s "${KMAKEFLAGS[@]}" "$@"; }

# tinyconfig is the small base; the fragments are merged onto it and
# olddefconfig resolves what they imply.
kmake tinyconfig >/dev/null
"$tree/scripts/kconfig/merge_config.sh" -m -O "$tree" "$tree/.config" \
	"${fragments[@]}" >/dev/null
kmake olddefconfig >/dev/null

# Every option a fragment asks for must have survived the dependency check.
bad=0
while IFS= read -r line; do
	case "$line" in
	CONFIG_*=*)
		grep -qxF "$line" "$tree/.config" || {
			log "fragment asks for $line, got: $(grep "^${line%%=*}=" "$tree/.config" || echo unset)"
			bad=1
		}
		;;
	"# CONFIG_"*" is not set")
		opt=${line#\# }; opt=${opt%% *}
		if grep -q "^$opt=" "$tree/.config"; then
			log "fragment wants $opt unset, got: $(grep "^$opt=" "$tree/.config")"
			bad=1
		fi
		;;
	esac
done < <(cat "${fragments[@]}")
[ "$bad" -eq 0 ] || { log "config check failed"; exit 1; }

log "building bzImage ($profile), this takes a while when cold"
start=$(date +%s)
kmake -j"$(($(nproc) + 1))" bzImage modules
log "built in $(($(date +%s) - start)) s"
echo "$key" > "$tree/.warpdrive-key"
echo "$tree"

#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# apply-rust.sh PRISTINE TREE
#
# Applies warpdrive's kernel-crate additions to a kernel tree:
#  - every file under rust/ except rust/patches/ is copied to the same path
#    in the tree (rust/kernel/foo.rs -> TREE/rust/kernel/foo.rs);
#  - rust/patches/*.patch, in order, edit existing kernel files (lib.rs,
#    bindings_helper.h, ...).
# The result is built in a staging area from PRISTINE, and only files whose
# content differs are written to TREE, so that make rebuilds only what the
# change touches. Files applied last time but not now are restored.

set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
pristine=$1
tree=$2
manifest=$tree/.warpdrive-applied
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT

mapfile -t patches < <(find "$here/rust/patches" -name '*.patch' 2>/dev/null | LC_ALL=C sort)
mapfile -t overlay < <(cd "$here" && find rust -type f -not -path 'rust/patches/*' \
	-not -name '*.md' | LC_ALL=C sort)
mapfile -t patched < <(for p in "${patches[@]}"; do
	sed -n 's|^+++ b/\([^[:space:]]*\).*|\1|p' "$p"; done | LC_ALL=C sort -u)

for f in "${patched[@]}"; do
	mkdir -p "$stage/$(dirname "$f")"
	[ -f "$pristine/$f" ] && cp "$pristine/$f" "$stage/$f"
done
for f in "${overlay[@]}"; do
	mkdir -p "$stage/$(dirname "$f")"
	cp "$here/$f" "$stage/$f"
done
for p in "${patches[@]}"; do
	patch -s -p1 -d "$stage" --no-backup-if-mismatch < "$p" || {
		echo "apply-rust: $p does not apply" >&2
		exit 1
	}
done

mapfile -t now < <(cd "$stage" && find . -type f | sed 's|^\./||' | LC_ALL=C sort)
for f in "${now[@]}"; do
	if ! cmp -s "$stage/$f" "$tree/$f"; then
		mkdir -p "$tree/$(dirname "$f")"
		cp "$stage/$f" "$tree/$f"
		echo "apply-rust: updated $f" >&2
	fi
done
if [ -f "$manifest" ]; then
	while IFS= read -r f; do
		[ -n "$f" ] || continue
		printf '%s\n' "${now[@]}" | grep -qxF "$f" && continue
		if [ -f "$pristine/$f" ]; then
			cp "$pristine/$f" "$tree/$f"
		else
			rm -f "$tree/$f"
		fi
		echo "apply-rust: restored $f" >&2
	done < "$manifest"
fi
if [ "${#now[@]}" -gt 0 ]; then
	printf '%s\n' "${now[@]}" > "$manifest"
else
	: > "$manifest"
fi

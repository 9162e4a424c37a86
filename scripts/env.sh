# SPDX-License-Identifier: GPL-2.0
#
# Shared settings for warpdrive's scripts; sourced, never run.

export PATH="$HOME/.cargo/bin:$PATH"
export LIBCLANG_PATH=/usr/lib/llvm-19/lib

# The kernel build cache lives outside the work tree, so that every clone
# (CI's included) shares one build per set of inputs.
WD_CACHE=${WD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/warpdrive}
export WD_CACHE

# bookworm ships only the -19 suffixed LLVM tools, so LLVM=1 cannot work.
KMAKEFLAGS=(LLVM=-19 ARCH=x86_64)

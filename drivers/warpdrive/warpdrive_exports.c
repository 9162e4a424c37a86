// SPDX-License-Identifier: GPL-2.0
/*
 * Exports the Rust symbols of the warpdrive crate that its drivers use.
 *
 * The generated header lists exactly the symbols that the driver modules
 * built alongside reference. This is a workaround, as in nova-core, until
 * the kernel's Rust build supports cross-module crate dependencies.
 */

#include <linux/export.h>

#define EXPORT_SYMBOL_RUST_GPL(sym) extern int sym; EXPORT_SYMBOL_GPL(sym)

#include "exports_warpdrive_generated.h"

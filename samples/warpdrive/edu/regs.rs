// SPDX-License-Identifier: GPL-2.0

//! The edu device's registers in BAR0, and its DMA buffer.
//!
//! The device is specified by QEMU's `docs/specs/edu.rst`. It answers only 32-bit accesses below
//! offset 0x80, and 32- or 64-bit ones from 0x80 on.
//!
//! The DMA registers are 64 bits wide, but are declared as 32-bit registers here: the kernel's
//! compile-time checked register accessors only make accesses that are 4-byte aligned within the
//! BAR. QEMU stores a 32-bit write to one of them zero-extended into the whole register, which
//! covers every bus address under the driver's 32-bit DMA mask.

use kernel::{io::register, sizes::SZ_1M};

/// The size of BAR0.
pub(crate) const BAR0_SIZE: usize = SZ_1M;

/// The device address of the device's DMA buffer.
///
/// The DMA engine only copies between RAM and this buffer; the buffer is not visible in BAR0.
pub(crate) const DMA_BUFFER_ADDR: u32 = 0x40000;

/// The size of the device's DMA buffer, in bytes.
pub(crate) const DMA_BUFFER_SIZE: usize = 4096;

/// The only major version of the device this driver knows.
pub(crate) const ID_MAJOR: u8 = 1;

/// The value of [`ID::magic`] on every edu device.
pub(crate) const ID_MAGIC: u8 = 0xed;

register! {
    /// Identification, `0x010000ed` on QEMU's edu 1.0.
    pub(crate) ID(u32) @ 0x00 {
        /// Major version.
        31:24 major => u8;
        /// Minor version.
        23:16 minor => u8;
        /// Always [`ID_MAGIC`].
        7:0 magic => u8;
    }

    /// Liveness check: reads back the bitwise inverse of the last value written.
    pub(crate) LIVENESS(u32) @ 0x04 {
        31:0 value => u32;
    }

    /// Factorial unit: a write of `n` starts computing `n!` (as a wrapping `u32`), a read returns
    /// the result once [`STATUS::computing`] is clear.
    ///
    /// The device ignores the write while it is computing.
    pub(crate) FACTORIAL(u32) @ 0x08 {
        31:0 value => u32;
    }

    /// Factorial unit status.
    pub(crate) STATUS(u32) @ 0x20 {
        /// Set while the factorial unit computes (read only).
        0:0 computing => bool;
        /// Raise [`IRQ_STATUS::factorial`] when a factorial completes.
        7:7 irq_on_completion => bool;
    }

    /// Pending interrupts. Each stays pending until acknowledged through [`IRQ_ACK`].
    pub(crate) IRQ_STATUS(u32) @ 0x24 {
        /// A factorial completed.
        0:0 factorial => bool;
        /// A DMA transfer completed.
        8:8 dma => bool;
    }

    /// Raises the interrupts whose bits are written (a software interrupt).
    pub(crate) IRQ_RAISE(u32) @ 0x60 {
        31:0 bits => u32;
    }

    /// Acknowledges the interrupts whose bits are written. Needed with MSI too: the device
    /// keeps its status bits until acknowledged.
    pub(crate) IRQ_ACK(u32) @ 0x64 {
        31:0 bits => u32;
    }

    /// DMA source address (low 32 bits): a bus address in RAM, or an address in the device's
    /// buffer.
    pub(crate) DMA_SRC(u32) @ 0x80 {
        31:0 addr => u32;
    }

    /// DMA destination address (low 32 bits): a bus address in RAM, or an address in the
    /// device's buffer.
    pub(crate) DMA_DST(u32) @ 0x88 {
        31:0 addr => u32;
    }

    /// DMA transfer length in bytes (low 32 bits).
    pub(crate) DMA_COUNT(u32) @ 0x90 {
        31:0 count => u32;
    }

    /// DMA command.
    ///
    /// While a transfer runs the device ignores writes to the DMA registers, and a transfer
    /// cannot be cancelled.
    pub(crate) DMA_CMD(u32) @ 0x98 {
        /// Written as 1 to start a transfer; reads as 1 while the transfer runs.
        0:0 start => bool;
        /// The direction: 1 copies from the device's buffer to RAM, 0 from RAM to the buffer.
        1:1 to_ram => bool;
        /// Raise [`IRQ_STATUS::dma`] when the transfer completes.
        2:2 irq_on_completion => bool;
    }
}

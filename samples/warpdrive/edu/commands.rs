// SPDX-License-Identifier: GPL-2.0

//! How each opcode of an edu queue runs: on the device's own units, or on the bulk engine that
//! the driver emulates in software.

use crate::{crc32c::Crc32c, engine::Engine, regs::DMA_BUFFER_SIZE, sched::Executor};
use kernel::{
    new_mutex,
    prelude::*,
    sync::{
        atomic::{Atomic, Relaxed},
        Arc, Mutex,
    },
};
use warpdrive::{Command, Opcode, Operand, Reach};

/// `WD_EDU_OP_NOP`.
pub(crate) const OP_NOP: u16 = 1;
/// `WD_EDU_OP_FACTORIAL`.
pub(crate) const OP_FACTORIAL: u16 = 2;
/// `WD_EDU_OP_DMA_COPY`.
pub(crate) const OP_DMA_COPY: u16 = 3;
/// `WD_EDU_OP_EMU_MEMCPY`.
pub(crate) const OP_EMU_MEMCPY: u16 = 4;
/// `WD_EDU_OP_EMU_CRC32C`.
pub(crate) const OP_EMU_CRC32C: u16 = 5;

/// `WD_EDU_DMA_COPY_MAX`: each 4 KiB takes the device two 100 ms transfers.
const DMA_COPY_MAX: u64 = 64 << 10;

/// `WD_EDU_BULK_MAX`.
const BULK_MAX: u64 = 256 << 20;

/// The opcodes of an edu queue.
pub(crate) const OPCODES: &[Opcode] = &[
    Opcode {
        code: OP_NOP,
        src: false,
        dst: false,
        max_len: 0,
        align: 1,
        reach: Reach::Cpu,
    },
    Opcode {
        code: OP_FACTORIAL,
        src: false,
        dst: false,
        max_len: 0,
        align: 1,
        reach: Reach::Cpu,
    },
    // The device moves 32-bit words between RAM and its buffer.
    Opcode {
        code: OP_DMA_COPY,
        src: true,
        dst: true,
        max_len: DMA_COPY_MAX,
        align: 4,
        reach: Reach::Dma,
    },
    Opcode {
        code: OP_EMU_MEMCPY,
        src: true,
        dst: true,
        max_len: BULK_MAX,
        align: 1,
        reach: Reach::Cpu,
    },
    Opcode {
        code: OP_EMU_CRC32C,
        src: true,
        dst: false,
        max_len: BULK_MAX,
        align: 1,
        reach: Reach::Cpu,
    },
];

/// Whether `opcode` runs on the device's own units rather than the emulated engine.
pub(crate) fn runs_on_device(opcode: u16) -> bool {
    matches!(opcode, OP_FACTORIAL | OP_DMA_COPY)
}

/// From this `n` on, `n!` truncated to 32 bits is 0: it has at least 32 factors of two.
pub(crate) const FACTORIAL_ZERO_FROM: u32 = 34;

/// Runs `FACTORIAL` and `DMA_COPY` on the device.
pub(crate) struct DeviceUnits {
    engine: Arc<Engine>,
}

impl DeviceUnits {
    /// Runs commands on `engine`.
    pub(crate) fn new(engine: Arc<Engine>) -> Self {
        Self { engine }
    }

    /// Copies `len` bytes from `src` to `dst` through the device's buffer, a buffer-full at a
    /// time, one transfer per DMA-contiguous piece.
    fn dma_copy(
        &self,
        cmd: &Command,
        src: &Operand,
        dst: &Operand,
        cancel: &Atomic<bool>,
    ) -> Result<u64> {
        let len = src.len();
        let mut done = 0;
        while done < len {
            // Between chunks the device is idle: the copy can stop here.
            if cancel.load(Relaxed) || cmd.is_cancelled() {
                return Err(ECANCELED);
            }
            let chunk = (len - done).min(DMA_BUFFER_SIZE);
            let mut at = 0;
            src.for_each_dma_range(done, chunk, |addr, n| {
                self.engine.dma_to_device(addr, at, n)?;
                at += n;
                Ok(())
            })?;
            let mut at = 0;
            dst.for_each_dma_range(done, chunk, |addr, n| {
                self.engine.dma_from_device(at, addr, n)?;
                at += n;
                Ok(())
            })?;
            done += chunk;
        }
        Ok(len as u64)
    }
}

impl Executor for DeviceUnits {
    fn execute(&self, cmd: &Command, cancel: &Atomic<bool>) -> Result<u64> {
        match (cmd.opcode(), cmd.src(), cmd.dst()) {
            (OP_FACTORIAL, _, _) => {
                // The device loops `n` times, so a huge `n` would hold the shared unit for
                // seconds; every `n` from 34 on has the same 32-bit result.
                let n = u32::try_from(cmd.arg())
                    .unwrap_or(u32::MAX)
                    .min(FACTORIAL_ZERO_FROM);
                Ok(u64::from(self.engine.factorial(n)?))
            }
            (OP_DMA_COPY, Some(src), Some(dst)) => self.dma_copy(cmd, src, dst, cancel),
            _ => Err(EOPNOTSUPP),
        }
    }
}

/// How much the emulated engine moves at a time, between checks for cancellation.
const BULK_CHUNK: usize = 64 << 10;

/// The bulk engine that the driver emulates in software: `NOP`, `EMU_MEMCPY`, `EMU_CRC32C`.
///
/// It reads and writes the pinned pages through the kernel's mapping of them, where a device
/// would use the DMA addresses: the same pages, pinned and mapped by warpdrive the same way.
#[pin_data]
pub(crate) struct EmulatedBulk {
    /// The engine's own buffer, as a device would have one.
    #[pin]
    buffer: Mutex<KVVec<u8>>,
}

impl EmulatedBulk {
    /// An idle engine.
    pub(crate) fn new() -> Result<impl PinInit<Self, Error>> {
        let buffer = KVVec::from_elem(0u8, BULK_CHUNK, GFP_KERNEL)?;
        Ok(try_pin_init!(Self {
            buffer <- new_mutex!(buffer),
        }))
    }

    /// Reads `src` into the engine's buffer a chunk at a time and hands each chunk, with its
    /// offset, to `f`; stops with `ECANCELED` between chunks once the command is cancelled.
    fn for_each_chunk(
        &self,
        cmd: &Command,
        src: &Operand,
        cancel: &Atomic<bool>,
        mut f: impl FnMut(usize, &[u8]) -> Result,
    ) -> Result {
        let mut buffer = self.buffer.lock();
        let len = src.len();
        let mut done = 0;
        while done < len {
            if cancel.load(Relaxed) || cmd.is_cancelled() {
                return Err(ECANCELED);
            }
            let n = (len - done).min(BULK_CHUNK);
            src.read(done, &mut buffer[..n])?;
            f(done, &buffer[..n])?;
            done += n;
        }
        Ok(())
    }

    fn memcpy(
        &self,
        cmd: &Command,
        src: &Operand,
        dst: &Operand,
        cancel: &Atomic<bool>,
    ) -> Result<u64> {
        self.for_each_chunk(cmd, src, cancel, |offset, chunk| dst.write(offset, chunk))?;
        Ok(src.len() as u64)
    }

    fn crc32c(&self, cmd: &Command, src: &Operand, cancel: &Atomic<bool>) -> Result<u64> {
        let mut crc = Crc32c::resume(u32::try_from(cmd.arg()).map_err(|_| EINVAL)?);
        self.for_each_chunk(cmd, src, cancel, |_, chunk| {
            crc.update(chunk);
            Ok(())
        })?;
        Ok(u64::from(crc.value()))
    }
}

impl Executor for EmulatedBulk {
    fn execute(&self, cmd: &Command, cancel: &Atomic<bool>) -> Result<u64> {
        match (cmd.opcode(), cmd.src(), cmd.dst()) {
            (OP_NOP, _, _) => Ok(0),
            (OP_EMU_MEMCPY, Some(src), Some(dst)) => self.memcpy(cmd, src, dst, cancel),
            (OP_EMU_CRC32C, Some(src), _) => self.crc32c(cmd, src, cancel),
            _ => Err(EOPNOTSUPP),
        }
    }
}

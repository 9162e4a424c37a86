// SPDX-License-Identifier: GPL-2.0

//! Commands: what a driver gets from the shadow ring once warpdrive has copied, validated and
//! translated a descriptor, and how it completes them.

use crate::{
    buffer::{Buffer, BufferRef, Pinned},
    ring::Ring,
};
use kernel::{dma::DmaAddress, prelude::*, sync::Arc};

/// How the device reaches the operands of an opcode.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Reach {
    /// By DMA, through [`Operand::for_each_dma_range`].
    Dma,
    /// With the CPU, through [`Operand::read`] and [`Operand::write`]: an engine that the driver
    /// emulates in software. Such operands are never mapped for DMA.
    Cpu,
}

/// How one of a driver's opcodes uses a descriptor. warpdrive checks every descriptor against
/// it before the driver sees the command.
#[derive(Copy, Clone, Debug)]
pub struct Opcode {
    /// The opcode, as in `struct wd_desc`.
    pub code: u16,
    /// Whether the device reads `len` bytes at `src`.
    pub src: bool,
    /// Whether the device writes `len` bytes at `dst`.
    pub dst: bool,
    /// The largest `len`, for opcodes with an operand.
    pub max_len: u64,
    /// What `src`, `dst` and `len` must be multiples of, for opcodes with an operand: a power
    /// of two (1 for any).
    pub align: u64,
    /// How the device reaches the operands.
    pub reach: Reach,
}

impl Opcode {
    /// Whether the opcode has an operand, and so a length.
    pub(crate) fn has_operands(&self) -> bool {
        self.src || self.dst
    }
}

/// Where an operand's memory is.
enum Memory {
    /// In a registered buffer, from `offset` (bytes from the buffer's first byte).
    Registered { buffer: BufferRef, offset: usize },
    /// Pinned for this command alone.
    Pinned(Pinned),
}

/// A range of user memory that a command reads or writes.
///
/// The device reaches it through [`Operand::for_each_dma_range`], a driver that emulates the
/// device in software through [`Operand::read`] and [`Operand::write`], as its [`Opcode`]
/// declares. Each call is one access: while it runs, the pages stay where they are, and an
/// invalidation of them waits for it; between calls, memory management may move or reclaim
/// them, and the next call finds them again. A driver makes one access at a time on a command,
/// and never one from within another's callback.
pub struct Operand {
    memory: Memory,
    len: usize,
    /// Whether the device writes it (`dst`).
    write: bool,
}

impl Operand {
    /// An operand of `len` bytes at `offset` in a registered buffer.
    pub(crate) fn registered(buffer: BufferRef, offset: usize, len: usize, write: bool) -> Self {
        Self {
            memory: Memory::Registered { buffer, offset },
            len,
            write,
        }
    }

    /// An operand that is all of `pinned`.
    pub(crate) fn pinned(pinned: Pinned, len: usize, write: bool) -> Self {
        Self {
            memory: Memory::Pinned(pinned),
            len,
            write,
        }
    }

    /// The operand's length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the operand is empty; it never is.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn check(&self, offset: usize, len: usize) -> Result {
        if offset.checked_add(len).ok_or(EINVAL)? > self.len || len == 0 {
            return Err(EINVAL);
        }
        Ok(())
    }

    fn registered_buffer(
        buffer: &BufferRef,
    ) -> Result<&kernel::mm::interval_notifier::IntervalNotifier<Buffer>> {
        buffer.notifier().ok_or(ECANCELED)
    }

    /// Calls `f(dma_address, len)` for each DMA-contiguous piece of `[offset, offset + len)` of
    /// the operand, in order, for an opcode that the device reaches by DMA ([`Reach::Dma`]).
    ///
    /// The device may use a piece only until `f` returns for it: `f` starts the transfer and
    /// waits for it. Fails with `EINVAL` if the range does not fit in the operand, with
    /// `EFAULT` if memory of a registered buffer is no longer mapped with the access needed,
    /// and with `ECANCELED` once the owner's address space is gone.
    pub fn for_each_dma_range(
        &self,
        offset: usize,
        len: usize,
        f: impl FnMut(DmaAddress, usize) -> Result,
    ) -> Result {
        self.check(offset, len)?;
        match &self.memory {
            Memory::Registered { buffer, offset: at } => {
                let notifier = Self::registered_buffer(buffer)?;
                Buffer::begin_access(notifier, at + offset, len, self.write)?.for_each_dma_range(f)
            }
            Memory::Pinned(pinned) => pinned.for_each_dma_range(offset, len, f),
        }
    }

    /// Copies `dst.len()` bytes at `offset` in the operand into `dst`, with the CPU, for an
    /// opcode that the driver emulates ([`Reach::Cpu`]). Fails like
    /// [`Operand::for_each_dma_range`].
    pub fn read(&self, offset: usize, dst: &mut [u8]) -> Result {
        self.check(offset, dst.len())?;
        match &self.memory {
            Memory::Registered { buffer, offset: at } => {
                let notifier = Self::registered_buffer(buffer)?;
                Buffer::begin_access(notifier, at + offset, dst.len(), self.write)?.read(0, dst)
            }
            Memory::Pinned(pinned) => pinned.read(offset, dst),
        }
    }

    /// Copies `src` to `offset` in the operand, with the CPU, for an opcode that the driver
    /// emulates. Fails with `EPERM` for an operand that the device may only read, and otherwise
    /// like [`Operand::read`].
    pub fn write(&self, offset: usize, src: &[u8]) -> Result {
        if !self.write {
            return Err(EPERM);
        }
        self.check(offset, src.len())?;
        match &self.memory {
            Memory::Registered { buffer, offset: at } => {
                let notifier = Self::registered_buffer(buffer)?;
                Buffer::begin_access(notifier, at + offset, src.len(), true)?.write(0, src)
            }
            Memory::Pinned(pinned) => pinned.write(offset, src),
        }
    }
}

/// A command for a driver's queue, validated and translated by warpdrive.
///
/// The driver runs it, then passes the result to [`Command::complete`]. A command that is
/// dropped without being completed completes with `ECANCELED`: none is ever lost. Either way,
/// its operands are released first (pins dropped, buffers let go), and then its completion is
/// written, so that user space that reaps it can use the memory again at once. A driver must
/// not drop a command while the device may still access its operands.
///
/// Completing or dropping a command may sleep.
pub struct Command {
    opcode: u16,
    arg: u64,
    len: u64,
    src: Option<Operand>,
    dst: Option<Operand>,
    user_data: u64,
    /// Where the completion goes; taken when it is written.
    ring: Option<Arc<Ring>>,
}

impl Command {
    pub(crate) fn new(
        ring: Arc<Ring>,
        user_data: u64,
        opcode: u16,
        arg: u64,
        len: u64,
        src: Option<Operand>,
        dst: Option<Operand>,
    ) -> Self {
        Self {
            opcode,
            arg,
            len,
            src,
            dst,
            user_data,
            ring: Some(ring),
        }
    }

    /// The opcode, one of those the driver declared.
    pub fn opcode(&self) -> u16 {
        self.opcode
    }

    /// The opcode-specific argument.
    pub fn arg(&self) -> u64 {
        self.arg
    }

    /// The length of the operands; 0 for an opcode without operands.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the command has no operands.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The memory the device reads, for an opcode with `src`.
    pub fn src(&self) -> Option<&Operand> {
        self.src.as_ref()
    }

    /// The memory the device writes, for an opcode with `dst`.
    pub fn dst(&self) -> Option<&Operand> {
        self.dst.as_ref()
    }

    /// Whether the command should not run, or stop as soon as it can and complete with
    /// `ECANCELED`: the address space it was submitted from is gone. Drivers check this before
    /// they start a command, and between the steps of a long one.
    pub fn is_cancelled(&self) -> bool {
        self.ring.as_ref().is_none_or(|ring| ring.is_orphaned())
    }

    /// Completes the command with `result`: the result for user space, or the error for its
    /// status.
    pub fn complete(mut self, result: Result<u64>) {
        self.finish(result);
    }

    fn finish(&mut self, result: Result<u64>) {
        kernel::task::might_sleep();
        // Unpinning and letting go of buffers first: user space that reaps the completion must
        // find its memory (and its RLIMIT_MEMLOCK) free, and UNREGISTER must not wait.
        drop(self.src.take());
        drop(self.dst.take());
        if let Some(ring) = self.ring.take() {
            ring.complete(self.user_data, result, self.len);
        }
    }
}

impl Drop for Command {
    fn drop(&mut self) {
        self.finish(Err(ECANCELED));
    }
}

// SPDX-License-Identifier: GPL-2.0

//! Commands: what a driver gets from the shadow ring once warpdrive has copied, validated and
//! translated a descriptor, and how it completes them.

use crate::{
    buffer::{BufferHold, Mapping},
    ring::Ring,
};
use kernel::{dma::DmaAddress, prelude::*, sync::Arc};

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
    /// What `src`, `dst` and `len` must be multiples of, for opcodes with an operand (1 for
    /// any).
    pub align: u64,
}

impl Opcode {
    /// Whether the opcode has an operand, and so a length.
    pub(crate) fn has_operands(&self) -> bool {
        self.src || self.dst
    }
}

/// A range of user memory that a command reads or writes, pinned and mapped for the device for
/// as long as the command lives.
///
/// The device reaches it through [`Operand::for_each_dma_range`]. A driver that emulates a
/// device in software uses [`Operand::read`] and [`Operand::write`] instead, which go through
/// the kernel's mapping of the same pages.
pub struct Operand {
    /// Declared before `hold`, so that it goes first.
    mapping: Arc<Mapping>,
    /// Where the operand starts in `mapping`.
    offset: usize,
    len: usize,
    /// For a registered buffer: keeps invalidations waiting until the command is done.
    _hold: Option<BufferHold>,
}

impl Operand {
    /// An operand at `addr` of `len` bytes, in the pages held by `hold`.
    pub(crate) fn registered(hold: BufferHold, addr: usize, len: usize) -> Result<Self> {
        let mapping = hold.mapping().ok_or(EFAULT)?.clone();
        let offset = addr.checked_sub(mapping.user_addr()).ok_or(EFAULT)?;
        Ok(Self {
            mapping,
            offset,
            len,
            _hold: Some(hold),
        })
    }

    /// An operand that is all of `mapping`, pinned for one command.
    pub(crate) fn pinned(mapping: Arc<Mapping>, len: usize) -> Self {
        Self {
            mapping,
            offset: 0,
            len,
            _hold: None,
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

    /// Calls `f(dma_address, len)` for each DMA-contiguous piece of `[offset, offset + len)` of
    /// the operand, in order. Fails with `EINVAL` if the range does not fit in the operand.
    pub fn for_each_dma_range(
        &self,
        offset: usize,
        len: usize,
        f: impl FnMut(DmaAddress, usize) -> Result,
    ) -> Result {
        if offset.checked_add(len).ok_or(EINVAL)? > self.len {
            return Err(EINVAL);
        }
        self.mapping
            .for_each_dma_range(self.offset + offset, len, f)
    }

    /// Copies `dst.len()` bytes at `offset` in the operand into `dst`, with the CPU.
    pub fn read(&self, offset: usize, dst: &mut [u8]) -> Result {
        if offset.checked_add(dst.len()).ok_or(EINVAL)? > self.len {
            return Err(EINVAL);
        }
        self.mapping.read(self.offset + offset, dst)
    }

    /// Copies `src` to `offset` in the operand, with the CPU. Fails with `EPERM` for an operand
    /// that the device may only read.
    pub fn write(&self, offset: usize, src: &[u8]) -> Result {
        if offset.checked_add(src.len()).ok_or(EINVAL)? > self.len {
            return Err(EINVAL);
        }
        self.mapping.write(self.offset + offset, src)
    }
}

/// A command for a driver's queue, validated and translated by warpdrive.
///
/// The driver runs it, then passes the result to [`Command::complete`]. A command that is
/// dropped without being completed completes with `ECANCELED`: none is ever lost. Either way,
/// its operands are released only after its completion is written, and only when the command
/// is dropped: a driver must not drop a command while the device may still access its
/// operands.
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
    /// status. The operands are released afterwards.
    pub fn complete(mut self, result: Result<u64>) {
        self.write_completion(result);
    }

    fn write_completion(&mut self, result: Result<u64>) {
        if let Some(ring) = self.ring.take() {
            ring.complete(self.user_data, result, self.len);
        }
    }
}

impl Drop for Command {
    fn drop(&mut self) {
        self.write_completion(Err(ECANCELED));
        // The operands go after the completion is written: whoever waits for them to be
        // released (an invalidation, an unregistration) then knows it is visible.
    }
}

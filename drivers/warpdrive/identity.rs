// SPDX-License-Identifier: GPL-2.0

//! What warpdrive keeps of a registered device: its own copy of the driver's description, and
//! the parent device it maps memory for.

use crate::{command::Opcode, driver::DeviceInfo, ring::Ring, uapi};
use kernel::{device::Device, prelude::*, str::CString, sync::aref::ARef};

/// A registered device's description, owned by warpdrive: it lives as long as the device's
/// open files, which may outlive the driver's module, so nothing in it points into the module.
pub(crate) struct Identity {
    /// `<name>-<id>`, the node's name.
    pub(crate) node_name: CString,
    pub(crate) api: CString,
    pub(crate) flags: u32,
    pub(crate) algorithms: KVec<CString>,
    pub(crate) queues: u32,
    pub(crate) ioctls: KVec<u32>,
    pub(crate) opcodes: KVec<Opcode>,
    pub(crate) sq_entries: u32,
    pub(crate) cq_entries: u32,
    /// The device the driver registered this for; bound while the registration lives, which a
    /// queue knows while it is alive.
    pub(crate) parent: ARef<Device>,
}

impl Identity {
    /// The size of the MMIO region, one status page, in pages.
    pub(crate) const MMIO_PAGES: usize = 1;

    /// Checks `info` and copies it, for the device with `id`, child of `parent`.
    pub(crate) fn new(info: &DeviceInfo, id: u32, parent: &Device) -> Result<Self> {
        if info.queues == 0 || info.name.is_empty() {
            return Err(EINVAL);
        }
        // Binding a queue to the process address space needs an SVA abstraction that the kernel
        // crate does not have yet; refuse rather than pretend.
        if info.flags & uapi::DEV_SVA != 0 {
            return Err(EOPNOTSUPP);
        }
        if info.flags & uapi::DEV_SHADOW_RING == 0
            || !info.sq_entries.is_power_of_two()
            || !info.cq_entries.is_power_of_two()
            || info.cq_entries < info.sq_entries
        {
            return Err(EINVAL);
        }
        let mut opcodes = KVec::with_capacity(info.opcodes.len(), GFP_KERNEL)?;
        for op in info.opcodes {
            // Alignment is checked with a mask, and zero means any.
            if op.align != 0 && !op.align.is_power_of_two() {
                return Err(EINVAL);
            }
            if opcodes.iter().any(|o: &Opcode| o.code == op.code) {
                return Err(EINVAL);
            }
            opcodes.push(*op, GFP_KERNEL)?;
        }
        let mut ioctls = KVec::with_capacity(info.ioctls.len(), GFP_KERNEL)?;
        ioctls.extend_from_slice(info.ioctls, GFP_KERNEL)?;
        let mut algorithms = KVec::with_capacity(info.algorithms.len(), GFP_KERNEL)?;
        for alg in info.algorithms {
            algorithms.push(CString::try_from_fmt(fmt!("{}", alg))?, GFP_KERNEL)?;
        }
        Ok(Self {
            node_name: CString::try_from_fmt(fmt!("{}-{}", info.name, id))?,
            api: CString::try_from_fmt(fmt!("{}", info.api))?,
            flags: info.flags,
            algorithms,
            queues: info.queues,
            ioctls,
            opcodes,
            sq_entries: info.sq_entries,
            cq_entries: info.cq_entries,
            parent: parent.into(),
        })
    }

    /// The node's name, `<name>-<id>`.
    pub(crate) fn node_name(&self) -> &CStr {
        &self.node_name
    }

    /// The size of the DUS region, the rings, in pages.
    pub(crate) fn dus_pages(&self) -> usize {
        Ring::dus_pages(self.sq_entries, self.cq_entries)
    }

    /// The declared opcode `code`.
    pub(crate) fn opcode(&self, code: u16) -> Option<&Opcode> {
        self.opcodes.iter().find(|op| op.code == code)
    }
}

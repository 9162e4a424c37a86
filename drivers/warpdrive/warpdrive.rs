// SPDX-License-Identifier: GPL-2.0

//! warpdrive: a user-space accelerator subsystem, compatible with uacce.
//!
//! An accelerator driver registers each of its devices with a [`Registration`]. warpdrive then
//! gives the device a character device `/dev/<name>-<id>` in class `uacce`, with uacce's sysfs
//! attributes and ioctls, so that uacce's user space (Linaro UADK's libwd) finds and uses it.
//! Every `open()` of the node gets one hardware queue of the device, or `EBUSY`.
//!
//! Devices without SVA get warpdrive's shadow ring: user space queues commands in plain memory,
//! and warpdrive copies, validates and translates each one into a [`Command`] for the driver.
//! Registered user memory is mirrored for the device without pins; the memory of a single
//! command is pinned while it lives.
//!
//! The driver-facing API is [`DeviceInfo`], [`Driver`], [`Queue`] and [`Command`]; see
//! `Documentation/warpdrive/` for the rules a driver must keep, and
//! `Documentation/warpdrive/subsystem.rst` for how the modules below depend on each other.

use kernel::prelude::*;

// The modules are layered; `Documentation/warpdrive/subsystem.rst` gives the order, in which
// each uses only those below it: uapi, shared_pages, ring, buffer, command, driver, identity,
// queue, device, file, debugfs, subsystem, registration.
mod buffer;
mod command;
mod debugfs;
mod device;
mod driver;
mod file;
mod identity;
mod queue;
mod registration;
mod ring;
mod shared_pages;
mod subsystem;
pub mod uapi;

pub use command::{Command, Opcode, Operand, Reach};
pub use driver::{DeviceInfo, Driver, Queue, QueueContext};
pub use registration::Registration;

module! {
    type: Warpdrive,
    name: "warpdrive",
    authors: ["warpdrive developers"],
    description: "User-space accelerator subsystem, compatible with uacce",
    license: "GPL",
}

struct Warpdrive;

impl kernel::Module for Warpdrive {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        subsystem::Subsystem::start()?;
        Ok(Warpdrive)
    }
}

impl Drop for Warpdrive {
    fn drop(&mut self) {
        subsystem::Subsystem::stop();
    }
}

// SPDX-License-Identifier: GPL-2.0
//! User-space access to warpdrive accelerator queues.
//!
//! warpdrive devices are uacce-compatible character devices (`/dev/edu-0`,
//! class `uacce`). A device without SVA serves its queues through a
//! *shadow ring*: user space writes command descriptors into a submission
//! ring it has mapped, publishes the ring's tail and calls `KICK`; the
//! kernel validates each command, finds the memory it names (in a
//! registered buffer, mirrored for the device without pins, or else pinned
//! for the command alone) and runs it, and writes one completion per
//! command into the completion ring.
//!
//! - [`Sysfs`] finds devices and their attributes; [`sysfs::select`] picks
//!   one for an algorithm, on this thread's NUMA node first.
//! - [`Queue`] is an open, started queue: [`Queue::run`] runs a batch of
//!   [`Cmd`]s to completion, [`Queue::submit`]/[`Queue::reap`]/
//!   [`Queue::wait`] are the asynchronous pieces, [`Queue::register`]
//!   maps a buffer for the device, without pinning it or charging it to
//!   `RLIMIT_MEMLOCK`, for as long as its [`Registration`] lives.
//! - [`stats`] reads per-queue counters from the status page and from
//!   `/proc/<pid>/fdinfo/<fd>`.
//! - [`Error`] says what went wrong in terms a caller can act on.
//!
//! The ABI is mirrored by hand in [`abi`], with compile-time checks of its
//! layout. All `unsafe` code is in the private `sys` module.
//!
//! ```no_run
//! use std::time::Duration;
//! use warpdrive::{Cmd, Queue, Sysfs};
//!
//! let q = Queue::open_for(&Sysfs::new(), "factorial")?;
//! let cmds: Vec<Cmd> = (1..=10).map(Cmd::factorial).collect();
//! for (n, c) in (1..=10).zip(q.run(&cmds, Duration::from_secs(30))?) {
//!     println!("{n}! = {}", c.ok()?);
//! }
//! # Ok::<(), warpdrive::Error>(())
//! ```

#![deny(unsafe_code)]
#![forbid(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]
#![warn(missing_docs)]

pub mod abi;
pub mod error;
mod queue;
pub mod ring;
pub mod stats;
mod sys;
pub mod sysfs;
pub mod util;

#[cfg(test)]
mod testutil;

pub use error::{Error, Op, Result};
pub use queue::{Queue, Registration, Submitted};
pub use ring::{Cmd, Completion};
pub use stats::{QueueState, QueueStats};
pub use sysfs::{Device, Sysfs};

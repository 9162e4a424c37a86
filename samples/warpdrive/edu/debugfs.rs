// SPDX-License-Identifier: GPL-2.0

//! Test hooks in debugfs, beside warpdrive's statistics of the device:
//! `warpdrive/edu-<id>/hold_device` and `hold_bulk`. Writing 1 holds that engine, which then
//! starts no command until 0 is written; reading says whether it is held.
//!
//! Tests use them to keep commands queued, deterministically, while they move, merge, reclaim
//! or unmap the memory those commands use: nothing in memory management may wait for them.
//! Unbinding releases a held engine.

use crate::{
    commands::{DeviceUnits, EmulatedBulk},
    sched::{Executor, Scheduler},
};
use core::fmt;
use kernel::{
    debugfs::{Dir, File},
    prelude::*,
    sync::Arc,
    uaccess::UserSliceReader,
};

/// The hook files of one device; dropping it removes them.
pub(crate) struct EngineHolds {
    _device: Pin<KBox<File<Arc<Scheduler<DeviceUnits>>>>>,
    _bulk: Pin<KBox<File<Arc<Scheduler<EmulatedBulk>>>>>,
}

impl EngineHolds {
    /// Creates the files in `dir` for the two engines.
    pub(crate) fn new(
        dir: &Dir,
        device: &Arc<Scheduler<DeviceUnits>>,
        bulk: &Arc<Scheduler<EmulatedBulk>>,
    ) -> Result<Self> {
        Ok(Self {
            _device: KBox::pin_init(
                dir.read_write_callback_file(
                    c"hold_device",
                    device.clone(),
                    &show::<DeviceUnits>,
                    &store::<DeviceUnits>,
                ),
                GFP_KERNEL,
            )?,
            _bulk: KBox::pin_init(
                dir.read_write_callback_file(
                    c"hold_bulk",
                    bulk.clone(),
                    &show::<EmulatedBulk>,
                    &store::<EmulatedBulk>,
                ),
                GFP_KERNEL,
            )?,
        })
    }
}

fn show<E: Executor>(sched: &Arc<Scheduler<E>>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    writeln!(f, "{}", u32::from(sched.is_held()))
}

fn store<E: Executor>(sched: &Arc<Scheduler<E>>, reader: &mut UserSliceReader) -> Result {
    let mut buf = [0u8; 4];
    let len = reader.len().min(buf.len());
    reader.read_slice(&mut buf[..len])?;
    match buf.first() {
        Some(b'0') => sched.hold(false),
        Some(b'1') => sched.hold(true),
        _ => return Err(EINVAL),
    }
    Ok(())
}

// SPDX-License-Identifier: GPL-2.0

//! Per-device statistics in debugfs, `warpdrive/<name>-<id>/`:
//!
//! - `queues`: the open queues with their counters, the same ones each queue's fdinfo shows to
//!   its owner;
//! - `buffers`: every registered buffer, with how many of its pages are mapped for the device
//!   now and in how many DMA-contiguous segments.

use crate::{device::WdDevice, file::state_name};
use core::fmt;
use kernel::{
    debugfs::{Dir, File},
    prelude::*,
    sync::Arc,
};

/// The debugfs directory of one device and its files; dropping it removes them.
pub(crate) struct DeviceDebugfs {
    // Declared first: the files go before their directory.
    _queues: Pin<KBox<File<Arc<WdDevice>>>>,
    _buffers: Pin<KBox<File<Arc<WdDevice>>>>,
    dir: Dir,
}

impl DeviceDebugfs {
    /// The device's directory, where its driver may add files of its own.
    pub(crate) fn dir(&self) -> &Dir {
        &self.dir
    }

    /// Creates `<parent>/<node name>/` and its files for `device`.
    pub(crate) fn new(parent: &Dir, device: &Arc<WdDevice>) -> Result<Self> {
        let dir = parent.subdir(device.identity().node_name());
        let queues = KBox::pin_init(
            dir.read_callback_file(c"queues", device.clone(), &show_queues),
            GFP_KERNEL,
        )?;
        let buffers = KBox::pin_init(
            dir.read_callback_file(c"buffers", device.clone(), &show_buffers),
            GFP_KERNEL,
        )?;
        Ok(Self {
            _queues: queues,
            _buffers: buffers,
            dir,
        })
    }
}

fn show_queues(device: &Arc<WdDevice>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    writeln!(
        f,
        "{}: {} of {} queues open",
        device.identity().node_name().to_str().unwrap_or("?"),
        device.open_queues(),
        device.identity().queues
    )?;
    writeln!(
        f,
        "queue state    submitted completed errors in_flight bytes pinned_pages buffers \
         invalidations mapped_pages"
    )?;
    device.for_each_queue(|q| {
        let (status, in_flight) = q.ring().counters();
        writeln!(
            f,
            "{} {} {} {} {} {} {} {} {} {} {}",
            q.index(),
            state_name(status.state),
            status.submitted,
            status.completed,
            status.errors,
            in_flight,
            status.bytes,
            status.pinned_pages,
            status.buffers,
            status.invalidations,
            status.mapped_pages
        )
    })
}

fn show_buffers(device: &Arc<WdDevice>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    writeln!(
        f,
        "queue handle addr len access mapped_pages segments mapping"
    )?;
    device.for_each_queue(|q| {
        q.for_each_buffer(|buffer| {
            let (segments, mapped, streaming) = buffer.segments();
            writeln!(
                f,
                "{} {} {:#x} {} {} {} {} {}",
                q.index(),
                buffer.handle(),
                buffer.addr(),
                buffer.last() - buffer.addr() + 1,
                if buffer.writable() { "rw" } else { "ro" },
                mapped,
                segments,
                if streaming {
                    "per-access"
                } else {
                    "persistent"
                }
            )
        })
    })
}

// SPDX-License-Identifier: GPL-2.0

//! Per-device statistics in debugfs: `warpdrive/<name>-<id>/queues` lists the open queues of a
//! device with their counters, the same ones each queue's fdinfo shows to its owner.

use crate::{device::WdDevice, queue};
use core::fmt;
use kernel::{
    debugfs::{Dir, File},
    prelude::*,
    sync::Arc,
};

/// The debugfs directory of one device and its files; dropping it removes them.
pub(crate) struct DeviceDebugfs {
    // Declared first: the file goes before its directory.
    _queues: Pin<KBox<File<Arc<WdDevice>>>>,
    _dir: Dir,
}

impl DeviceDebugfs {
    /// Creates `<parent>/<node name>/queues` for `device`.
    pub(crate) fn new(parent: &Dir, device: &Arc<WdDevice>) -> Result<Self> {
        let dir = parent.subdir(device.node_name());
        let queues = KBox::pin_init(
            dir.read_callback_file(c"queues", device.clone(), &show_queues),
            GFP_KERNEL,
        )?;
        Ok(Self {
            _queues: queues,
            _dir: dir,
        })
    }
}

fn show_queues(device: &Arc<WdDevice>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    writeln!(
        f,
        "{}: {} of {} queues open",
        device.node_name().to_str().unwrap_or("?"),
        device.open_queues(),
        device.info().queues
    )?;
    writeln!(
        f,
        "queue state    submitted completed errors in_flight bytes pinned_pages buffers \
         invalidations"
    )?;
    device.for_each_queue(|q| {
        let (status, in_flight) = q.counters();
        writeln!(
            f,
            "{} {} {} {} {} {} {} {} {} {}",
            q.index(),
            queue::state_name(status.state),
            status.submitted,
            status.completed,
            status.errors,
            in_flight,
            status.bytes,
            status.pinned_pages,
            status.buffers,
            status.invalidations
        )
    })
}

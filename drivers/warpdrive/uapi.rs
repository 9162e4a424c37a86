// SPDX-License-Identifier: GPL-2.0

//! The numbers of warpdrive's user-space ABI.
//!
//! These mirror `include/uapi/misc/warpdrive.h`, which is the reference; the selftests use the
//! header and check the behaviour behind every number here.

use kernel::ioctl::_IO;

/// The ioctl type of uacce and warpdrive.
pub const IOCTL_TYPE: u32 = b'W' as u32;

/// `WD_CMD_START_Q`, uacce's `UACCE_CMD_START_Q`.
pub const CMD_START_Q: u32 = _IO(IOCTL_TYPE, 0);

/// `WD_CMD_PUT_Q`, uacce's `UACCE_CMD_PUT_Q`.
pub const CMD_PUT_Q: u32 = _IO(IOCTL_TYPE, 1);

/// `WD_IOCTL_BASE`: warpdrive's own ioctl numbers start here.
pub const IOCTL_BASE: u32 = 0x10;

/// `WD_DRIVER_IOCTL_BASE`: driver-private ioctl numbers start here.
pub const DRIVER_IOCTL_BASE: u32 = 0x40;

/// `WD_DEV_SVA`, uacce's `UACCE_DEV_SVA`: the device shares the process address space.
pub const DEV_SVA: u32 = 1 << 0;

/// The largest argument of a driver-private ioctl that warpdrive copies in and out.
pub const MAX_DRIVER_IOCTL_SIZE: usize = 4096;

// SPDX-License-Identifier: GPL-2.0
//! Errors, typed by what the caller can do about them.

use std::fmt;
use std::io;
use std::time::Duration;

use crate::abi;

/// What was being done when an error happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Op {
    /// Listing or reading sysfs.
    Discover,
    /// `open()` of the device node.
    Open,
    /// `WD_CMD_START_Q`.
    Start,
    /// `WD_CMD_PUT_Q`.
    Stop,
    /// `mmap()` of a region.
    Map,
    /// `WD_IOCTL_REGISTER`.
    Register,
    /// `WD_IOCTL_UNREGISTER`.
    Unregister,
    /// `WD_IOCTL_KICK`.
    Kick,
    /// `poll()`.
    Poll,
    /// A driver-private ioctl.
    DriverIoctl,
    /// Reading `/proc`.
    Proc,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Op::Discover => "discovery",
            Op::Open => "open",
            Op::Start => "START_Q",
            Op::Stop => "PUT_Q",
            Op::Map => "mmap",
            Op::Register => "REGISTER",
            Op::Unregister => "UNREGISTER",
            Op::Kick => "KICK",
            Op::Poll => "poll",
            Op::DriverIoctl => "driver ioctl",
            Op::Proc => "/proc",
        })
    }
}

/// Everything that can go wrong, sorted by what to do about it.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// No suitable device: none is registered, none offers the algorithm,
    /// or the named one does not exist.
    NoDevice {
        /// Why, for people.
        reason: String,
    },
    /// Every queue of the device is in use (`EBUSY` from `open()`).
    Busy {
        /// The device(s) tried.
        device: String,
    },
    /// `EACCES` or `EPERM`: the device node's permissions, or a queue fd
    /// that belongs to another process's address space.
    PermissionDenied {
        /// What was refused.
        op: Op,
        /// On what (a path or device name).
        target: String,
        /// The errno (`EACCES` or `EPERM`).
        errno: i32,
    },
    /// A command completed with `-ENOMEM`: pinning its own memory would
    /// exceed `RLIMIT_MEMLOCK`. Only a command's own operands (memory
    /// outside every registered buffer, pinned while the command lives) are
    /// pinned and charged; registered buffers are mirrored for the device
    /// without pins, so registering the memory avoids the limit. (The
    /// kernel also completes a command with `-ENOMEM` when it runs out of
    /// memory, which is rare.)
    ///
    /// `ENOMEM` from `REGISTER` is not this: it means that the kernel
    /// could not map the buffer's pages for the device ([`Error::Io`]).
    MemlockLimit {
        /// The command's opcode (0 if unknown).
        opcode: u16,
        /// Its user_data.
        user_data: u64,
        /// The soft `RLIMIT_MEMLOCK` in bytes when the failure was seen,
        /// `None` if unlimited.
        limit: Option<u64>,
    },
    /// `ENODEV`: the device was removed while the queue was open.
    DeviceGone {
        /// The device's name.
        device: String,
    },
    /// A command completed with a negative status (other than `-ENOMEM`,
    /// which is [`Error::MemlockLimit`]).
    Command {
        /// Its opcode.
        opcode: u16,
        /// Its user_data.
        user_data: u64,
        /// The negative errno from the completion.
        status: i32,
    },
    /// No completion arrived in time.
    Timeout {
        /// How long was waited.
        after: Duration,
    },
    /// The kernel broke the ring protocol, or a sysfs value is malformed.
    Protocol(String),
    /// A caller's mistake that the library catches before the kernel would.
    InvalidInput(String),
    /// Any other errno.
    Io {
        /// What was being done.
        op: Op,
        /// On what.
        target: String,
        /// The error.
        source: io::Error,
    },
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The name of an errno the ABI documents, for messages.
pub fn errno_name(errno: i32) -> Option<&'static str> {
    use rustix::io::Errno;
    let e = Errno::from_raw_os_error(errno);
    Some(match e {
        Errno::PERM => "EPERM",
        Errno::NOENT => "ENOENT",
        Errno::INTR => "EINTR",
        Errno::IO => "EIO",
        Errno::NXIO => "ENXIO",
        Errno::TOOBIG => "E2BIG",
        Errno::AGAIN => "EAGAIN",
        Errno::NOMEM => "ENOMEM",
        Errno::ACCESS => "EACCES",
        Errno::FAULT => "EFAULT",
        Errno::BUSY => "EBUSY",
        Errno::EXIST => "EEXIST",
        Errno::NODEV => "ENODEV",
        Errno::INVAL => "EINVAL",
        Errno::NOSPC => "ENOSPC",
        Errno::NOTTY => "ENOTTY",
        Errno::PROTO => "EPROTO",
        Errno::BADMSG => "EBADMSG",
        Errno::OPNOTSUPP => "EOPNOTSUPP",
        Errno::TIMEDOUT => "ETIMEDOUT",
        Errno::CANCELED => "ECANCELED",
        _ => return None,
    })
}

/// `-EINVAL (Invalid argument)` style text for a negative status.
pub fn status_text(status: i32) -> String {
    let errno = status.saturating_neg();
    let desc = io::Error::from_raw_os_error(errno).to_string();
    // std appends " (os error N)"; the name says it better.
    let desc = desc.split(" (os error").next().unwrap_or(&desc).to_string();
    match errno_name(errno) {
        Some(name) => format!("-{name} ({desc})"),
        None => format!("{status} ({desc})"),
    }
}

/// The edu api's name of an opcode.
pub fn edu_opcode_name(opcode: u16) -> &'static str {
    match opcode {
        abi::WD_EDU_OP_NOP => "nop",
        abi::WD_EDU_OP_FACTORIAL => "factorial",
        abi::WD_EDU_OP_DMA_COPY => "dma_copy",
        abi::WD_EDU_OP_EMU_MEMCPY => "emulated_memcpy",
        abi::WD_EDU_OP_EMU_CRC32C => "emulated_crc32c",
        _ => "unknown",
    }
}

impl Error {
    /// Maps an errno from `op` on `target` to the error a caller can act
    /// on. The same errno means different things for different calls:
    /// `EBUSY` means "no free queue" only for `open()`. No system call's
    /// `ENOMEM` is the memlock limit: `REGISTER` pins nothing, and its
    /// `ENOMEM` means that the kernel could not map the buffer's pages for
    /// the device. The limit shows as a command's `-ENOMEM` completion
    /// instead ([`Error::from_completion`]).
    pub fn from_io(op: Op, target: &str, source: io::Error) -> Self {
        use rustix::io::Errno;
        let errno = source.raw_os_error().unwrap_or(0);
        let target = target.to_string();
        match Errno::from_raw_os_error(errno) {
            Errno::BUSY if op == Op::Open => Error::Busy { device: target },
            Errno::ACCESS | Errno::PERM => Error::PermissionDenied { op, target, errno },
            Errno::NODEV => Error::DeviceGone { device: target },
            Errno::NXIO if op == Op::Open => Error::DeviceGone { device: target },
            Errno::NOENT if op == Op::Open => Error::NoDevice {
                reason: format!("{target}: no such device node"),
            },
            _ => Error::Io { op, target, source },
        }
    }

    /// The error for a command that completed with the negative `status`:
    /// [`Error::MemlockLimit`] for `-ENOMEM` (its own pins would exceed
    /// `RLIMIT_MEMLOCK`, read now), else [`Error::Command`].
    pub fn from_completion(opcode: u16, user_data: u64, status: i32) -> Self {
        if status == -rustix::io::Errno::NOMEM.raw_os_error() {
            return Error::MemlockLimit {
                opcode,
                user_data,
                limit: memlock_limit(),
            };
        }
        Error::Command {
            opcode,
            user_data,
            status,
        }
    }

    /// The errno behind this error, if there is one.
    pub fn errno(&self) -> Option<i32> {
        use rustix::io::Errno;
        match self {
            Error::Busy { .. } => Some(Errno::BUSY.raw_os_error()),
            Error::PermissionDenied { errno, .. } => Some(*errno),
            Error::MemlockLimit { .. } => Some(Errno::NOMEM.raw_os_error()),
            Error::DeviceGone { .. } => Some(Errno::NODEV.raw_os_error()),
            Error::Command { status, .. } => Some(-status),
            Error::Timeout { .. } => Some(Errno::TIMEDOUT.raw_os_error()),
            Error::Io { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

/// The soft `RLIMIT_MEMLOCK` in bytes, `None` if unlimited.
pub fn memlock_limit() -> Option<u64> {
    rustix::process::getrlimit(rustix::process::Resource::Memlock).current
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NoDevice { reason } => write!(f, "no device: {reason}"),
            Error::Busy { device } => write!(f, "{device}: every queue is in use (EBUSY)"),
            Error::PermissionDenied { op, target, errno } => write!(
                f,
                "{target}: {op}: permission denied ({})",
                errno_name(*errno).unwrap_or("?")
            ),
            Error::MemlockLimit {
                opcode,
                user_data,
                limit,
            } => {
                write!(
                    f,
                    "command {} (opcode {opcode}, user_data {user_data:#x}) failed: -ENOMEM: \
                     pinning its memory would exceed RLIMIT_MEMLOCK (",
                    edu_opcode_name(*opcode)
                )?;
                match limit {
                    Some(l) => write!(f, "limit {} KiB)", l / 1024),
                    None => write!(f, "unlimited, so the kernel is out of memory)"),
                }
            }
            Error::DeviceGone { device } => write!(f, "{device}: the device is gone (ENODEV)"),
            Error::Command {
                opcode,
                user_data,
                status,
            } => write!(
                f,
                "command {} (opcode {opcode}, user_data {user_data:#x}) failed: {}",
                edu_opcode_name(*opcode),
                status_text(*status)
            ),
            Error::Timeout { after } => {
                write!(f, "no completion within {:.1} s", after.as_secs_f64())
            }
            Error::Protocol(s) => write!(f, "protocol error: {s}"),
            Error::InvalidInput(s) => write!(f, "invalid input: {s}"),
            Error::Io { op, target, source } => write!(f, "{target}: {op}: {source}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::io::Errno;

    fn io(e: Errno) -> io::Error {
        io::Error::from_raw_os_error(e.raw_os_error())
    }

    #[test]
    fn busy_only_from_open() {
        assert!(matches!(
            Error::from_io(Op::Open, "edu-0", io(Errno::BUSY)),
            Error::Busy { device } if device == "edu-0"
        ));
        assert!(matches!(
            Error::from_io(Op::Kick, "edu-0", io(Errno::BUSY)),
            Error::Io { op: Op::Kick, .. }
        ));
    }

    #[test]
    fn permission() {
        for e in [Errno::ACCESS, Errno::PERM] {
            let err = Error::from_io(Op::Map, "edu-1", io(e));
            assert!(
                matches!(err, Error::PermissionDenied { op: Op::Map, errno, .. } if errno == e.raw_os_error())
            );
            assert_eq!(err.errno(), Some(e.raw_os_error()));
        }
    }

    #[test]
    fn memlock_only_from_commands() {
        // A command's own pin over the limit.
        let err = Error::from_completion(abi::WD_EDU_OP_EMU_MEMCPY, 7, -12);
        assert!(matches!(
            err,
            Error::MemlockLimit { opcode: 4, user_data: 7, limit } if limit == memlock_limit()
        ));
        let s = err.to_string();
        assert!(
            s.contains("RLIMIT_MEMLOCK") && s.contains("emulated_memcpy"),
            "{s}"
        );
        assert!(s.contains("-ENOMEM"), "{s}");
        assert_eq!(err.errno(), Some(12));
        // Other statuses are plain command failures.
        assert!(matches!(
            Error::from_completion(4, 7, -14),
            Error::Command {
                opcode: 4,
                user_data: 7,
                status: -14
            }
        ));
        // REGISTER pins nothing: its ENOMEM is the kernel failing to map the
        // pages for the device, not the memlock limit.
        let err = Error::from_io(Op::Register, "edu-0", io(Errno::NOMEM));
        assert!(matches!(
            err,
            Error::Io {
                op: Op::Register,
                ..
            }
        ));
        assert!(!err.to_string().contains("RLIMIT_MEMLOCK"), "{err}");
        assert_eq!(err.errno(), Some(12));
        assert!(matches!(
            Error::from_io(Op::Open, "edu-0", io(Errno::NOMEM)),
            Error::Io { .. }
        ));
        // Other REGISTER errors keep their meaning.
        for e in [Errno::EXIST, Errno::FAULT, Errno::INTR, Errno::NOSPC] {
            assert!(matches!(
                Error::from_io(Op::Register, "edu-0", io(e)),
                Error::Io {
                    op: Op::Register,
                    ..
                }
            ));
        }
        assert_eq!(errno_name(Errno::INTR.raw_os_error()), Some("EINTR"));
    }

    #[test]
    fn gone_and_missing() {
        for op in [Op::Kick, Op::Start, Op::Register, Op::Map] {
            assert!(matches!(
                Error::from_io(op, "edu-0", io(Errno::NODEV)),
                Error::DeviceGone { .. }
            ));
        }
        assert!(matches!(
            Error::from_io(Op::Open, "/dev/edu-9", io(Errno::NOENT)),
            Error::NoDevice { .. }
        ));
        assert!(matches!(
            Error::from_io(Op::Unregister, "edu-0", io(Errno::NOENT)),
            Error::Io { .. }
        ));
    }

    #[test]
    fn command_text() {
        let e = Error::Command {
            opcode: abi::WD_EDU_OP_EMU_MEMCPY,
            user_data: 7,
            status: -22,
        };
        let s = e.to_string();
        assert!(s.contains("emulated_memcpy"), "{s}");
        assert!(s.contains("-EINVAL (Invalid argument)"), "{s}");
        assert_eq!(e.errno(), Some(22));
        assert_eq!(status_text(-125), "-ECANCELED (Operation canceled)");
    }
}

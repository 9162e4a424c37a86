// SPDX-License-Identifier: GPL-2.0
//! Per-queue statistics: the status page's counters, the `wd-*` keys of
//! `/proc/<pid>/fdinfo/<fd>`, and a scan of every process's queues.

use std::fmt;
use std::fs;
use std::io;
use std::path::Path;

use crate::abi::{
    WdQueueStatus, WD_QUEUE_DEAD, WD_QUEUE_INIT, WD_QUEUE_ORPHANED, WD_QUEUE_STARTED,
};

/// A queue's state (`enum wd_queue_state`, fdinfo `wd-state`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueState {
    /// Open, not started.
    Init,
    /// Between START_Q and PUT_Q.
    Started,
    /// The address space that opened it exited.
    Orphaned,
    /// The device is gone.
    Dead,
    /// A value this library does not know.
    Unknown(u32),
}

impl QueueState {
    /// From the status page's `state`.
    pub fn from_raw(v: u32) -> Self {
        match v {
            WD_QUEUE_INIT => Self::Init,
            WD_QUEUE_STARTED => Self::Started,
            WD_QUEUE_ORPHANED => Self::Orphaned,
            WD_QUEUE_DEAD => Self::Dead,
            v => Self::Unknown(v),
        }
    }

    /// From fdinfo's `wd-state` word.
    pub fn from_name(s: &str) -> Option<Self> {
        Some(match s {
            "init" => Self::Init,
            "started" => Self::Started,
            "orphaned" => Self::Orphaned,
            "dead" => Self::Dead,
            _ => return None,
        })
    }
}

impl fmt::Display for QueueState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Init => f.write_str("init"),
            Self::Started => f.write_str("started"),
            Self::Orphaned => f.write_str("orphaned"),
            Self::Dead => f.write_str("dead"),
            Self::Unknown(v) => write!(f, "state {v}"),
        }
    }
}

/// A queue's counters. From the status page, `device` is empty and
/// `in_flight` is `None`; from fdinfo, every field is set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueStats {
    /// `wd-device`: the device node's name.
    pub device: String,
    /// Which of the device's queues.
    pub queue_index: u32,
    /// The state.
    pub state: QueueState,
    /// Commands accepted by KICK.
    pub submitted: u64,
    /// Completions written, errors included.
    pub completed: u64,
    /// Completions with a negative status.
    pub errors: u64,
    /// Accepted, completion not written yet (fdinfo only).
    pub in_flight: Option<u64>,
    /// Bytes moved by successful commands.
    pub bytes: u64,
    /// Pages pinned now for commands' own memory: operands outside
    /// registered buffers, pinned while their command lives. Registered
    /// buffers are never pinned (see `mapped_pages`).
    pub pinned_pages: u64,
    /// Buffers registered now.
    pub buffers: u64,
    /// Invalidations that took current pages of a registered buffer away
    /// from the device (munmap, migration, reclaim, copy-on-write...).
    pub invalidations: u64,
    /// Pages of registered buffers mapped for the device now, without pins.
    /// They fall when the kernel invalidates a buffer's pages and rise again
    /// when a command faults them back in.
    pub mapped_pages: u64,
}

impl QueueStats {
    /// From a status page snapshot.
    pub fn from_status(st: &WdQueueStatus) -> Self {
        Self {
            device: String::new(),
            queue_index: st.queue_index,
            state: QueueState::from_raw(st.state),
            submitted: st.submitted,
            completed: st.completed,
            errors: st.errors,
            in_flight: None,
            bytes: st.bytes,
            pinned_pages: st.pinned_pages,
            buffers: st.buffers,
            invalidations: st.invalidations,
            mapped_pages: st.mapped_pages,
        }
    }
}

/// Parses the text of an fdinfo file. `None` if it is not a warpdrive
/// queue's (no `wd-device` key) or a `wd-*` value is malformed; keys this
/// library does not know are ignored, so that new ones can be added.
pub fn parse_fdinfo(text: &str) -> Option<QueueStats> {
    let mut s = QueueStats {
        device: String::new(),
        queue_index: 0,
        state: QueueState::Unknown(u32::MAX),
        submitted: 0,
        completed: 0,
        errors: 0,
        in_flight: None,
        bytes: 0,
        pinned_pages: 0,
        buffers: 0,
        invalidations: 0,
        mapped_pages: 0,
    };
    let mut seen_device = false;
    let mut seen_state = false;
    for line in text.lines() {
        let Some((key, val)) = line.split_once(':') else {
            continue;
        };
        if !key.starts_with("wd-") {
            continue;
        }
        let val = val.trim();
        let num = || val.parse::<u64>().ok();
        match key {
            "wd-device" => {
                s.device = val.to_string();
                seen_device = !val.is_empty();
            }
            "wd-queue-index" => s.queue_index = val.parse().ok()?,
            "wd-state" => {
                s.state = QueueState::from_name(val)?;
                seen_state = true;
            }
            "wd-submitted" => s.submitted = num()?,
            "wd-completed" => s.completed = num()?,
            "wd-errors" => s.errors = num()?,
            "wd-in-flight" => s.in_flight = Some(num()?),
            "wd-bytes" => s.bytes = num()?,
            "wd-pinned-pages" => s.pinned_pages = num()?,
            "wd-buffers" => s.buffers = num()?,
            "wd-invalidations" => s.invalidations = num()?,
            "wd-mapped-pages" => s.mapped_pages = num()?,
            _ => {}
        }
    }
    (seen_device && seen_state).then_some(s)
}

/// Reads and parses `<proc>/<pid>/fdinfo/<fd>`: `Ok(None)` if that fd is
/// not a warpdrive queue.
pub fn read_fdinfo(proc_root: &Path, pid: &str, fd: &str) -> io::Result<Option<QueueStats>> {
    let text = fs::read_to_string(proc_root.join(pid).join("fdinfo").join(fd))?;
    Ok(parse_fdinfo(&text))
}

/// One open queue found by [`scan`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenQueue {
    /// The process holding it.
    pub pid: u32,
    /// The process's `comm`.
    pub comm: String,
    /// The fd number in that process.
    pub fd: u32,
    /// Its counters.
    pub stats: QueueStats,
}

/// What [`scan`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scan {
    /// Queues, by pid then fd.
    pub queues: Vec<OpenQueue>,
    /// Processes whose fds could not be read (`EACCES`/`EPERM`): only root
    /// (or ptrace access) sees another user's fds.
    pub denied: Vec<u32>,
}

fn is_denied(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::PermissionDenied
}

/// Scans `<proc>/*/fdinfo/*` for warpdrive queues. Only fds whose link
/// points into `/dev/` are read. Processes that exit during the scan are
/// skipped.
pub fn scan(proc_root: &Path) -> io::Result<Scan> {
    let mut out = Scan::default();
    for ent in fs::read_dir(proc_root)? {
        let Ok(ent) = ent else { continue };
        let name = ent.file_name();
        let Some(pid) = name.to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let pdir = ent.path();
        let fds = match fs::read_dir(pdir.join("fd")) {
            Ok(rd) => rd,
            Err(e) if is_denied(&e) => {
                out.denied.push(pid);
                continue;
            }
            Err(_) => continue,
        };
        let comm = fs::read_to_string(pdir.join("comm"))
            .map(|s| s.trim_end().to_string())
            .unwrap_or_default();
        let mut denied = false;
        for fd in fds.flatten() {
            let fdname = fd.file_name();
            let Some(fdnum) = fdname.to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            match fs::read_link(fd.path()) {
                Ok(t) if t.starts_with("/dev/") => {}
                Ok(_) => continue,
                Err(e) => {
                    denied |= is_denied(&e);
                    continue;
                }
            }
            match read_fdinfo(proc_root, &pid.to_string(), &fdnum.to_string()) {
                Ok(Some(stats)) => out.queues.push(OpenQueue {
                    pid,
                    comm: comm.clone(),
                    fd: fdnum,
                    stats,
                }),
                Ok(None) => {}
                Err(e) => denied |= is_denied(&e),
            }
        }
        if denied {
            out.denied.push(pid);
        }
    }
    out.queues.sort_by_key(|q| (q.pid, q.fd));
    out.denied.sort_unstable();
    Ok(out)
}

/// Parses `VmPin:` from the text of `/proc/<pid>/status`, in kB.
pub fn parse_vmpin_kb(status: &str) -> Option<u64> {
    status.lines().find_map(|l| {
        let v = l.strip_prefix("VmPin:")?.trim();
        v.strip_suffix("kB")?.trim().parse().ok()
    })
}

/// `VmPin` of this process in kB: pages pinned and charged to it. Of
/// warpdrive's, only commands' own pins count: registered buffers are
/// mirrored for the device without pins.
pub fn vmpin_kb() -> io::Result<u64> {
    let s = fs::read_to_string("/proc/self/status")?;
    parse_vmpin_kb(&s).ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempDir;

    const FDINFO: &str = "pos:\t0\nflags:\t02100002\nmnt_id:\t24\nino:\t1043\n\
        wd-device:\tedu-0\nwd-queue-index:\t2\nwd-state:\tstarted\n\
        wd-submitted:\t1200\nwd-completed:\t1197\nwd-errors:\t3\nwd-in-flight:\t3\n\
        wd-bytes:\t78643200\nwd-pinned-pages:\t6\nwd-buffers:\t4\nwd-invalidations:\t1\n\
        wd-mapped-pages:\t256\n";

    #[test]
    fn parses_fdinfo() {
        let s = parse_fdinfo(FDINFO).unwrap();
        assert_eq!(
            s,
            QueueStats {
                device: "edu-0".into(),
                queue_index: 2,
                state: QueueState::Started,
                submitted: 1200,
                completed: 1197,
                errors: 3,
                in_flight: Some(3),
                bytes: 78643200,
                pinned_pages: 6,
                buffers: 4,
                invalidations: 1,
                mapped_pages: 256,
            }
        );
    }

    #[test]
    fn fdinfo_edge_cases() {
        // Not a queue.
        assert_eq!(parse_fdinfo("pos:\t0\nflags:\t02\nmnt_id:\t1\n"), None);
        // Dead queue, unknown extra key.
        let t = FDINFO.replace("started", "dead") + "wd-future-key:\tx\n";
        assert_eq!(parse_fdinfo(&t).unwrap().state, QueueState::Dead);
        // Malformed values are not guessed at.
        assert_eq!(parse_fdinfo(&FDINFO.replace("1200", "12x")), None);
        assert_eq!(parse_fdinfo(&FDINFO.replace("started", "sleepy")), None);
        assert_eq!(
            parse_fdinfo(&FDINFO.replace("wd-mapped-pages:\t256", "wd-mapped-pages:\t-1")),
            None
        );
        // A kernel from before wd-mapped-pages: the line is simply absent.
        let old = FDINFO.replace("wd-mapped-pages:\t256\n", "");
        let s = parse_fdinfo(&old).unwrap();
        assert_eq!((s.mapped_pages, s.invalidations), (0, 1));
        // Spaces instead of a tab are fine.
        let t = FDINFO.replace(":\t", ":   ");
        assert_eq!(parse_fdinfo(&t).unwrap().bytes, 78643200);
        for (raw, name) in [(0, "init"), (1, "started"), (2, "orphaned"), (3, "dead")] {
            assert_eq!(QueueState::from_raw(raw).to_string(), name);
            assert_eq!(QueueState::from_name(name), Some(QueueState::from_raw(raw)));
        }
        assert_eq!(QueueState::from_raw(9), QueueState::Unknown(9));
    }

    #[test]
    fn status_page_conversion() {
        let st = WdQueueStatus {
            magic: crate::abi::WD_QUEUE_STATUS_MAGIC,
            state: 1,
            queue_index: 3,
            submitted: 5,
            completed: 4,
            errors: 1,
            bytes: 100,
            pinned_pages: 2,
            buffers: 1,
            invalidations: 7,
            mapped_pages: 256,
            rsvd: 0,
        };
        let s = QueueStats::from_status(&st);
        assert_eq!(
            (s.queue_index, s.state, s.submitted, s.in_flight),
            (3, QueueState::Started, 5, None)
        );
        assert_eq!(
            (s.pinned_pages, s.buffers, s.invalidations, s.mapped_pages),
            (2, 1, 7, 256)
        );
    }

    #[test]
    fn scans_a_fake_proc() {
        let t = TempDir::new();
        let p = t.path();
        for (pid, comm) in [("100", "app"), ("200", "other")] {
            fs::create_dir_all(p.join(pid).join("fd")).unwrap();
            fs::create_dir_all(p.join(pid).join("fdinfo")).unwrap();
            fs::write(p.join(pid).join("comm"), format!("{comm}\n")).unwrap();
        }
        fs::create_dir_all(p.join("self")).unwrap();
        let link = |pid: &str, fd: &str, target: &str, info: &str| {
            std::os::unix::fs::symlink(target, p.join(pid).join("fd").join(fd)).unwrap();
            fs::write(p.join(pid).join("fdinfo").join(fd), info).unwrap();
        };
        link("100", "0", "/dev/null", "pos:\t0\n");
        link("100", "7", "/dev/edu-0", FDINFO);
        link(
            "100",
            "3",
            "/dev/edu-1 (deleted)",
            &FDINFO.replace("edu-0", "edu-1"),
        );
        link("200", "4", "socket:[1]", FDINFO);
        let s = scan(p).unwrap();
        let got: Vec<(u32, u32, &str, &str)> = s
            .queues
            .iter()
            .map(|q| (q.pid, q.fd, q.comm.as_str(), q.stats.device.as_str()))
            .collect();
        assert_eq!(got, [(100, 3, "app", "edu-1"), (100, 7, "app", "edu-0")]);
        assert!(s.denied.is_empty());
    }

    #[test]
    fn vmpin() {
        let st = "Name:\tx\nVmLck:\t       0 kB\nVmPin:\t    1024 kB\nVmHWM:\t 1 kB\n";
        assert_eq!(parse_vmpin_kb(st), Some(1024));
        assert_eq!(parse_vmpin_kb("Name:\tx\n"), None);
        // This process has no pins, on the host.
        assert_eq!(vmpin_kb().ok(), Some(0));
    }
}

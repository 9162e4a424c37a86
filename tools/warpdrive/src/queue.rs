// SPDX-License-Identifier: GPL-2.0
//! A started shadow-ring queue: submission, completion, waiting, buffer
//! registration and statistics.

use std::cell::Cell;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::Path;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;

use crate::abi::{
    WdEduFactorial, WdQueueStatus, WdRegister, WD_QUEUE_STATUS_MAGIC, WD_REGION_DUS,
    WD_REGION_MMIO, WD_REGISTER_WRITE,
};
use crate::error::{Error, Op, Result};
use crate::ring::{self, Cmd, Completion};
use crate::stats::{self, QueueState, QueueStats};
use crate::sys::{self, Mapping, RingMap};
use crate::sysfs::{self, Device, Sysfs};

/// How long a fence waits for a gone device's commands to be counted
/// completed before giving up.
const FENCE_WAIT: Duration = Duration::from_secs(60);

/// An open, started queue with its status page and rings mapped.
///
/// Methods take `&self`, so that a [`Registration`] can borrow the queue
/// while commands are submitted. The queue is `Send` but not `Sync`: the
/// ring has one producer and one consumer, this thread.
///
/// The queue is an fd: it works with `poll()`/epoll through [`AsFd`], and
/// readiness (`POLLIN`) means completions are waiting.
///
/// # Device removal
///
/// When the device goes away, the queue's ioctls fail with `ENODEV`, poll
/// reports `POLLHUP | POLLERR`, and the kernel zaps both mappings, so that
/// touching the ring raises SIGBUS. The queue stops touching the mappings
/// once it has seen any of these ([`Queue::is_gone`]); [`Queue::wait`]
/// polls before it looks at the ring. What remains is the window between a
/// successful call and the next access to the ring, which the ABI leaves to
/// user space; [`Queue::fdinfo`] stays readable throughout.
#[derive(Debug)]
pub struct Queue {
    status: Mapping,
    ring: RingMap,
    fd: OwnedFd,
    name: String,
    gone: Cell<bool>,
    outstanding: Cell<u64>,
    seq: Cell<u32>,
}

/// What [`Queue::submit`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Submitted {
    /// Commands written to the submission ring and published (the first
    /// `queued` of those given; the ring had room for no more).
    pub queued: usize,
    /// Descriptors KICK took. Fewer than are pending when the completion
    /// ring is short of room: reap, then [`Queue::kick`] again.
    pub accepted: u32,
}

/// A registered buffer, unregistered when dropped.
///
/// Registration mirrors the pages for the device (HMM: the kernel looks
/// them up and maps them without pinning them), instead of pinning them for
/// every command. They are not charged to `RLIMIT_MEMLOCK` and do not show
/// in `VmPin`; the status page counts them in `mapped_pages`. Registration
/// does not borrow the memory: the kernel follows the address space (see
/// `WD_IOCTL_REGISTER`), taking pages away from the device when they are
/// unmapped, migrated or reclaimed and faulting them back in for the next
/// command, and commands borrow what they use.
#[derive(Debug)]
#[must_use = "dropping a Registration unregisters the buffer"]
pub struct Registration<'q> {
    queue: &'q Queue,
    handle: u32,
    addr: u64,
    len: u64,
    done: bool,
}

impl Registration<'_> {
    /// The kernel's handle.
    pub fn handle(&self) -> u32 {
        self.handle
    }

    /// Start address.
    pub fn addr(&self) -> u64 {
        self.addr
    }

    /// Length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the buffer is empty (never: REGISTER refuses length 0).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Unregisters now and reports the result (dropping does the same and
    /// ignores it). Waits for the commands in flight that use the buffer.
    pub fn unregister(mut self) -> Result<()> {
        self.done = true;
        self.queue.unregister(self.handle)
    }
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.queue.unregister(self.handle);
        }
    }
}

/// Stops the queue if a run leaves with commands in flight, so that no
/// command can touch the memory it borrowed once the run returns.
struct Fence<'q> {
    queue: &'q Queue,
    armed: bool,
}

impl Drop for Fence<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.queue.fence();
        }
    }
}

impl Queue {
    /// Opens, starts and maps a queue of `dev`.
    ///
    /// Errors: [`Error::Busy`] when all its queues are in use,
    /// [`Error::PermissionDenied`] for the node's permissions,
    /// [`Error::DeviceGone`], [`Error::NoDevice`] for a device this library
    /// cannot drive (not a shadow-ring device).
    pub fn open(dev: &Device) -> Result<Self> {
        if !dev.is_usable() {
            return Err(Error::NoDevice {
                reason: format!(
                    "{} is not a shadow-ring device (flags {:?}, region_dus_size {:?})",
                    dev.name, dev.flags, dev.region_dus_size
                ),
            });
        }
        let page = rustix::param::page_size() as u64;
        Self::open_node(
            &dev.name,
            &dev.node,
            dev.region_mmio_size.unwrap_or(page),
            dev.region_dus_size.unwrap_or(0),
        )
    }

    /// Opens the first free queue of the devices offering `alg`, in the
    /// order of [`sysfs::candidates`] (same NUMA node as this thread first).
    /// Falls through to the next device when one turns out busy.
    pub fn open_for(sysfs: &Sysfs, alg: &str) -> Result<Self> {
        let devs = sysfs.devices()?;
        let cands = sysfs::candidates(&devs, alg, sysfs.current_node())?;
        let mut busy = Vec::new();
        for d in cands {
            match Self::open(d) {
                Ok(q) => return Ok(q),
                Err(Error::Busy { .. }) => busy.push(d.name.as_str()),
                Err(e) => return Err(e),
            }
        }
        Err(Error::Busy {
            device: busy.join(", "),
        })
    }

    /// Opens the queue behind device node `node` of the device called
    /// `name`, whose regions are `mmio_len` and `dus_len` bytes.
    pub fn open_node(name: &str, node: &Path, mmio_len: u64, dus_len: u64) -> Result<Self> {
        let to_usize =
            |v: u64| usize::try_from(v).map_err(|_| Error::Protocol(format!("region size {v}")));
        let (mmio_len, dus_len) = (to_usize(mmio_len)?, to_usize(dus_len)?);
        if mmio_len < size_of::<WdQueueStatus>() || dus_len < size_of::<crate::abi::WdRingHeader>()
        {
            return Err(Error::Protocol(format!(
                "{name}: region sizes {mmio_len} and {dus_len}"
            )));
        }
        let fd =
            rustix::fs::open(node, OFlags::RDWR | OFlags::CLOEXEC, Mode::empty()).map_err(|e| {
                match Error::from_io(Op::Open, &node.to_string_lossy(), e.into()) {
                    Error::Busy { .. } => Error::Busy {
                        device: name.to_string(),
                    },
                    err => err,
                }
            })?;
        let err = |op: Op| move |e: io::Error| Error::from_io(op, name, e);
        sys::start_q(fd.as_fd()).map_err(err(Op::Start))?;
        // Read-only: nothing here writes the status page. (A writable
        // mapping would work too; the kernel never reads it back.)
        let status =
            Mapping::new(fd.as_fd(), WD_REGION_MMIO, mmio_len, false).map_err(err(Op::Map))?;
        let magic = sys::read_status(&status).magic;
        if magic != WD_QUEUE_STATUS_MAGIC {
            return Err(Error::Protocol(format!(
                "{name}: status page magic {magic:#x}"
            )));
        }
        let dus = Mapping::new(fd.as_fd(), WD_REGION_DUS, dus_len, true).map_err(err(Op::Map))?;
        let layout = ring::check_header(&sys::read_ring_header(&dus), dus_len)?;
        Ok(Self {
            status,
            ring: RingMap::new(dus, layout.0, layout.1),
            fd,
            name: name.to_string(),
            gone: Cell::new(false),
            outstanding: Cell::new(0),
            seq: Cell::new(0),
        })
    }

    /// The device's name, e.g. `edu-0`.
    pub fn device_name(&self) -> &str {
        &self.name
    }

    /// Submission ring size.
    pub fn sq_entries(&self) -> u32 {
        self.ring.sq_entries()
    }

    /// Completion ring size.
    pub fn cq_entries(&self) -> u32 {
        self.ring.cq_entries()
    }

    /// Whether the queue has seen its device go away. From then on it no
    /// longer touches the mappings, which the kernel has zapped.
    pub fn is_gone(&self) -> bool {
        self.gone.get()
    }

    fn check_alive(&self) -> Result<()> {
        if self.gone.get() {
            return Err(Error::DeviceGone {
                device: self.name.clone(),
            });
        }
        Ok(())
    }

    fn io_err(&self, op: Op, e: io::Error) -> Error {
        let err = Error::from_io(op, &self.name, e);
        if matches!(err, Error::DeviceGone { .. }) {
            self.gone.set(true);
        }
        err
    }

    /// The status page, each field read once.
    pub fn raw_status(&self) -> Result<WdQueueStatus> {
        self.check_alive()?;
        Ok(sys::read_status(&self.status))
    }

    /// The status page's counters.
    pub fn status(&self) -> Result<QueueStats> {
        let mut s = QueueStats::from_status(&self.raw_status()?);
        s.device.clone_from(&self.name);
        Ok(s)
    }

    /// The counters from `/proc/self/fdinfo/<fd>`, which stay readable
    /// after the device is gone and include the commands in flight.
    pub fn fdinfo(&self) -> Result<QueueStats> {
        let fd = self.fd.as_raw_fd().to_string();
        stats::read_fdinfo(Path::new("/proc"), "self", &fd)
            .map_err(|e| Error::from_io(Op::Proc, "/proc/self/fdinfo", e))?
            .ok_or_else(|| Error::Protocol(format!("fdinfo of fd {fd} has no wd-* keys")))
    }

    /// `WD_CMD_START_Q` (the queue is started by `open`; this restarts a
    /// stopped one).
    pub fn start(&self) -> Result<()> {
        sys::start_q(self.fd.as_fd()).map_err(|e| self.io_err(Op::Start, e))
    }

    /// `WD_CMD_PUT_Q`: stops the queue, cancelling what it has not started
    /// and waiting for what runs.
    pub fn stop(&self) -> Result<()> {
        sys::put_q(self.fd.as_fd()).map_err(|e| self.io_err(Op::Stop, e))
    }

    /// Registers `buf` for commands, writable by the device if `writable`.
    ///
    /// Nothing is pinned: the kernel faults the range in and maps it for
    /// the device, so the registration is not charged to `RLIMIT_MEMLOCK`
    /// (only commands' own operands are, see [`Error::MemlockLimit`]).
    /// Writable registrations of file mappings are allowed.
    ///
    /// Errors: [`Error::PermissionDenied`] from a process that does not own
    /// the queue, [`Error::DeviceGone`], and [`Error::Io`] for the others:
    /// `EEXIST` for an overlap, `E2BIG`, `ENOSPC`, `EINVAL`, `EFAULT` (not
    /// mapped with the access asked for, or one of a queue's own regions),
    /// `ENOMEM` (the kernel could not map the pages for the device; this is
    /// not the memlock limit), `EINTR` (killed while faulting it in).
    pub fn register(&self, buf: &[u8], writable: bool) -> Result<Registration<'_>> {
        let mut reg = WdRegister {
            addr: buf.as_ptr() as usize as u64,
            len: buf.len() as u64,
            flags: if writable { WD_REGISTER_WRITE } else { 0 },
            handle: 0,
        };
        sys::register(self.fd.as_fd(), &mut reg).map_err(|e| self.io_err(Op::Register, e))?;
        Ok(Registration {
            queue: self,
            handle: reg.handle,
            addr: reg.addr,
            len: reg.len,
            done: false,
        })
    }

    fn unregister(&self, handle: u32) -> Result<()> {
        sys::unregister(self.fd.as_fd(), handle).map_err(|e| self.io_err(Op::Unregister, e))
    }

    /// `WD_EDU_CMD_FACTORIAL`: n! on the edu device's factorial unit,
    /// synchronously, outside the ring.
    pub fn edu_factorial_ioctl(&self, n: u32) -> Result<u32> {
        let mut arg = WdEduFactorial { n, result: 0 };
        sys::edu_factorial(self.fd.as_fd(), &mut arg)
            .map_err(|e| self.io_err(Op::DriverIoctl, e))?;
        Ok(arg.result)
    }

    /// Published descriptors the kernel has not taken yet.
    pub fn sq_pending(&self) -> Result<u32> {
        self.check_alive()?;
        let (tail, head) = (self.ring.sq_tail(), self.ring.sq_head());
        ring::room(self.sq_entries(), tail, head)
            .map(|room| self.sq_entries() - room)
            .ok_or_else(|| self.corrupt("sq", tail, head))
    }

    /// Completions written and not reaped yet.
    pub fn ready(&self) -> Result<u32> {
        self.check_alive()?;
        let (tail, head) = (self.ring.cq_tail(), self.ring.cq_head());
        ring::room(self.cq_entries(), tail, head)
            .map(|room| self.cq_entries() - room)
            .ok_or_else(|| self.corrupt("cq", tail, head))
    }

    /// Commands submitted with [`Queue::submit`] and not reaped yet.
    pub fn outstanding(&self) -> u64 {
        self.outstanding.get()
    }

    fn corrupt(&self, ring: &str, tail: u32, head: u32) -> Error {
        Error::Protocol(format!("{}: {ring} tail {tail}, head {head}", self.name))
    }

    /// Writes as many of `cmds` as the submission ring has room for, with
    /// user_data from `tag`, then publishes them with one release store of
    /// sq_tail. Returns how many it wrote.
    fn push(&self, cmds: &[Cmd<'_>], tag: impl Fn(usize, &Cmd<'_>) -> u64) -> Result<usize> {
        let n = (self.sq_entries() - self.sq_pending()?) as usize;
        let n = n.min(cmds.len());
        let tail = self.ring.sq_tail();
        for (i, c) in cmds[..n].iter().enumerate() {
            let mut d = *c.desc();
            d.user_data = tag(i, c);
            self.ring.write_desc(tail.wrapping_add(i as u32), &d);
        }
        if n > 0 {
            self.ring.set_sq_tail(tail.wrapping_add(n as u32));
        }
        Ok(n)
    }

    /// `WD_IOCTL_KICK`: hands the published descriptors to the kernel and
    /// returns how many it took (fewer than pending under back-pressure).
    pub fn kick(&self) -> Result<u32> {
        self.check_alive()?;
        sys::kick(self.fd.as_fd()).map_err(|e| self.io_err(Op::Kick, e))
    }

    /// Queues `cmds` (as many as fit) with their own user_data, and kicks.
    /// Returns at once; reap the completions with [`Queue::reap`]. The
    /// commands borrow their buffers for `'static` because they may run
    /// after this returns.
    pub fn submit(&self, cmds: &[Cmd<'static>]) -> Result<Submitted> {
        let queued = self.push(cmds, |_, c| c.desc().user_data)?;
        self.outstanding.set(self.outstanding.get() + queued as u64);
        let accepted = if self.sq_pending()? > 0 {
            self.kick()?
        } else {
            0
        };
        Ok(Submitted { queued, accepted })
    }

    /// Reads up to `max` completions, then hands their slots back with a
    /// release store of cq_head.
    pub fn reap(&self, max: usize) -> Result<Vec<Completion>> {
        let n = (self.ready()? as usize).min(max);
        let head = self.ring.cq_head();
        let out = (0..n)
            .map(|i| {
                let c = self.ring.read_cqe(head.wrapping_add(i as u32));
                Completion {
                    user_data: c.user_data,
                    result: c.result,
                    status: c.status,
                    opcode: None,
                }
            })
            .collect();
        if n > 0 {
            self.ring.set_cq_head(head.wrapping_add(n as u32));
        }
        self.outstanding
            .set(self.outstanding.get().saturating_sub(n as u64));
        Ok(out)
    }

    /// Waits with `poll()` until a completion is waiting, for at most
    /// `timeout` (`None`: for ever). Returns how many are waiting, 0 on
    /// timeout.
    ///
    /// Errors: [`Error::DeviceGone`] when poll reports `POLLHUP` or
    /// `POLLERR` (the device was removed; its completions are lost with
    /// it). poll() comes before every look at the ring: the kernel wakes
    /// pollers before it zaps the mappings, so a waiter learns that the
    /// device is gone instead of taking SIGBUS.
    pub fn wait(&self, timeout: Option<Duration>) -> Result<u32> {
        self.check_alive()?;
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut next = Some(Duration::ZERO);
        loop {
            self.poll(next)?;
            let n = self.ready()?;
            if n > 0 {
                return Ok(n);
            }
            next = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if next == Some(Duration::ZERO) {
                return Ok(0);
            }
        }
    }

    /// One poll() for `POLLIN`, for at most `timeout`; fails with
    /// [`Error::DeviceGone`] on `POLLERR`/`POLLHUP`.
    fn poll(&self, timeout: Option<Duration>) -> Result<()> {
        let ts = timeout.map(|t| {
            Timespec::try_from(t).unwrap_or(Timespec {
                tv_sec: i64::MAX,
                tv_nsec: 0,
            })
        });
        let mut pfd = [PollFd::new(&self.fd, PollFlags::IN)];
        match rustix::event::poll(&mut pfd, ts.as_ref()) {
            Ok(_) | Err(Errno::INTR) => {}
            Err(e) => return Err(self.io_err(Op::Poll, e.into())),
        }
        if pfd[0]
            .revents()
            .intersects(PollFlags::ERR | PollFlags::HUP | PollFlags::NVAL)
        {
            self.gone.set(true);
            return Err(Error::DeviceGone {
                device: self.name.clone(),
            });
        }
        Ok(())
    }

    /// Runs `cmds` to completion; see [`Queue::run_with`].
    pub fn run(&self, cmds: &[Cmd<'_>], timeout: Duration) -> Result<Vec<Completion>> {
        self.run_with(cmds, timeout, |_, _| {})
    }

    /// Runs one command and returns its result, or the error of its
    /// completion ([`Error::Command`], [`Error::MemlockLimit`]).
    pub fn run_one(&self, cmd: Cmd<'_>, timeout: Duration) -> Result<u64> {
        self.run(std::slice::from_ref(&cmd), timeout)?[0].ok()
    }

    /// Runs `cmds` to completion, however many there are: writes what fits
    /// in the submission ring, kicks, reaps, waits with `poll()` and goes
    /// on until every command has completed; KICK taking fewer than pending
    /// (back-pressure from the completion ring) is handled by reaping and
    /// kicking again. Element `i` of the result is the completion of
    /// `cmds[i]`, matched by a user_data this function assigns; a failed
    /// command is a completion with a negative status, not an error (see
    /// [`Completion::ok`]). `on_done` sees each completion as it arrives.
    ///
    /// Fails with [`Error::Timeout`] if no completion arrives for `timeout`,
    /// and with [`Error::InvalidInput`] while commands from
    /// [`Queue::submit`] are outstanding. Whatever happens, including a
    /// panic in `on_done`, no command is in flight when this returns: on
    /// failure it stops the queue (which cancels what has not started and
    /// waits for what runs) and starts it again.
    pub fn run_with(
        &self,
        cmds: &[Cmd<'_>],
        timeout: Duration,
        mut on_done: impl FnMut(usize, &Completion),
    ) -> Result<Vec<Completion>> {
        self.check_alive()?;
        if self.outstanding.get() != 0 {
            return Err(Error::InvalidInput(format!(
                "{} commands from submit() are not reaped yet",
                self.outstanding.get()
            )));
        }
        let n = cmds.len();
        if u32::try_from(n).is_err() {
            return Err(Error::InvalidInput(format!("{n} commands in one run")));
        }
        let seq = self.seq.get().wrapping_add(1);
        self.seq.set(seq);
        let mut out: Vec<Option<Completion>> = vec![None; n];
        let mut fence = Fence {
            queue: self,
            armed: true,
        };
        let (mut pushed, mut done) = (0usize, 0usize);
        let mut last = Instant::now();
        // Refill once the completion ring has room for a batch (an eighth
        // of it, or the rest), not after every completion: each KICK is a
        // system call.
        let cap = self.cq_entries() as usize;
        let batch = (cap / 8).max(1);
        let mut kicked_empty = false;
        while done < n {
            let pending = self.sq_pending()? as usize;
            let in_flight = pushed - pending - done;
            let want = batch.min(n - pushed);
            if pushed < n && (in_flight + pending + want <= cap || in_flight == 0) {
                let base = pushed;
                pushed += self.push(&cmds[base..], |i, _| ring::run_tag(seq, (base + i) as u32))?;
                kicked_empty = false;
            }
            if self.sq_pending()? > 0 && !kicked_empty {
                // Back-pressure: what KICK leaves waits for reaped room.
                kicked_empty = self.kick()? == 0;
            }
            let got = self.reap(usize::MAX)?;
            for c in &got {
                let i = ring::run_index(seq, c.user_data)
                    .map(|i| i as usize)
                    .filter(|&i| i < n && out[i].is_none())
                    .ok_or_else(|| {
                        Error::Protocol(format!(
                            "{}: completion with unknown or repeated user_data {:#x}",
                            self.name, c.user_data
                        ))
                    })?;
                let c = Completion {
                    opcode: Some(cmds[i].opcode()),
                    ..*c
                };
                out[i] = Some(c);
                on_done(i, &c);
            }
            done += got.len();
            if !got.is_empty() {
                last = Instant::now();
                kicked_empty = false;
                continue;
            }
            let pending = self.sq_pending()? as usize;
            if pushed - pending == done {
                // Nothing in flight: KICK must take something.
                if pending > 0 {
                    return Err(Error::Protocol(format!(
                        "{}: {done} of {n} done, {pending} pending, KICK takes none",
                        self.name
                    )));
                }
                continue;
            }
            let left = timeout.saturating_sub(last.elapsed());
            if left.is_zero() || self.wait(Some(left))? == 0 {
                return Err(Error::Timeout { after: timeout });
            }
        }
        fence.armed = false;
        Ok(out.into_iter().map(|c| c.expect("all done")).collect())
    }

    /// Makes sure no command is in flight, after a run failed part-way:
    /// PUT_Q cancels what has not started and waits for what runs; the
    /// leftover completions and unconsumed descriptors are dropped and the
    /// queue is started again. If the device is gone, waits until fdinfo
    /// counts every command completed. If neither can be established the
    /// process aborts: returning would let the device write into memory
    /// that the caller owns again.
    fn fence(&self) {
        if !self.gone.get() {
            match sys::put_q(self.fd.as_fd()) {
                Ok(()) => {
                    self.ring.set_cq_head(self.ring.cq_tail());
                    self.ring.set_sq_tail(self.ring.sq_head());
                    self.outstanding.set(0);
                    let _ = self.start();
                    return;
                }
                Err(e) => {
                    let _ = self.io_err(Op::Stop, e);
                }
            }
        }
        let end = Instant::now() + FENCE_WAIT;
        while Instant::now() < end {
            match self.fdinfo() {
                Ok(s)
                    if s.in_flight == Some(0)
                        && (s.state == QueueState::Dead || !self.gone.get()) =>
                {
                    return;
                }
                Ok(_) => std::thread::sleep(Duration::from_millis(10)),
                Err(_) => break,
            }
        }
        eprintln!(
            "warpdrive: {}: cannot establish that no command still writes to borrowed memory; aborting",
            self.name
        );
        std::process::abort();
    }
}

impl AsFd for Queue {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for Queue {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

// SPDX-License-Identifier: GPL-2.0
//! wdctl: lists warpdrive devices and open queues, and runs work on them.

#![forbid(unsafe_code)]

mod progress;

use std::ffi::OsString;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use warpdrive::abi::WD_EDU_BULK_MAX;
use warpdrive::error::errno_name;
use warpdrive::util::{self, format_size};
use warpdrive::{stats, Cmd, Error, Op, Queue, Sysfs};

use progress::Progress;

const USAGE: &str = "\
usage: wdctl [--sysfs DIR] [--dev DIR] [--proc DIR] COMMAND

commands:
  list                        devices and their attributes
  queues                      open queues of all processes, with counters
  run factorial N             N! on the factorial unit, through the ring
  run memcpy --size SIZE | --file PATH [--out PATH]
                              copy with the bulk engine, and verify
  run crc32c --size SIZE | --file PATH
                              CRC-32C with the bulk engine, and verify
  help                        this text

options of run:
  --device NAME               use this device (default: the best one with
                              the algorithm, on this CPU's NUMA node first)
  --chunk SIZE                bytes per command (default 4M, at most 256M)
  --register                  memcpy: register the buffers once instead of
                              pinning them for every command; registered
                              buffers are mapped for the device without
                              pins, so RLIMIT_MEMLOCK does not limit them
  --quiet                     no progress bar

SIZE takes K, M, G suffixes (powers of 1024). --sysfs, --dev and --proc
point at another sysfs root (default /sys), device directory (/dev) and
procfs (/proc).

exit status: 0 ok, 1 other failure, 2 usage, 3 no device, 4 busy,
5 permission denied, 6 memlock limit (a command's own pins), 7 device
gone, 8 command failed or result wrong
";

/// How long a run waits for the next completion.
const TIMEOUT: Duration = Duration::from_secs(120);
/// The largest window of a transfer held in memory at once.
const MAX_WINDOW: u64 = 64 << 20;
const DEFAULT_CHUNK: u64 = 4 << 20;
const PAGE: u64 = 4096;

#[derive(Debug, PartialEq, Eq)]
struct Global {
    sys: PathBuf,
    dev: PathBuf,
    proc: PathBuf,
}

#[derive(Debug, PartialEq, Eq)]
enum Source {
    Size(u64),
    File(PathBuf),
}

#[derive(Debug, PartialEq, Eq)]
struct RunOpts {
    device: Option<String>,
    chunk: u64,
    register: bool,
    quiet: bool,
    source: Option<Source>,
    out: Option<PathBuf>,
}

#[derive(Debug, PartialEq, Eq)]
enum Command {
    List,
    Queues,
    Factorial { n: u32, device: Option<String> },
    Memcpy(RunOpts),
    Crc32c(RunOpts),
    Help,
}

/// What ends a command, with the exit status it maps to.
#[derive(Debug)]
enum Fail {
    Usage(String),
    Lib(Error),
    Wrong(String),
    Other(String),
}

impl From<Error> for Fail {
    fn from(e: Error) -> Self {
        Fail::Lib(e)
    }
}

impl From<lexopt::Error> for Fail {
    fn from(e: lexopt::Error) -> Self {
        Fail::Usage(e.to_string())
    }
}

fn size_arg(p: &mut lexopt::Parser, opt: &str) -> Result<u64, Fail> {
    let v = p.value()?;
    let s = v.to_string_lossy();
    util::parse_size(&s).ok_or_else(|| Fail::Usage(format!("{opt}: bad size {s:?}")))
}

fn parse(args: impl IntoIterator<Item = OsString>) -> Result<(Global, Command), Fail> {
    use lexopt::prelude::*;
    let mut p = lexopt::Parser::from_args(args);
    let mut g = Global {
        sys: "/sys".into(),
        dev: "/dev".into(),
        proc: "/proc".into(),
    };
    let mut words: Vec<String> = Vec::new();
    let mut o = RunOpts {
        device: None,
        chunk: DEFAULT_CHUNK,
        register: false,
        quiet: false,
        source: None,
        out: None,
    };
    let mut help = false;
    while let Some(arg) = p.next()? {
        match arg {
            Long("sysfs") => g.sys = p.value()?.into(),
            Long("dev") => g.dev = p.value()?.into(),
            Long("proc") => g.proc = p.value()?.into(),
            Long("device") | Short('d') => o.device = Some(p.value()?.string()?),
            Long("chunk") => o.chunk = size_arg(&mut p, "--chunk")?,
            Long("register") => o.register = true,
            Long("quiet") | Short('q') => o.quiet = true,
            Long("size") | Short('s') => {
                o.source = Some(Source::Size(size_arg(&mut p, "--size")?));
            }
            Long("file") | Short('f') => o.source = Some(Source::File(p.value()?.into())),
            Long("out") | Short('o') => o.out = Some(p.value()?.into()),
            Long("help") | Short('h') => help = true,
            Value(v) => words.push(v.string()?),
            _ => return Err(arg.unexpected().into()),
        }
    }
    if help {
        return Ok((g, Command::Help));
    }
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    let usage = |s: &str| Err(Fail::Usage(s.to_string()));
    if o.chunk == 0 || o.chunk > WD_EDU_BULK_MAX {
        return usage("--chunk must be between 1 and 256M");
    }
    let cmd = match words.as_slice() {
        ["list"] => Command::List,
        ["queues"] => Command::Queues,
        ["help"] => Command::Help,
        ["run", "factorial", n] => Command::Factorial {
            n: n.parse()
                .map_err(|_| Fail::Usage(format!("factorial: bad N {n:?}")))?,
            device: o.device,
        },
        ["run", "factorial"] => return usage("run factorial needs N"),
        ["run", "memcpy"] => {
            if o.source.is_none() {
                return usage("run memcpy needs --size SIZE or --file PATH");
            }
            Command::Memcpy(o)
        }
        ["run", "crc32c"] => {
            if o.source.is_none() {
                return usage("run crc32c needs --size SIZE or --file PATH");
            }
            if o.out.is_some() || o.register {
                return usage("run crc32c takes neither --out nor --register");
            }
            Command::Crc32c(o)
        }
        ["run", what, ..] => return usage(&format!("unknown work {what:?}")),
        ["run"] => return usage("run what? factorial, memcpy or crc32c"),
        [] => return usage("no command"),
        [c, ..] => return usage(&format!("unknown command {c:?}")),
    };
    Ok((g, cmd))
}

/// A table with columns as wide as their widest cell.
fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let width: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (c, cell) in r.iter().enumerate() {
            if c + 1 == r.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<w$}  ", w = width[c]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref().map_or_else(|| "-".to_string(), T::to_string)
}

fn cmd_list(g: &Global) -> Result<(), Fail> {
    let sysfs = Sysfs::with_root(&g.sys, &g.dev);
    let devs = sysfs.devices()?;
    if devs.is_empty() {
        return Err(Error::NoDevice {
            reason: format!("no uacce device under {}", sysfs.class_dir().display()),
        }
        .into());
    }
    let mut rows = vec![[
        "DEVICE",
        "API",
        "FLAGS",
        "FREE",
        "NODE",
        "PARENT",
        "DRIVER",
        "MMIO",
        "DUS",
        "ISOLATE",
        "ALGORITHMS",
    ]
    .map(String::from)
    .to_vec()];
    for d in &devs {
        let mut flags = d.flags.map_or("-".to_string(), |f| format!("{f:#x}"));
        if d.is_shadow_ring() {
            flags.push_str(" shadow_ring");
        }
        if d.is_sva() {
            flags.push_str(" sva");
        }
        rows.push(vec![
            d.name.clone(),
            opt(&d.api),
            flags,
            opt(&d.available_instances),
            opt(&d.numa_node),
            opt(&d.parent),
            opt(&d.driver),
            opt(&d.region_mmio_size),
            opt(&d.region_dus_size),
            d.isolate
                .map_or("-".into(), |i| if i { "yes" } else { "no" }.into()),
            d.algorithms.join(","),
        ]);
    }
    print!("{}", table(&rows));
    for d in &devs {
        for p in &d.problems {
            eprintln!("wdctl: warning: {}: {p}", d.name);
        }
    }
    Ok(())
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

fn cmd_queues(g: &Global) -> Result<(), Fail> {
    let scan =
        stats::scan(&g.proc).map_err(|e| Error::from_io(Op::Proc, &g.proc.to_string_lossy(), e))?;
    if scan.queues.is_empty() {
        println!("no open warpdrive queues");
    } else {
        let mut rows = vec![[
            "PID",
            "COMM",
            "FD",
            "DEVICE",
            "QUEUE",
            "STATE",
            "SUBMITTED",
            "COMPLETED",
            "ERRORS",
            "IN-FLIGHT",
            "BYTES",
            "PINNED",
            "BUFFERS",
            "INVAL",
            "MAPPED",
        ]
        .map(String::from)
        .to_vec()];
        for q in &scan.queues {
            let s = &q.stats;
            rows.push(vec![
                q.pid.to_string(),
                q.comm.clone(),
                q.fd.to_string(),
                s.device.clone(),
                s.queue_index.to_string(),
                s.state.to_string(),
                s.submitted.to_string(),
                s.completed.to_string(),
                s.errors.to_string(),
                opt(&s.in_flight),
                s.bytes.to_string(),
                s.pinned_pages.to_string(),
                s.buffers.to_string(),
                s.invalidations.to_string(),
                s.mapped_pages.to_string(),
            ]);
        }
        print!("{}", table(&rows));
    }
    if !scan.denied.is_empty() {
        eprintln!(
            "wdctl: note: the fds of {} process(es) could not be read (permission denied){}",
            scan.denied.len(),
            if is_root() {
                ""
            } else {
                "; run as root to see every process's queues"
            }
        );
    }
    Ok(())
}

fn open_queue(g: &Global, device: Option<&str>, alg: &str) -> Result<Queue, Error> {
    let sysfs = Sysfs::with_root(&g.sys, &g.dev);
    match device {
        Some(name) => {
            let d = sysfs.device(name)?;
            if !d.has_algorithm(alg) {
                return Err(Error::NoDevice {
                    reason: format!(
                        "{name} does not offer {alg} (it offers: {})",
                        d.algorithms.join(", ")
                    ),
                });
            }
            Queue::open(&d)
        }
        None => Queue::open_for(&sysfs, alg),
    }
}

fn cmd_factorial(g: &Global, n: u32, device: Option<&str>) -> Result<(), Fail> {
    let q = open_queue(g, device, "factorial")?;
    let got = q.run_one(Cmd::factorial(n), TIMEOUT)?;
    let want = util::factorial_u32(n);
    if got != u64::from(want) {
        return Err(Fail::Wrong(format!(
            "{}: {n}! = {got} from the device, but the CPU computes {want}",
            q.device_name()
        )));
    }
    let trunc = if n >= 13 {
        ", truncated to 32 bits"
    } else {
        ""
    };
    println!(
        "{n}! = {got}  ({}: factorial unit through the ring{trunc}; matches the CPU)",
        q.device_name()
    );
    Ok(())
}

/// The input of a transfer: a pattern or a file, read window by window.
enum Input {
    Pattern { seed: u64 },
    File { file: File, path: PathBuf },
}

impl Input {
    fn open(src: &Source) -> Result<(Self, u64), Fail> {
        match src {
            Source::Size(n) => Ok((Input::Pattern { seed: 0x5744 }, *n)),
            Source::File(p) => {
                let file = File::open(p).map_err(|e| file_err(p, "open", e))?;
                let len = file.metadata().map_err(|e| file_err(p, "stat", e))?.len();
                Ok((
                    Input::File {
                        file,
                        path: p.clone(),
                    },
                    len,
                ))
            }
        }
    }

    fn fill(&mut self, buf: &mut [u8], off: u64) -> Result<(), Fail> {
        match self {
            Input::Pattern { seed } => util::fill_pattern(buf, *seed, off),
            Input::File { file, path } => file
                .read_exact(buf)
                .map_err(|e| file_err(path, "read", e))?,
        }
        Ok(())
    }
}

fn file_err(p: &Path, what: &str, e: io::Error) -> Fail {
    Fail::Other(format!("{}: {what}: {e}", p.display()))
}

/// The window (bytes in memory at once) and chunk (bytes per command) for
/// `total` bytes, with `pinned` buffers of a window's size pinned by the
/// commands themselves, within what this process may pin. Registered
/// buffers are not pinned (`pinned` 0): only memory use limits them.
fn plan(total: u64, chunk: u64, pinned: u64, budget: Option<u64>) -> (u64, u64) {
    let mut window = total.min(MAX_WINDOW);
    if let Some(b) = budget.filter(|_| pinned > 0) {
        // Every command of a window may be in flight at once, each pinning
        // its pages, one more where it straddles a page boundary, and the
        // process's other pins count too. Hence under half the budget.
        let cap = (b / pinned) / 16 * 7 / PAGE * PAGE;
        window = window.min(cap.max(PAGE));
    }
    (window, chunk.min(window))
}

fn chunk_len(i: usize, chunk: u64, n: u64) -> u64 {
    chunk.min(n - i as u64 * chunk)
}

fn cmd_memcpy(g: &Global, o: &RunOpts) -> Result<(), Fail> {
    let (mut input, total) = Input::open(o.source.as_ref().expect("checked"))?;
    if total == 0 {
        return Err(Fail::Usage("nothing to copy (size 0)".into()));
    }
    let mut out = match &o.out {
        Some(p) => Some((File::create(p).map_err(|e| file_err(p, "create", e))?, p)),
        None => None,
    };
    let q = open_queue(g, o.device.as_deref(), "emulated_memcpy")?;
    // Registered buffers are mirrored for the device, not pinned: with
    // --register the commands pin nothing and the budget does not apply.
    let pinned = if o.register { 0 } else { 2 };
    let (window, chunk) = plan(total, o.chunk, pinned, util::pin_budget());
    let mut src = vec![0u8; window as usize];
    let mut dst = vec![0u8; window as usize];
    let regs = if o.register {
        Some((q.register(&src, false)?, q.register(&dst, true)?))
    } else {
        None
    };
    let mut bar = Progress::new("memcpy", total, !o.quiet);
    let t0 = Instant::now();
    let (mut off, mut commands) = (0u64, 0usize);
    while off < total {
        let n = window.min(total - off);
        let (s, d) = (&mut src[..n as usize], &mut dst[..n as usize]);
        input.fill(s, off)?;
        // Every byte differs from the source until the device copies it.
        d.iter_mut().zip(s.iter()).for_each(|(d, s)| *d = !*s);
        let cmds: Vec<Cmd> = s
            .chunks(chunk as usize)
            .zip(d.chunks_mut(chunk as usize))
            .map(|(s, d)| {
                let c = Cmd::memcpy(s, d);
                if o.register {
                    c.registered_only()
                } else {
                    c
                }
            })
            .collect();
        let done = q.run_with(&cmds, TIMEOUT, |i, _| bar.add(chunk_len(i, chunk, n)))?;
        commands += cmds.len();
        drop(cmds);
        for (i, c) in done.iter().enumerate() {
            let len = chunk_len(i, chunk, n);
            if c.ok()? != len {
                return Err(Fail::Wrong(format!(
                    "command {i} copied {} bytes, not {len}",
                    c.result
                )));
            }
        }
        if let Some(at) = util::first_difference(s, d) {
            return Err(Fail::Wrong(format!(
                "{}: byte {} differs after the copy: {:#04x}, source {:#04x}",
                q.device_name(),
                off + at as u64,
                d[at],
                s[at]
            )));
        }
        if let Some((f, p)) = &mut out {
            f.write_all(d).map_err(|e| file_err(p, "write", e))?;
        }
        off += n;
    }
    bar.finish();
    let secs = t0.elapsed().as_secs_f64();
    drop(regs);
    println!(
        "memcpy: {} ({total} bytes) copied by {} in {commands} commands of up to {}{}, verified; {:.2} s, {}/s",
        format_size(total),
        q.device_name(),
        format_size(chunk),
        if o.register { " from registered buffers" } else { "" },
        secs,
        format_size((total as f64 / secs.max(1e-9)) as u64),
    );
    Ok(())
}

fn cmd_crc32c(g: &Global, o: &RunOpts) -> Result<(), Fail> {
    let source = o.source.as_ref().expect("checked");
    let (mut input, total) = Input::open(source)?;
    if total == 0 {
        return Err(Fail::Usage("nothing to checksum (size 0)".into()));
    }
    let q = open_queue(g, o.device.as_deref(), "emulated_crc32c")?;
    let (window, chunk) = plan(total, o.chunk, 1, util::pin_budget());
    let mut buf = vec![0u8; window as usize];
    let mut bar = Progress::new("crc32c", total, !o.quiet);
    let (mut off, mut commands) = (0u64, 0usize);
    let (mut dev_crc, mut cpu_crc) = (0u32, 0u32);
    while off < total {
        let n = window.min(total - off);
        let b = &mut buf[..n as usize];
        input.fill(b, off)?;
        // Each command continues from the previous one's CRC.
        for piece in b.chunks(chunk as usize) {
            let r = q.run_one(Cmd::crc32c(piece, dev_crc), TIMEOUT)?;
            dev_crc = u32::try_from(r)
                .map_err(|_| Fail::Wrong(format!("CRC result {r:#x} is wider than 32 bits")))?;
            commands += 1;
            bar.add(piece.len() as u64);
        }
        cpu_crc = util::crc32c(cpu_crc, b);
        if dev_crc != cpu_crc {
            return Err(Fail::Wrong(format!(
                "{}: CRC-32C {dev_crc:#010x} after {} bytes, the CPU computes {cpu_crc:#010x}",
                q.device_name(),
                off + n
            )));
        }
        off += n;
    }
    bar.finish();
    let what = match source {
        Source::Size(_) => "pattern".to_string(),
        Source::File(p) => p.display().to_string(),
    };
    println!(
        "{dev_crc:#010x}  {what}  ({total} bytes, {} in {commands} commands; matches the CPU)",
        q.device_name()
    );
    Ok(())
}

/// How many queues `name` has, all of them in use: the `queues` parameter
/// of its driver where the driver shows one, else the queues of `name` that
/// a scan of /proc finds, if it could read every process's fds.
fn queues_per_device(g: &Global, name: &str) -> Option<u64> {
    let d = Sysfs::with_root(&g.sys, &g.dev).device(name).ok()?;
    let param = g
        .sys
        .join("module")
        .join(d.driver?)
        .join("parameters/queues");
    if let Some(n) = std::fs::read_to_string(param)
        .ok()
        .and_then(|s| warpdrive::sysfs::parse_int(&s))
    {
        return Some(n);
    }
    let scan = stats::scan(&g.proc).ok()?;
    let n = scan
        .queues
        .iter()
        .filter(|q| q.stats.device == name)
        .count() as u64;
    (scan.denied.is_empty() && n > 0).then_some(n)
}

/// Prints `e` with what to do about it, and returns the exit status.
fn report(g: &Global, e: &Fail) -> u8 {
    let (msg, hint, code): (String, String, u8) = match e {
        Fail::Usage(s) => (s.clone(), "see `wdctl help`".into(), 2),
        Fail::Wrong(s) => (
            format!("wrong result: {s}"),
            "the device or driver computed a wrong result; check dmesg".into(),
            8,
        ),
        Fail::Other(s) => (s.clone(), String::new(), 1),
        Fail::Lib(e) => lib_hint(g, e),
    };
    eprintln!("wdctl: {msg}");
    for l in hint.lines().filter(|l| !l.is_empty()) {
        eprintln!("wdctl: hint: {l}");
    }
    code
}

fn lib_hint(g: &Global, e: &Error) -> (String, String, u8) {
    let memlock = |limit: &Option<u64>| match limit {
        Some(l) => format!(
            "the command's own memory is pinned while it runs, and the pins would exceed \
             RLIMIT_MEMLOCK\nthe current RLIMIT_MEMLOCK is {} KiB; raise it with `ulimit -l \
             <KiB>` (or in /etc/security/limits.conf), or run with CAP_IPC_LOCK (e.g. as root)\n\
             or register the memory (`run memcpy --register`): registered buffers are mapped \
             for the device without pins and are not charged to RLIMIT_MEMLOCK",
            l / 1024
        ),
        None => "RLIMIT_MEMLOCK is unlimited, so the kernel ran out of memory pinning the \
                 command's memory; free some memory, or register it (`run memcpy --register`)"
            .into(),
    };
    match e {
        Error::NoDevice { reason } => (
            format!("no device: {reason}"),
            format!(
                "is warpdrive_edu loaded? check `lsmod | grep warpdrive` and `ls {}/class/uacce`; \
                 `wdctl list` shows the devices",
                g.sys.display()
            ),
            3,
        ),
        Error::Busy { device } => {
            let mut what = Vec::new();
            for name in device.split(", ") {
                match queues_per_device(g, name) {
                    Some(n) => what.push(format!("all {n} queues of {name} are in use")),
                    None => what.push(format!("every queue of {name} is in use")),
                }
            }
            (
                what.join("; "),
                "wait for their users to finish, or close other queues; `wdctl queues` (as root) \
                 shows who holds them"
                    .into(),
                4,
            )
        }
        Error::PermissionDenied { op, target, errno } => {
            let hint = if *op == Op::Open {
                format!(
                    "check the device node's permissions (`ls -l {target}`): its mode and owner \
                     must let you read and write it; or run as root"
                )
            } else {
                "the queue belongs to another process: a queue fd inherited across fork() or \
                 received over a socket cannot submit, register or map the ring; open your own"
                    .into()
            };
            (
                format!(
                    "{target}: {op}: permission denied ({})",
                    errno_name(*errno).unwrap_or("?")
                ),
                hint,
                5,
            )
        }
        Error::MemlockLimit { limit, .. } => (e.to_string(), memlock(limit), 6),
        Error::Io {
            op: Op::Register,
            source,
            ..
        } => {
            let hint = match source.raw_os_error().unwrap_or(0) {
                12 => {
                    "the kernel could not map the buffer's pages for the device (short of \
                       memory or of IOMMU space); registered buffers are not pinned, so \
                       RLIMIT_MEMLOCK is not the cause: free some memory, or leave out \
                       --register"
                }
                14 => {
                    "the buffer is not mapped with the access asked for (the device writes \
                       a writable registration), or it is one of a queue's own regions"
                }
                4 => "killed while the kernel faulted the buffer in",
                _ => "",
            };
            (e.to_string(), hint.into(), 1)
        }
        Error::DeviceGone { device } => (
            format!(
                "{device}: the device is gone (ENODEV): its driver was unbound or it was removed"
            ),
            "check dmesg; load warpdrive_edu again or rebind the device, then retry".into(),
            7,
        ),
        Error::Command { status, .. } => {
            let hint = match -status {
                125 => "the queue was stopped or the device removed while it ran".into(),
                14 => "an address was not mapped with the access needed".into(),
                _ => String::new(),
            };
            (e.to_string(), hint, 8)
        }
        Error::Timeout { .. } => (
            e.to_string(),
            "the device may be hung; check dmesg".into(),
            1,
        ),
        _ => (e.to_string(), String::new(), 1),
    }
}

fn main() -> ExitCode {
    let args = std::env::args_os().skip(1);
    let (g, cmd) = match parse(args) {
        Ok(v) => v,
        Err(e) => {
            let g = Global {
                sys: "/sys".into(),
                dev: "/dev".into(),
                proc: "/proc".into(),
            };
            return ExitCode::from(report(&g, &e));
        }
    };
    let r = match &cmd {
        Command::Help => {
            print!("{USAGE}");
            Ok(())
        }
        Command::List => cmd_list(&g),
        Command::Queues => cmd_queues(&g),
        Command::Factorial { n, device } => cmd_factorial(&g, *n, device.as_deref()),
        Command::Memcpy(o) => cmd_memcpy(&g, o),
        Command::Crc32c(o) => cmd_crc32c(&g, o),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => ExitCode::from(report(&g, &e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &str) -> Result<(Global, Command), Fail> {
        parse(args.split_whitespace().map(OsString::from))
    }

    fn cmd(args: &str) -> Command {
        p(args).unwrap().1
    }

    #[test]
    fn parses_commands() {
        assert_eq!(cmd("list"), Command::List);
        assert_eq!(cmd("queues"), Command::Queues);
        assert_eq!(cmd("--help"), Command::Help);
        assert_eq!(
            cmd("run factorial 10 --device edu-1"),
            Command::Factorial {
                n: 10,
                device: Some("edu-1".into())
            }
        );
        let Command::Memcpy(o) = cmd("run memcpy --size 64M --register --chunk 1M") else {
            panic!()
        };
        assert_eq!(o.source, Some(Source::Size(64 << 20)));
        assert_eq!((o.chunk, o.register, o.quiet), (1 << 20, true, false));
        let Command::Memcpy(o) = cmd("run memcpy --file /a --out /b -q") else {
            panic!()
        };
        assert_eq!(o.source, Some(Source::File("/a".into())));
        assert_eq!(o.out, Some(PathBuf::from("/b")));
        assert!(o.quiet);
        let Command::Crc32c(o) = cmd("run crc32c --size=1k") else {
            panic!()
        };
        assert_eq!(o.source, Some(Source::Size(1024)));
        let (g, _) = p("--sysfs /tmp/s --dev /tmp/d --proc /tmp/p list").unwrap();
        assert_eq!(
            g,
            Global {
                sys: "/tmp/s".into(),
                dev: "/tmp/d".into(),
                proc: "/tmp/p".into()
            }
        );
    }

    #[test]
    fn refuses_bad_usage() {
        for bad in [
            "",
            "frobnicate",
            "run",
            "run factorial",
            "run factorial x",
            "run factorial -1",
            "run memcpy",
            "run memcpy --size 12Q",
            "run memcpy --size 1M --chunk 0",
            "run memcpy --size 1M --chunk 512M",
            "run crc32c --size 1M --out /x",
            "run sha1 --size 1",
            "list --bogus",
        ] {
            assert!(matches!(p(bad), Err(Fail::Usage(_))), "{bad:?}");
        }
    }

    #[test]
    fn plans_windows() {
        // Unlimited: 64 MiB windows, chunks as asked.
        assert_eq!(plan(1 << 30, 4 << 20, 2, None), (64 << 20, 4 << 20));
        assert_eq!(plan(1000, 4 << 20, 2, None), (1000, 1000));
        // 8 MiB of memlock for two buffers: 1.75 MiB windows.
        assert_eq!(
            plan(1 << 30, 4 << 20, 2, Some(8 << 20)),
            (1792 << 10, 1792 << 10)
        );
        // Nearly nothing left: one page, and the kernel will say ENOMEM.
        assert_eq!(plan(1 << 20, 4 << 20, 2, Some(100)), (4096, 4096));
        assert_eq!(plan(1 << 20, 4 << 20, 1, Some(0)), (4096, 4096));
        // Registered buffers pin nothing: no limit cuts their windows.
        assert_eq!(plan(1 << 30, 4 << 20, 0, Some(0)), (64 << 20, 4 << 20));
        assert_eq!(
            plan(1 << 20, 1 << 20, 0, Some(64 << 10)),
            (1 << 20, 1 << 20)
        );
        assert_eq!(chunk_len(2, 4, 10), 2);
    }

    #[test]
    fn memlock_hint_is_for_commands_not_register() {
        let g = Global {
            sys: "/sys".into(),
            dev: "/dev".into(),
            proc: "/proc".into(),
        };
        // A command's -ENOMEM completion: the limit, and how to get round it.
        let e = Error::from_completion(warpdrive::abi::WD_EDU_OP_EMU_MEMCPY, 3, -12);
        let (msg, hint, code) = lib_hint(&g, &e);
        assert_eq!(code, 6);
        assert!(
            msg.contains("RLIMIT_MEMLOCK") && msg.contains("emulated_memcpy"),
            "{msg}"
        );
        for want in ["the current RLIMIT_MEMLOCK is ", "ulimit -l", "--register"] {
            assert!(hint.contains(want), "{want}: {hint}");
        }
        let e = Error::MemlockLimit {
            opcode: 4,
            user_data: 0,
            limit: None,
        };
        let (_, hint, code) = lib_hint(&g, &e);
        assert_eq!(code, 6);
        assert!(
            hint.contains("out of memory") && !hint.contains("ulimit"),
            "{hint}"
        );
        // REGISTER's ENOMEM: the kernel could not map the pages.
        let e = Error::from_io(Op::Register, "edu-0", io::Error::from_raw_os_error(12));
        let (msg, hint, code) = lib_hint(&g, &e);
        assert_eq!(code, 1);
        assert!(msg.contains("edu-0: REGISTER"), "{msg}");
        assert!(hint.contains("could not map the buffer's pages"), "{hint}");
        assert!(!hint.contains("ulimit"), "{hint}");
        let e = Error::from_io(Op::Register, "edu-0", io::Error::from_raw_os_error(14));
        assert!(lib_hint(&g, &e).1.contains("access asked for"));
    }

    #[test]
    fn tables_align() {
        let t = table(&[
            vec!["A".into(), "BB".into(), "C".into()],
            vec!["long".into(), "x".into(), "y z".into()],
        ]);
        assert_eq!(t, "A     BB  C\nlong  x   y z\n");
    }

    #[test]
    fn exit_codes() {
        let g = Global {
            sys: "/nonexistent".into(),
            dev: "/dev".into(),
            proc: "/proc".into(),
        };
        let code = |e: Error| report(&g, &Fail::Lib(e));
        assert_eq!(code(Error::NoDevice { reason: "x".into() }), 3);
        assert_eq!(
            code(Error::Busy {
                device: "edu-0".into()
            }),
            4
        );
        assert_eq!(
            code(Error::PermissionDenied {
                op: Op::Open,
                target: "/dev/edu-0".into(),
                errno: 13
            }),
            5
        );
        assert_eq!(
            code(Error::MemlockLimit {
                opcode: 4,
                user_data: 0,
                limit: Some(65536)
            }),
            6
        );
        assert_eq!(
            code(Error::DeviceGone {
                device: "edu-0".into()
            }),
            7
        );
        assert_eq!(
            code(Error::Command {
                opcode: 4,
                user_data: 0,
                status: -14
            }),
            8
        );
        // REGISTER's ENOMEM is not the memlock limit.
        assert_eq!(
            code(Error::from_io(
                Op::Register,
                "edu-0",
                io::Error::from_raw_os_error(12)
            )),
            1
        );
        assert_eq!(report(&g, &Fail::Usage("x".into())), 2);
        assert_eq!(
            warpdrive::error::status_text(-12),
            "-ENOMEM (Cannot allocate memory)"
        );
    }
}

// SPDX-License-Identifier: GPL-2.0
//! The warpdrive crate and wdctl against the real edu devices, in the test
//! guest. Prints KTAP. Runs as root; finds wdctl next to itself or in PATH.
//!
//! `WD_EXPECT_NUMA_NODES` says how many NUMA nodes the machine has (the
//! test guest has two, with edu-0 on node 0 and edu-1 on node 1): with 2
//! or more, `select_by_numa_node` fails on a machine that shows fewer;
//! unset or 1, it skips there.
//!
//! Two hidden modes serve the tests that need another user or a lower
//! memlock limit:
//!   wd-guest-test --as-nobody MEMLOCK PROG ARGS...
//!       sets RLIMIT_MEMLOCK to MEMLOCK bytes, becomes uid/gid 65534 and
//!       execs PROG;
//!   wd-guest-test --child-memlock
//!       opens a queue as root, then lowers the limit to 64 KiB and drops
//!       root, and checks that registered buffers are not charged to it
//!       while a command's own pins are; exits 0 if they are right.

#![forbid(unsafe_code)]

use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use rustix::event::epoll;
use rustix::process::{Resource, Rlimit};
use warpdrive::abi::{self, WD_EDU_OP_EMU_CRC32C, WD_EDU_OP_EMU_MEMCPY, WD_EDU_OP_NOP};
use warpdrive::stats::{self, QueueState};
use warpdrive::sysfs;
use warpdrive::util::{self, crc32c, factorial_u32, fill_pattern};
use warpdrive::{Cmd, Error, Queue, Sysfs};

const T: Duration = Duration::from_secs(60);
const EDU_DRV: &str = "/sys/bus/pci/drivers/warpdrive_edu";
/// The pattern seed wdctl uses for `--size` (see its Input::Pattern).
const WDCTL_SEED: u64 = 0x5744;

enum Outcome {
    Fail(String),
    Skip(String),
}

type TestResult = Result<(), Outcome>;

macro_rules! check {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(Outcome::Fail(format!("line {}: {}", line!(), format!($($fmt)+))));
        }
    };
}

/// `?` for library results inside a test.
trait OrFail<T> {
    fn or_fail(self, what: &str) -> Result<T, Outcome>;
}

impl<T, E: std::fmt::Display> OrFail<T> for Result<T, E> {
    fn or_fail(self, what: &str) -> Result<T, Outcome> {
        self.map_err(|e| Outcome::Fail(format!("{what}: {e}")))
    }
}

struct Ctx {
    sysfs: Sysfs,
    wdctl: Option<PathBuf>,
    me: PathBuf,
}

impl Ctx {
    fn wdctl(&self, args: &[&str]) -> Result<Output, Outcome> {
        let w = self
            .wdctl
            .as_ref()
            .ok_or_else(|| Outcome::Fail("wdctl not found next to the test or in PATH".into()))?;
        Command::new(w).args(args).output().or_fail("running wdctl")
    }

    /// wdctl as uid 65534 with RLIMIT_MEMLOCK at `memlock` bytes.
    fn wdctl_as_nobody(&self, memlock: u64, args: &[&str]) -> Result<Output, Outcome> {
        let w = self
            .wdctl
            .as_ref()
            .ok_or_else(|| Outcome::Fail("wdctl not found".into()))?;
        Command::new(&self.me)
            .arg("--as-nobody")
            .arg(memlock.to_string())
            .arg(w)
            .args(args)
            .output()
            .or_fail("running wdctl as nobody")
    }

    fn edu(&self) -> Result<Vec<warpdrive::Device>, Outcome> {
        let devs = self.sysfs.devices().or_fail("sysfs")?;
        Ok(devs
            .into_iter()
            .filter(|d| d.api.as_deref() == Some(abi::EDU_API))
            .collect())
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn show(o: &Output) -> String {
    format!(
        "status {:?}, stdout {:?}, stderr {:?}",
        o.status.code(),
        text(&o.stdout),
        text(&o.stderr)
    )
}

fn find_wdctl(me: &Path) -> Option<PathBuf> {
    let beside = me.parent()?.join("wdctl");
    if beside.is_file() {
        return Some(beside);
    }
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join("wdctl"))
        .find(|p| p.is_file())
}

// ---- the tests ----

fn list_finds_two_edu_devices(c: &Ctx) -> TestResult {
    let edu = c.edu()?;
    let names: Vec<&str> = edu.iter().map(|d| d.name.as_str()).collect();
    check!(names == ["edu-0", "edu-1"], "edu devices {names:?}");
    for d in &edu {
        check!(
            d.is_shadow_ring() && !d.is_sva(),
            "{}: flags {:?}",
            d.name,
            d.flags
        );
        check!(d.problems.is_empty(), "{}: {:?}", d.name, d.problems);
        check!(
            d.region_mmio_size == Some(4096) && d.region_dus_size == Some(36864),
            "{}: regions {:?} {:?}",
            d.name,
            d.region_mmio_size,
            d.region_dus_size
        );
        for alg in [
            "factorial",
            "dma_copy",
            "nop",
            "emulated_memcpy",
            "emulated_crc32c",
        ] {
            check!(d.has_algorithm(alg), "{}: no {alg}", d.name);
        }
        check!(
            d.available_instances.is_some_and(|n| n > 0),
            "{}: available_instances {:?}",
            d.name,
            d.available_instances
        );
        check!(d.parent.is_some(), "{}: no parent", d.name);
        check!(
            d.driver.as_deref() == Some("warpdrive_edu"),
            "{}: driver {:?}",
            d.name,
            d.driver
        );
        check!(d.numa_node.is_some(), "{}: no numa_node", d.name);
        check!(d.node.exists(), "{}: no {}", d.name, d.node.display());
    }
    let o = c.wdctl(&["list"])?;
    check!(o.status.success(), "wdctl list: {}", show(&o));
    let out = text(&o.stdout);
    let rows: Vec<&str> = out.lines().skip(1).collect();
    check!(rows.len() == 2, "wdctl list rows: {out:?}");
    for (row, d) in rows.iter().zip(&edu) {
        let cols: Vec<&str> = row.split_whitespace().collect();
        check!(cols[0] == d.name, "wdctl list: {row}");
        check!(
            cols.contains(&"warpdrive_edu_v2") && cols.contains(&"shadow_ring"),
            "wdctl list: {row}"
        );
        check!(
            row.ends_with("factorial,dma_copy,nop,emulated_memcpy,emulated_crc32c"),
            "wdctl list: {row}"
        );
    }
    Ok(())
}

fn select_by_algorithm(c: &Ctx) -> TestResult {
    let devs = c.sysfs.devices().or_fail("sysfs")?;
    let node = c.sysfs.current_node();
    println!("# this CPU's NUMA node: {node:?}");
    let d = sysfs::select(&devs, "emulated_crc32c", node).or_fail("select")?;
    check!(d.name.starts_with("edu-"), "selected {}", d.name);
    if let Some(n) = node {
        if devs.iter().any(|x| x.effective_node() == n) {
            check!(
                d.effective_node() == n,
                "{} is on node {}",
                d.name,
                d.effective_node()
            );
        }
    }
    let r = sysfs::select(&devs, "no_such_algorithm", node);
    check!(
        matches!(r, Err(Error::NoDevice { .. })),
        "unknown algorithm: {r:?}"
    );
    let q = Queue::open_for(&c.sysfs, "emulated_memcpy").or_fail("open_for")?;
    check!(q.device_name().starts_with("edu-"), "{}", q.device_name());
    // The tie-break among equal devices is the most free queues: the one
    // open_for took has one fewer now, so the next pick is the other.
    let devs = c.sysfs.devices().or_fail("sysfs")?;
    let next = sysfs::select(&devs, "emulated_memcpy", None).or_fail("select")?;
    let first = devs.iter().find(|d| d.name == q.device_name()).unwrap();
    if first.effective_node() == next.effective_node() {
        check!(
            next.available_instances >= first.available_instances,
            "picked {} ({:?} free) over {} ({:?} free)",
            next.name,
            next.available_instances,
            first.name,
            first.available_instances
        );
    }
    let o = c.wdctl(&["run", "factorial", "3", "--device", "edu-0"])?;
    check!(o.status.success(), "{}", show(&o));
    let o = c.wdctl(&["run", "factorial", "3", "--device", "edu-9"])?;
    check!(o.status.code() == Some(3), "edu-9: {}", show(&o));
    Ok(())
}

/// How many NUMA nodes the machine is expected to have: `Ok(None)` if
/// `WD_EXPECT_NUMA_NODES` is unset.
fn expected_numa_nodes() -> Result<Option<usize>, Outcome> {
    match std::env::var("WD_EXPECT_NUMA_NODES") {
        Ok(v) => v
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| Outcome::Fail(format!("WD_EXPECT_NUMA_NODES={v:?} is not a number"))),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(e) => Err(Outcome::Fail(format!("WD_EXPECT_NUMA_NODES: {e}"))),
    }
}

/// The device selector prefers the device on the NUMA node of the CPU the
/// thread runs on: a thread pinned to each node's CPUs gets that node's
/// device first, from the library and from wdctl.
fn select_by_numa_node(c: &Ctx) -> TestResult {
    let expected = expected_numa_nodes()?;
    let nodes = c.sysfs.numa_nodes();
    println!("# NUMA nodes {nodes:?}, WD_EXPECT_NUMA_NODES {expected:?}");
    if let Some(want) = expected {
        check!(
            nodes.len() == want,
            "WD_EXPECT_NUMA_NODES={want}, but sysfs shows nodes {nodes:?}"
        );
    }
    if nodes.len() < 2 {
        return Err(Outcome::Skip(format!(
            "{} NUMA node(s) ({}), and WD_EXPECT_NUMA_NODES is {}: nothing to choose between",
            nodes.len(),
            if nodes.is_empty() {
                "no /sys/devices/system/node".to_string()
            } else {
                format!("no /sys/devices/system/node/node{}", nodes[0] + 1)
            },
            expected.map_or("unset".to_string(), |n| n.to_string())
        )));
    }
    let edu = c.edu()?;
    let placement: Vec<(&str, Option<i32>)> =
        edu.iter().map(|d| (d.name.as_str(), d.numa_node)).collect();
    println!("# edu devices on nodes {placement:?}");
    if expected == Some(2) {
        // The test guest's layout: one edu device on each node, in whichever order they
        // probed.
        let mut on: Vec<Option<i32>> = placement.iter().map(|&(_, n)| n).collect();
        on.sort();
        check!(
            on == [Some(0), Some(1)],
            "want one edu device on node 0 and one on node 1: {placement:?}"
        );
    }
    for &node in &nodes {
        let local: Vec<String> = edu
            .iter()
            .filter(|d| d.numa_node == Some(node))
            .map(|d| d.name.clone())
            .collect();
        check!(
            !local.is_empty(),
            "no edu device on node {node}: {placement:?}"
        );
        let cpus = c
            .sysfs
            .node_cpus(node)
            .or_fail("cpulist")?
            .unwrap_or_default();
        check!(!cpus.is_empty(), "node {node} has no CPUs");
        println!("# node {node}: CPUs {cpus:?}, devices {local:?}");
        // A thread of its own: the affinity goes with it.
        std::thread::scope(|s| s.spawn(|| on_node(c, node, &cpus, &local)).join())
            .unwrap_or_else(|_| Err(Outcome::Fail(format!("node {node}: the thread panicked"))))?;
    }
    Ok(())
}

/// Pins this thread to `cpus`, those of `node`, and checks that the
/// selector puts a device of `local` first.
fn on_node(c: &Ctx, node: i32, cpus: &[usize], local: &[String]) -> TestResult {
    use rustix::thread::{sched_getcpu, sched_setaffinity, CpuSet};
    let mut set = CpuSet::new();
    for &cpu in cpus {
        check!(cpu < CpuSet::MAX_CPU, "CPU {cpu} beyond a CpuSet");
        set.set(cpu);
    }
    sched_setaffinity(None, &set).or_fail("sched_setaffinity")?;
    let cpu = sched_getcpu();
    check!(
        cpus.contains(&cpu),
        "pinned to node {node}'s CPUs {cpus:?}, running on CPU {cpu}"
    );
    let here = c.sysfs.current_node();
    check!(
        here == Some(node),
        "current_node() is {here:?} on CPU {cpu} of node {node}"
    );
    let devs = c.sysfs.devices().or_fail("sysfs")?;
    for alg in ["factorial", "emulated_memcpy", "emulated_crc32c"] {
        let order: Vec<String> = sysfs::candidates(&devs, alg, here)
            .or_fail("candidates")?
            .iter()
            .filter(|d| d.api.as_deref() == Some(abi::EDU_API))
            .map(|d| d.name.clone())
            .collect();
        // Every edu device has free queues here: the node decides.
        let k = order.iter().take_while(|n| local.contains(n)).count();
        check!(
            k == local.len() && k < order.len(),
            "{alg} from CPU {cpu} of node {node}: order {order:?}, want {local:?} first"
        );
        let best = sysfs::select(&devs, alg, here).or_fail("select")?;
        check!(
            local.contains(&best.name),
            "{alg}: select picked {} on node {node}",
            best.name
        );
    }
    let q = Queue::open_for(&c.sysfs, "emulated_memcpy").or_fail("open_for")?;
    check!(
        local.iter().any(|n| n == q.device_name()),
        "open_for on node {node} took {}",
        q.device_name()
    );
    q.run_one(Cmd::nop(), T).or_fail("nop")?;
    drop(q);
    // wdctl inherits this thread's affinity, and chooses the same way.
    let o = c.wdctl(&["run", "factorial", "5"])?;
    check!(o.status.success(), "{}", show(&o));
    let out = text(&o.stdout);
    check!(
        local
            .iter()
            .any(|n| out.starts_with(&format!("5! = 120  ({n}:"))),
        "wdctl on node {node} did not pick {local:?}: {}",
        show(&o)
    );
    Ok(())
}

fn factorial_through_the_ring(c: &Ctx) -> TestResult {
    let _ = c;
    let q = Queue::open_for(&Sysfs::new(), "factorial").or_fail("open")?;
    let before = q.status().or_fail("status")?;
    check!(
        before.state == QueueState::Started,
        "state {}",
        before.state
    );
    let cmds: Vec<Cmd> = (0..=14).map(Cmd::factorial).collect();
    let done = q.run(&cmds, T).or_fail("run")?;
    for (n, comp) in (0u32..).zip(&done) {
        let r = comp.ok().or_fail("factorial")?;
        check!(
            r == u64::from(factorial_u32(n)),
            "{n}! = {r} from {}, CPU {}",
            q.device_name(),
            factorial_u32(n)
        );
        check!(comp.opcode == Some(abi::WD_EDU_OP_FACTORIAL), "{comp:?}");
    }
    let after = q.status().or_fail("status")?;
    check!(
        after.submitted == before.submitted + 15 && after.completed == before.completed + 15,
        "counters {before:?} -> {after:?}"
    );
    let fi = q.fdinfo().or_fail("fdinfo")?;
    check!(
        fi.device == q.device_name()
            && fi.submitted == after.submitted
            && fi.completed == after.completed
            && fi.in_flight == Some(0)
            && fi.queue_index == after.queue_index,
        "fdinfo {fi:?} vs status {after:?}"
    );
    // The synchronous ioctl agrees.
    check!(
        q.edu_factorial_ioctl(10).or_fail("ioctl")? == 3_628_800,
        "10! by ioctl"
    );
    // A failing command is a completion with a status, mapped to Command.
    let bad = Cmd::no_memory(0x7fff, 0);
    let r = q.run_one(bad, T);
    check!(
        matches!(
            r,
            Err(Error::Command {
                opcode: 0x7fff,
                status: -95,
                ..
            })
        ),
        "unknown opcode: {r:?}"
    );
    let o = c.wdctl(&["run", "factorial", "12", "--device", "edu-1"])?;
    check!(o.status.success(), "{}", show(&o));
    check!(
        text(&o.stdout).starts_with("12! = 479001600  (edu-1"),
        "{}",
        show(&o)
    );
    Ok(())
}

fn memcpy_with_verification(c: &Ctx) -> TestResult {
    let _ = c;
    let q = Queue::open_for(&Sysfs::new(), "emulated_memcpy").or_fail("open")?;
    const LEN: usize = 8 << 20;
    const CHUNK: usize = 1 << 20;
    let mut src = vec![0u8; LEN + 16];
    let mut dst = vec![0u8; LEN + 16];
    fill_pattern(&mut src, 7, 0);
    // Odd offsets: nothing needs alignment on the bulk engine.
    let (s, d) = (&src[3..3 + LEN], &mut dst[5..5 + LEN]);
    let cmds: Vec<Cmd> = s
        .chunks(CHUNK)
        .zip(d.chunks_mut(CHUNK))
        .map(|(s, d)| Cmd::memcpy(s, d))
        .collect();
    let mut seen = 0;
    let done = q.run_with(&cmds, T, |_, _| seen += 1).or_fail("run")?;
    drop(cmds);
    check!(seen == LEN / CHUNK, "on_done saw {seen}");
    for comp in &done {
        check!(comp.ok().or_fail("memcpy")? == CHUNK as u64, "{comp:?}");
    }
    check!(
        util::check_pattern(&dst[5..5 + LEN], 7, 3).is_none(),
        "copy differs at {:?}",
        util::check_pattern(&dst[5..5 + LEN], 7, 3)
    );
    check!(
        dst[..5].iter().all(|&b| b == 0) && dst[5 + LEN..].iter().all(|&b| b == 0),
        "bytes outside dst written"
    );
    // The device's CRC of what it copied.
    let crc = q
        .run_one(Cmd::crc32c(&dst[5..5 + LEN], 0), T)
        .or_fail("crc")?;
    check!(
        crc == u64::from(crc32c(0, &src[3..3 + LEN])),
        "crc {crc:#x}"
    );
    Ok(())
}

fn wdctl_memcpy_and_crc32c(c: &Ctx) -> TestResult {
    for args in [
        &["run", "memcpy", "--size", "64M", "--quiet"][..],
        &[
            "run",
            "memcpy",
            "--size",
            "6M",
            "--register",
            "--chunk",
            "1M",
        ][..],
        &[
            "run", "memcpy", "--size", "100000", "--chunk", "4k", "--device", "edu-1",
        ][..],
    ] {
        let o = c.wdctl(args)?;
        check!(o.status.success(), "{args:?}: {}", show(&o));
        check!(
            text(&o.stdout).contains("verified"),
            "{args:?}: {}",
            show(&o)
        );
    }
    // crc32c of the pattern wdctl generates, computed here independently.
    let mut p = vec![0u8; 3 << 20];
    fill_pattern(&mut p, WDCTL_SEED, 0);
    let want = format!("{:#010x}", crc32c(0, &p));
    let o = c.wdctl(&["run", "crc32c", "--size", "3M", "--chunk", "512k"])?;
    check!(o.status.success(), "{}", show(&o));
    check!(
        text(&o.stdout).starts_with(&want),
        "want {want}: {}",
        show(&o)
    );
    // Files: the standard check value, and a copy to another file.
    let dir = Path::new("/tmp/wd-guest-test");
    let _ = fs::create_dir_all(dir);
    let check_file = dir.join("check");
    fs::write(&check_file, "123456789").or_fail("write")?;
    let o = c.wdctl(&["run", "crc32c", "--file", check_file.to_str().unwrap()])?;
    check!(
        text(&o.stdout).starts_with("0xe3069283"),
        "crc32c(123456789): {}",
        show(&o)
    );
    let (a, b) = (dir.join("in"), dir.join("out"));
    let mut data = vec![0u8; (1 << 20) + 333];
    fill_pattern(&mut data, 99, 0);
    fs::write(&a, &data).or_fail("write")?;
    let o = c.wdctl(&[
        "run",
        "memcpy",
        "--file",
        a.to_str().unwrap(),
        "--out",
        b.to_str().unwrap(),
        "--chunk",
        "256k",
    ])?;
    check!(o.status.success(), "{}", show(&o));
    check!(fs::read(&b).or_fail("read")? == data, "output file differs");
    let _ = fs::remove_dir_all(dir);
    Ok(())
}

/// Pages of memory that `buf` touches.
fn pages_spanned(buf: &[u8]) -> u64 {
    let a = buf.as_ptr() as usize as u64;
    (a + buf.len() as u64).div_ceil(4096) - a / 4096
}

/// The page-aligned `len` bytes inside `v`, which has a page to spare.
fn page_aligned(v: &mut [u8], len: usize) -> &mut [u8] {
    let off = v.as_ptr().align_offset(4096);
    &mut v[off..off + len]
}

/// `wdctl queues`' row for queue `index` of `device` in this process, as
/// column name to cell.
fn wdctl_queue_row(
    c: &Ctx,
    device: &str,
    index: u32,
) -> Result<std::collections::HashMap<String, String>, Outcome> {
    let o = c.wdctl(&["queues"])?;
    check!(o.status.success(), "wdctl queues: {}", show(&o));
    let out = text(&o.stdout);
    let mut lines = out.lines();
    let header: Vec<&str> = lines.next().unwrap_or("").split_whitespace().collect();
    let me = std::process::id().to_string();
    let index = index.to_string();
    for l in lines {
        let row: std::collections::HashMap<String, String> = header
            .iter()
            .map(|h| h.to_string())
            .zip(l.split_whitespace().map(str::to_string))
            .collect();
        let is = |k: &str, v: &str| row.get(k).map(String::as_str) == Some(v);
        if is("PID", &me) && is("DEVICE", device) && is("QUEUE", &index) {
            return Ok(row);
        }
    }
    Err(Outcome::Fail(format!(
        "wdctl queues: no row for pid {me}, {device} queue {index}: {out}"
    )))
}

fn register_guard_maps_without_pins(c: &Ctx) -> TestResult {
    let q = Queue::open_for(&c.sysfs, "emulated_memcpy").or_fail("open")?;
    let base = stats::vmpin_kb().or_fail("VmPin")?;
    let st = q.status().or_fail("status")?;
    check!(
        st.pinned_pages == 0 && st.mapped_pages == 0 && st.buffers == 0,
        "fresh queue {st:?}"
    );
    // Page-aligned, so that 1 MiB is exactly 256 pages.
    let mut big = vec![0u8; (1 << 20) + 4096];
    let buf = page_aligned(&mut big, 1 << 20);
    fill_pattern(buf, 21, 0);
    {
        let reg = q.register(buf, true).or_fail("register")?;
        check!(reg.len() == 1 << 20, "len {}", reg.len());
        // Registering mirrors the pages for the device: mapped, not pinned,
        // not charged to the process.
        let vmpin = stats::vmpin_kb().or_fail("VmPin")?;
        check!(
            vmpin == base,
            "VmPin {base} -> {vmpin} kB on REGISTER: registered buffers must not be pinned"
        );
        let st = q.status().or_fail("status")?;
        check!(
            st.mapped_pages == 256 && st.pinned_pages == 0 && st.buffers == 1,
            "status page while registered: {st:?}"
        );
        let fi = q.fdinfo().or_fail("fdinfo")?;
        check!(
            fi.mapped_pages == 256 && fi.pinned_pages == 0 && fi.buffers == 1,
            "fdinfo while registered: {fi:?}"
        );
        // wdctl shows the same counters.
        let row = wdctl_queue_row(c, q.device_name(), st.queue_index)?;
        let cell = |k: &str| row.get(k).cloned().unwrap_or_default();
        check!(
            cell("MAPPED") == "256" && cell("PINNED") == "0" && cell("BUFFERS") == "1",
            "wdctl queues row {row:?}"
        );
        // A second registration of the same range is refused (EEXIST).
        let r = q.register(buf, false);
        check!(
            matches!(&r, Err(Error::Io { source, .. }) if source.raw_os_error() == Some(17)),
            "overlap: {r:?}"
        );
        // Commands on the buffer run on the mirror, pinning nothing.
        let crc = q
            .run_one(Cmd::crc32c(buf, 0).registered_only(), T)
            .or_fail("registered crc")?;
        check!(crc == u64::from(crc32c(0, buf)), "crc {crc:#x}");
        let (half_a, half_b) = buf.split_at_mut(1 << 19);
        let n = q
            .run_one(Cmd::memcpy(half_a, half_b).registered_only(), T)
            .or_fail("registered memcpy")?;
        check!(n == 1 << 19, "copied {n}");
        check!(
            util::check_pattern(&buf[1 << 19..], 21, 0).is_none(),
            "the copy within the registered buffer differs"
        );
        let st = q.status().or_fail("status")?;
        let vmpin = stats::vmpin_kb().or_fail("VmPin")?;
        check!(
            st.pinned_pages == 0 && vmpin == base,
            "after registered commands: VmPin {base} -> {vmpin} kB, {st:?}"
        );
        drop(reg);
    }
    // The guard unregistered it: nothing is mapped for the device any more.
    let vmpin = stats::vmpin_kb().or_fail("VmPin")?;
    check!(vmpin == base, "VmPin after drop {vmpin} kB, was {base}");
    let st = q.status().or_fail("status")?;
    check!(
        st.mapped_pages == 0 && st.pinned_pages == 0 && st.buffers == 0,
        "status after drop {st:?}"
    );
    let fi = q.fdinfo().or_fail("fdinfo")?;
    check!(
        fi.mapped_pages == 0 && fi.buffers == 0,
        "fdinfo after drop {fi:?}"
    );
    // A command's own memory is pinned while the command lives, and only
    // then: 8 KiB each way through the device's DMA engine takes 400 ms.
    let mut plain_src = vec![0u8; 3 * 4096];
    let mut plain_dst = vec![0u8; 3 * 4096];
    let src = page_aligned(&mut plain_src, 8192);
    let dst = page_aligned(&mut plain_dst, 8192);
    fill_pattern(src, 22, 0);
    let fd = q.as_raw_fd().to_string();
    let (done, seen) = std::thread::scope(|s| {
        let watcher = s.spawn(|| pins_while_in_flight(&fd));
        let done = q.run_one(Cmd::dma_copy(src, dst), T);
        (done, watcher.join())
    });
    done.or_fail("dma_copy of plain memory")?;
    check!(dst == src, "dma_copy result differs");
    match seen {
        Ok(Some((pinned, vmpin))) => check!(
            pinned == 4 && vmpin == base + 16,
            "in flight: pinned_pages {pinned} (want 4: two pages each way), VmPin {vmpin} kB \
             (want {} kB)",
            base + 16
        ),
        Ok(None) => check!(
            false,
            "the DMA command was never seen in flight with its pins"
        ),
        Err(_) => check!(false, "the watcher thread panicked"),
    }
    let st = q.status().or_fail("status")?;
    let vmpin = stats::vmpin_kb().or_fail("VmPin")?;
    check!(
        st.pinned_pages == 0 && vmpin == base,
        "after the command: VmPin {vmpin} kB (was {base}), {st:?}"
    );
    // Registered-only commands need a registration.
    let src = vec![3u8; 4096];
    let r = q.run_one(Cmd::crc32c(&src, 0).registered_only(), T);
    check!(
        matches!(r, Err(Error::Command { status: -2, .. })),
        "unregistered: {r:?}"
    );
    let reg = q.register(&src, false).or_fail("register")?;
    let st = q.status().or_fail("status")?;
    check!(
        st.mapped_pages == pages_spanned(&src) && st.pinned_pages == 0,
        "4 KiB at {:p} registered: {st:?}",
        src.as_ptr()
    );
    let crc = q
        .run_one(Cmd::crc32c(&src, 0).registered_only(), T)
        .or_fail("registered crc")?;
    check!(crc == u64::from(crc32c(0, &src)), "crc {crc:#x}");
    reg.unregister().or_fail("unregister")?;
    check!(
        stats::vmpin_kb().or_fail("VmPin")? == base,
        "VmPin after unregister"
    );
    let st = q.status().or_fail("status")?;
    check!(st.mapped_pages == 0, "after unregister {st:?}");
    Ok(())
}

/// Watches `/proc/self/fdinfo/<fd>` until the queue has a command in
/// flight with pages pinned, for up to 10 s, and returns its
/// `(pinned_pages, VmPin in kB)`, read while the command stayed in flight.
fn pins_while_in_flight(fd: &str) -> Option<(u64, u64)> {
    let end = Instant::now() + Duration::from_secs(10);
    let fdinfo = || {
        stats::read_fdinfo(Path::new("/proc"), "self", fd)
            .ok()
            .flatten()
    };
    while Instant::now() < end {
        if let Some(a) = fdinfo().filter(|s| s.in_flight == Some(1) && s.pinned_pages > 0) {
            let vmpin = stats::vmpin_kb().ok()?;
            let b = fdinfo()?;
            if b.in_flight == Some(1) && b.pinned_pages == a.pinned_pages {
                return Some((a.pinned_pages, vmpin));
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    None
}

fn submit_backpressure_and_epoll(c: &Ctx) -> TestResult {
    let _ = c;
    let q = Queue::open_for(&Sysfs::new(), "nop").or_fail("open")?;
    let (sq, cq) = (q.sq_entries(), q.cq_entries());
    check!(sq == 256 && cq == 512, "rings {sq}/{cq}");
    let ep = epoll::create(epoll::CreateFlags::CLOEXEC).or_fail("epoll")?;
    epoll::add(
        &ep,
        &q,
        epoll::EventData::new_u64(77),
        epoll::EventFlags::IN,
    )
    .or_fail("add")?;
    let nops = |from: u64, n: u64| -> Vec<Cmd<'static>> {
        (from..from + n)
            .map(|u| Cmd::nop().with_user_data(u))
            .collect()
    };
    // Fill the submission ring twice over without reaping: KICK takes
    // until the completion ring (512) is spoken for, then nothing.
    let s1 = q.submit(&nops(0, 300)).or_fail("submit")?;
    check!(s1.queued == 256 && s1.accepted == 256, "first {s1:?}");
    let s2 = q.submit(&nops(256, 256)).or_fail("submit")?;
    check!(s2.queued == 256 && s2.accepted == 256, "second {s2:?}");
    let s3 = q.submit(&nops(512, 10)).or_fail("submit")?;
    check!(s3.queued == 10, "third {s3:?}");
    // The first 512 complete quickly; the 10 wait for room.
    let t0 = Instant::now();
    let end = t0 + T;
    while q.ready().or_fail("ready")? < 512 && Instant::now() < end {
        let mut evs = Vec::with_capacity(4);
        let ts = rustix::event::Timespec {
            tv_sec: 5,
            tv_nsec: 0,
        };
        epoll::wait(&ep, rustix::buffer::spare_capacity(&mut evs), Some(&ts)).or_fail("wait")?;
        check!(evs.iter().all(|e| e.data.u64() == 77), "epoll data");
    }
    println!("# 512 completions after {:?}", t0.elapsed());
    check!(
        q.ready().or_fail("ready")? == 512,
        "ready {}",
        q.ready().unwrap_or(0)
    );
    check!(
        q.sq_pending().or_fail("pending")? == 10,
        "pending with the cq full"
    );
    check!(
        q.kick().or_fail("kick")? == 0,
        "KICK took some with the cq full"
    );
    let got = q.reap(usize::MAX).or_fail("reap")?;
    let mut uds: Vec<u64> = got.iter().map(|c| c.user_data).collect();
    uds.sort_unstable();
    check!(
        uds == (0..512).collect::<Vec<_>>(),
        "user_data of the first 512"
    );
    check!(got.iter().all(|c| c.status == 0), "a NOP failed");
    check!(q.kick().or_fail("kick")? == 10, "KICK after reaping");
    let mut rest = Vec::new();
    while rest.len() < 10 {
        check!(q.wait(Some(T)).or_fail("wait")? > 0, "timeout");
        rest.extend(q.reap(usize::MAX).or_fail("reap")?);
    }
    let uds: Vec<u64> = rest.iter().map(|c| c.user_data).collect();
    check!(uds == (512..522).collect::<Vec<_>>(), "{uds:?}");
    check!(q.outstanding() == 0, "outstanding {}", q.outstanding());
    // wait() times out cleanly with nothing in flight.
    let t0 = Instant::now();
    check!(
        q.wait(Some(Duration::from_millis(200))).or_fail("wait")? == 0,
        "spurious"
    );
    check!(t0.elapsed() >= Duration::from_millis(190), "returned early");
    // run() handles more commands than either ring holds.
    let many: Vec<Cmd> = (0..2000).map(|_| Cmd::nop()).collect();
    let t0 = Instant::now();
    let done = q.run(&many, T).or_fail("run")?;
    println!("# 2000 NOPs in {:?}", t0.elapsed());
    check!(
        done.len() == 2000
            && done
                .iter()
                .all(|c| c.status == 0 && c.opcode == Some(WD_EDU_OP_NOP)),
        "2000 NOPs"
    );
    let st = q.status().or_fail("status")?;
    check!(st.submitted == 2522 && st.completed == 2522, "{st:?}");
    Ok(())
}

/// Bytes of `dst` are a prefix of `src` followed by untouched zeroes, as a
/// copy cut short leaves them.
fn prefix_then_zero(src: &[u8], dst: &[u8]) -> bool {
    let k = util::first_difference(src, dst).unwrap_or(dst.len());
    dst[k..].iter().all(|&b| b == 0)
}

fn failed_run_fences_the_queue(c: &Ctx) -> TestResult {
    let _ = c;
    let q = Queue::open_for(&Sysfs::new(), "dma_copy").or_fail("open")?;
    const LEN: usize = 64 << 10;
    let mut src = vec![0u8; LEN];
    fill_pattern(&mut src, 11, 0);
    let mut dst = vec![0u8; LEN];
    // 16 device transfers of 100 ms each cannot finish in 300 ms.
    let t0 = Instant::now();
    let r = q.run(&[Cmd::dma_copy(&src, &mut dst)], Duration::from_millis(300));
    println!("# timed-out run returned after {:?}", t0.elapsed());
    check!(matches!(r, Err(Error::Timeout { .. })), "{r:?}");
    // Once run() returns, nothing writes dst any more, and nothing is in
    // flight or left over in the rings.
    let fi = q.fdinfo().or_fail("fdinfo")?;
    check!(
        fi.in_flight == Some(0) && fi.state == QueueState::Started,
        "{fi:?}"
    );
    check!(q.ready().or_fail("ready")? == 0, "stale completions");
    check!(q.sq_pending().or_fail("pending")? == 0, "stale descriptors");
    let snap = dst.clone();
    check!(prefix_then_zero(&src, &dst), "dst is neither copy nor zero");
    std::thread::sleep(Duration::from_millis(300));
    check!(dst == snap, "dst changed after run() returned");
    check!(
        q.run_one(Cmd::nop(), T).is_ok(),
        "queue unusable after the fence"
    );
    // A panic in the callback fences too.
    dst.fill(0);
    let piece = 8 << 10;
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|i| {
        println!("# expected panic: {}", i.to_string().replace('\n', " "))
    }));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let cmds: Vec<Cmd> = src
            .chunks(piece)
            .zip(dst.chunks_mut(piece))
            .map(|(s, d)| Cmd::dma_copy(s, d))
            .collect();
        let _ = q.run_with(&cmds, T, |_, _| panic!("callback panics"));
    }));
    std::panic::set_hook(hook);
    check!(r.is_err(), "no panic");
    let fi = q.fdinfo().or_fail("fdinfo")?;
    check!(fi.in_flight == Some(0), "{fi:?}");
    let snap = dst.clone();
    std::thread::sleep(Duration::from_millis(300));
    check!(dst == snap, "dst changed after the panic");
    check!(
        util::first_difference(&src[..piece], &dst[..piece]).is_none(),
        "the first piece, whose completion was seen, is not copied"
    );
    let r = q.run_one(Cmd::factorial(5), T).or_fail("after panic")?;
    check!(r == 120, "5! = {r}");
    Ok(())
}

fn busy_when_all_queues_are_open(c: &Ctx) -> TestResult {
    let d = c.sysfs.device("edu-0").or_fail("edu-0")?;
    let free = c.sysfs.available_instances("edu-0").or_fail("avail")?;
    check!(free > 0, "edu-0 has {free} free queues");
    let mut qs = Vec::new();
    for i in 0..free {
        qs.push(Queue::open(&d).or_fail(&format!("queue {i}"))?);
    }
    let r = Queue::open(&d);
    check!(
        matches!(&r, Err(Error::Busy { device }) if device == "edu-0"),
        "queue {free}: {r:?}"
    );
    check!(
        c.sysfs.available_instances("edu-0").or_fail("avail")? == 0,
        "available_instances not 0"
    );
    let devs = c.sysfs.devices().or_fail("sysfs")?;
    let only0: Vec<_> = devs.iter().filter(|d| d.name == "edu-0").cloned().collect();
    check!(
        matches!(sysfs::select(&only0, "nop", None), Err(Error::Busy { .. })),
        "select on a full device"
    );
    // Selection moves on to the device with room.
    let other = Queue::open_for(&c.sysfs, "nop").or_fail("open_for")?;
    check!(
        other.device_name() == "edu-1",
        "open_for took {}",
        other.device_name()
    );
    drop(other);
    let o = c.wdctl(&["run", "factorial", "3", "--device", "edu-0"])?;
    let e = text(&o.stderr);
    check!(o.status.code() == Some(4), "{}", show(&o));
    // As root, wdctl can count the queues (fdinfo of every process).
    check!(
        e.contains(&format!("all {free} queues of edu-0 are in use")) && e.contains("hint: wait"),
        "{}",
        show(&o)
    );
    // wdctl queues shows every one of them, with this pid.
    let o = c.wdctl(&["queues"])?;
    check!(o.status.success(), "{}", show(&o));
    let me = std::process::id().to_string();
    let out = text(&o.stdout);
    let mine: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|r| r.first() == Some(&me.as_str()) && r.get(3) == Some(&"edu-0"))
        .collect();
    check!(mine.len() == free as usize, "wdctl queues: {out}");
    let mut idx: Vec<&str> = mine.iter().map(|r| r[4]).collect();
    idx.sort_unstable();
    idx.dedup();
    check!(idx.len() == free as usize, "queue indices {idx:?}");
    check!(mine.iter().all(|r| r[5] == "started"), "{out}");
    drop(qs);
    check!(
        c.sysfs.available_instances("edu-0").or_fail("avail")? == free,
        "queues not given back"
    );
    Ok(())
}

fn node_mode(path: &str) -> Result<u32, Outcome> {
    Ok(fs::metadata(path).or_fail(path)?.permissions().mode())
}

fn permission_denied_for_others(c: &Ctx) -> TestResult {
    let mode = node_mode("/dev/edu-0")?;
    if mode & 0o006 == 0o006 {
        return Err(Outcome::Skip(format!("/dev/edu-0 is mode {mode:o}")));
    }
    let o = c.wdctl_as_nobody(8 << 20, &["run", "factorial", "3", "--device", "edu-0"])?;
    check!(o.status.code() == Some(5), "{}", show(&o));
    let e = text(&o.stderr);
    check!(
        e.contains("/dev/edu-0: open: permission denied (EACCES)")
            && e.contains("ls -l /dev/edu-0"),
        "{}",
        show(&o)
    );
    // Other processes' fds are not visible to nobody; wdctl says so.
    let o = c.wdctl_as_nobody(8 << 20, &["queues"])?;
    check!(o.status.success(), "{}", show(&o));
    check!(
        text(&o.stderr).contains("permission denied); run as root"),
        "{}",
        show(&o)
    );
    Ok(())
}

fn memlock_limit(c: &Ctx) -> TestResult {
    // The library, in a child that drops root after opening: registered
    // buffers are not charged to RLIMIT_MEMLOCK, commands' own pins are.
    let o = Command::new(&c.me)
        .arg("--child-memlock")
        .output()
        .or_fail("child")?;
    for l in text(&o.stdout).lines() {
        println!("# child: {l}");
    }
    check!(o.status.success(), "child: {}", show(&o));
    // wdctl as nobody, with the node opened up for the test.
    let node = "/dev/edu-1";
    let mode = node_mode(node)?;
    fs::set_permissions(node, fs::Permissions::from_mode(0o666)).or_fail("chmod")?;
    let r = (|| -> TestResult {
        // No memlock at all: registered buffers still work, in one window
        // and one command, since nothing is pinned.
        let o = c.wdctl_as_nobody(
            0,
            &[
                "run",
                "memcpy",
                "--size",
                "1M",
                "--chunk",
                "1M",
                "--register",
                "-d",
                "edu-1",
            ],
        )?;
        check!(
            o.status.success(),
            "--register with RLIMIT_MEMLOCK 0: {}",
            show(&o)
        );
        check!(
            text(&o.stdout)
                .contains("in 1 commands of up to 1.0 MiB from registered buffers, verified"),
            "{}",
            show(&o)
        );
        // Without --register, the command pins its own memory: -ENOMEM,
        // and the memlock hint.
        let o = c.wdctl_as_nobody(0, &["run", "memcpy", "--size", "1M", "-d", "edu-1"])?;
        let e = text(&o.stderr);
        check!(o.status.code() == Some(6), "{}", show(&o));
        check!(
            e.contains("-ENOMEM")
                && e.contains("RLIMIT_MEMLOCK is 0 KiB")
                && e.contains("ulimit -l")
                && e.contains("--register"),
            "{}",
            show(&o)
        );
        // With some room, wdctl cuts the work to fit and succeeds.
        let o = c.wdctl_as_nobody(1 << 20, &["run", "memcpy", "--size", "3M", "-d", "edu-1"])?;
        check!(o.status.success(), "{}", show(&o));
        let o = c.wdctl_as_nobody(1 << 20, &["run", "crc32c", "--size", "3M", "-d", "edu-1"])?;
        check!(o.status.success(), "{}", show(&o));
        Ok(())
    })();
    fs::set_permissions(node, fs::Permissions::from_mode(mode & 0o7777)).or_fail("chmod back")?;
    r
}

fn device_gone(c: &Ctx) -> TestResult {
    let d = c.sysfs.device("edu-1").or_fail("edu-1")?;
    let bdf = d
        .parent
        .clone()
        .ok_or_else(|| Outcome::Fail("edu-1: no parent".into()))?;
    let q1 = Queue::open(&d).or_fail("open")?;
    let q2 = Queue::open(&d).or_fail("open")?;
    q1.run_one(Cmd::nop(), T).or_fail("nop")?;
    fs::write(format!("{EDU_DRV}/unbind"), &bdf).or_fail("unbind")?;
    let r = (|| -> TestResult {
        // An ioctl says ENODEV...
        let buf = vec![0u8; 4096];
        let r = q1.register(&buf, false);
        check!(
            matches!(r, Err(Error::DeviceGone { .. })),
            "register: {r:?}"
        );
        check!(q1.is_gone(), "q1 not marked gone");
        // ...and so does poll, before the ring is touched.
        let r = q2.wait(Some(Duration::from_secs(5)));
        check!(matches!(r, Err(Error::DeviceGone { .. })), "wait: {r:?}");
        let r = q2.run_one(Cmd::nop(), T);
        check!(matches!(r, Err(Error::DeviceGone { .. })), "run: {r:?}");
        let fi = q1.fdinfo().or_fail("fdinfo")?;
        check!(
            fi.state == QueueState::Dead && fi.in_flight == Some(0) && fi.submitted == fi.completed,
            "{fi:?}"
        );
        let devs = c.edu()?;
        check!(devs.len() == 1, "{} edu devices after unbind", devs.len());
        let o = c.wdctl(&["run", "factorial", "3", "--device", "edu-1"])?;
        check!(o.status.code() == Some(3), "{}", show(&o));
        Ok(())
    })();
    drop((q1, q2));
    fs::write(format!("{EDU_DRV}/bind"), &bdf).or_fail("bind")?;
    r?;
    let devs = c.edu()?;
    check!(devs.len() == 2, "{} edu devices after bind", devs.len());
    let o = c.wdctl(&["run", "factorial", "5", "--device", "edu-1"])?;
    check!(o.status.success(), "after rebind: {}", show(&o));
    Ok(())
}

// ---- helper modes ----

fn drop_root() -> rustix::io::Result<()> {
    use rustix::process::{Gid, Uid};
    let (g, u) = (Gid::from_raw(65534), Uid::from_raw(65534));
    rustix::thread::set_thread_groups(&[])?;
    rustix::thread::set_thread_res_gid(g, g, g)?;
    rustix::thread::set_thread_res_uid(u, u, u)
}

fn set_memlock(bytes: u64) -> rustix::io::Result<()> {
    rustix::process::setrlimit(
        Resource::Memlock,
        Rlimit {
            current: Some(bytes),
            maximum: Some(bytes),
        },
    )
}

fn as_nobody(args: &[String]) -> ! {
    let memlock: u64 = args[0].parse().expect("memlock bytes");
    // One thread, so the thread's credentials are the process's.
    set_memlock(memlock).expect("setrlimit");
    drop_root().expect("drop root");
    let e = Command::new(&args[1]).args(&args[2..]).exec();
    eprintln!("exec {}: {e}", args[1]);
    std::process::exit(127)
}

fn child_memlock() -> i32 {
    let run = || -> Result<(), String> {
        let q = Queue::open_for(&Sysfs::new(), "emulated_memcpy").map_err(|e| e.to_string())?;
        set_memlock(64 << 10).map_err(|e| e.to_string())?;
        drop_root().map_err(|e| e.to_string())?;
        println!("queue {} open, uid 65534, memlock 64 KiB", q.device_name());
        let budget = util::pin_budget();
        if budget.is_none_or(|b| b > 64 << 10) {
            return Err(format!("pin budget {budget:?}: CAP_IPC_LOCK or no limit"));
        }
        let base = stats::vmpin_kb().map_err(|e| format!("VmPin: {e}"))?;
        let status = || q.status().map_err(|e| format!("status: {e}"));
        let mut src = vec![0u8; 1 << 20];
        fill_pattern(&mut src, 31, 0);
        let mut dst = vec![0u8; 1 << 20];
        // 1 MiB registrations, each 16 times the limit: nothing is pinned,
        // so nothing is charged.
        let rs = q
            .register(&src, false)
            .map_err(|e| format!("1 MiB registration under a 64 KiB limit: {e}"))?;
        let rd = q
            .register(&dst, true)
            .map_err(|e| format!("writable 1 MiB registration: {e}"))?;
        let vmpin = stats::vmpin_kb().map_err(|e| format!("VmPin: {e}"))?;
        let st = status()?;
        let want = pages_spanned(&src) + pages_spanned(&dst);
        if vmpin != base || st.mapped_pages != want || st.pinned_pages != 0 || st.buffers != 2 {
            return Err(format!(
                "registered: VmPin {base} -> {vmpin} kB, want {want} mapped pages: {st:?}"
            ));
        }
        println!("two 1 MiB registrations: ok, {want} pages mapped, VmPin {vmpin} kB");
        // And they work: a copy and a CRC on the mirror.
        let n = q
            .run_one(Cmd::memcpy(&src, &mut dst).registered_only(), T)
            .map_err(|e| format!("1 MiB registered memcpy: {e}"))?;
        if n != 1 << 20 || util::first_difference(&src, &dst).is_some() {
            return Err(format!(
                "registered memcpy copied {n}, first difference {:?}",
                util::first_difference(&src, &dst)
            ));
        }
        let crc = q
            .run_one(Cmd::crc32c(&dst, 0).registered_only(), T)
            .map_err(|e| format!("1 MiB registered crc32c: {e}"))?;
        if crc != u64::from(crc32c(0, &src)) {
            return Err(format!("registered crc32c {crc:#x}"));
        }
        println!("1 MiB memcpy and crc32c on the registered buffers: ok");
        drop(rd);
        drop(rs);
        // A command on 1 MiB of plain memory pins it for itself, which the
        // limit refuses: the completion says -ENOMEM, the library
        // MemlockLimit.
        let plain = vec![3u8; 1 << 20];
        let done = q
            .run(&[Cmd::crc32c(&plain, 0)], T)
            .map_err(|e| format!("1 MiB plain crc32c: {e}"))?;
        if done[0].status != -12 {
            return Err(format!("1 MiB plain crc32c completed with {:?}", done[0]));
        }
        match done[0].ok() {
            Err(
                e @ Error::MemlockLimit {
                    opcode: WD_EDU_OP_EMU_CRC32C,
                    limit: Some(65536),
                    ..
                },
            ) if e.to_string().contains("RLIMIT_MEMLOCK (limit 64 KiB)") => {
                println!("1 MiB plain command: -ENOMEM, MemlockLimit, as it should: {e}")
            }
            other => return Err(format!("1 MiB plain crc32c: {other:?}")),
        }
        let mut out = vec![0u8; 1 << 20];
        match q.run_one(Cmd::memcpy(&plain, &mut out), T) {
            Err(Error::MemlockLimit {
                opcode: WD_EDU_OP_EMU_MEMCPY,
                limit: Some(65536),
                ..
            }) => println!("1 MiB plain memcpy: MemlockLimit, as it should"),
            other => return Err(format!("1 MiB plain memcpy: {other:?}")),
        }
        // A command whose pins fit runs.
        let small = vec![4u8; 8192];
        let crc = q
            .run_one(Cmd::crc32c(&small, 0), T)
            .map_err(|e| format!("8 KiB plain crc32c: {e}"))?;
        if crc != u64::from(crc32c(0, &small)) {
            return Err(format!("8 KiB plain crc32c {crc:#x}"));
        }
        println!("8 KiB plain command: ok");
        let vmpin = stats::vmpin_kb().map_err(|e| format!("VmPin: {e}"))?;
        let st = status()?;
        if vmpin != base || st.pinned_pages != 0 || st.mapped_pages != 0 || st.buffers != 0 {
            return Err(format!("at the end: VmPin {base} -> {vmpin} kB, {st:?}"));
        }
        Ok(())
    };
    match run() {
        Ok(()) => 0,
        Err(e) => {
            println!("FAIL: {e}");
            1
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("--as-nobody") => as_nobody(&args[2..]),
        Some("--child-memlock") => std::process::exit(child_memlock()),
        _ => {}
    }
    let me = std::env::current_exe().expect("current_exe");
    let ctx = Ctx {
        sysfs: Sysfs::new(),
        wdctl: find_wdctl(&me),
        me,
    };
    type Test = (&'static str, fn(&Ctx) -> TestResult);
    let tests: &[Test] = &[
        ("list_finds_two_edu_devices", list_finds_two_edu_devices),
        ("select_by_algorithm", select_by_algorithm),
        ("select_by_numa_node", select_by_numa_node),
        ("factorial_through_the_ring", factorial_through_the_ring),
        ("memcpy_with_verification", memcpy_with_verification),
        ("wdctl_memcpy_and_crc32c", wdctl_memcpy_and_crc32c),
        (
            "register_guard_maps_without_pins",
            register_guard_maps_without_pins,
        ),
        (
            "submit_backpressure_and_epoll",
            submit_backpressure_and_epoll,
        ),
        ("failed_run_fences_the_queue", failed_run_fences_the_queue),
        (
            "busy_when_all_queues_are_open",
            busy_when_all_queues_are_open,
        ),
        ("permission_denied_for_others", permission_denied_for_others),
        ("memlock_limit", memlock_limit),
        ("device_gone", device_gone),
    ];
    println!("TAP version 13");
    println!("1..{}", tests.len());
    println!("# wdctl: {:?}", ctx.wdctl);
    let (mut pass, mut fail, mut skip) = (0, 0, 0);
    for (i, (name, f)) in tests.iter().enumerate() {
        let t0 = Instant::now();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&ctx)));
        println!("# {name}: {:.1} s", t0.elapsed().as_secs_f64());
        match r {
            Ok(Ok(())) => {
                pass += 1;
                println!("ok {} {name}", i + 1);
            }
            Ok(Err(Outcome::Skip(why))) => {
                skip += 1;
                println!("ok {} {name} # SKIP {why}", i + 1);
            }
            Ok(Err(Outcome::Fail(why))) => {
                fail += 1;
                for l in why.lines() {
                    println!("# {l}");
                }
                println!("not ok {} {name}", i + 1);
            }
            Err(_) => {
                fail += 1;
                println!("# panicked");
                println!("not ok {} {name}", i + 1);
            }
        }
    }
    println!("# Totals: pass:{pass} fail:{fail} xfail:0 xpass:0 skip:{skip} error:0");
    std::process::exit(i32::from(fail > 0));
}

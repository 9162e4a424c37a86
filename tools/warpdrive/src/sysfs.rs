// SPDX-License-Identifier: GPL-2.0
//! Device discovery through sysfs, as uacce's user space (UADK's libwd)
//! does it, and the choice of a device for an algorithm.
//!
//! libwd reads, under `/sys/class/uacce/<dev>/`: `api`, `flags`,
//! `algorithms`, `available_instances`, `region_mmio_size`,
//! `region_dus_size`, `isolate` (when present; an isolated device is
//! skipped) and `device/numa_node` (negative means "not configured" and is
//! taken as node 0). Some uacce versions also show `node_id` in the class
//! directory; it is used when present.

use std::cmp::Ordering;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::abi::{WD_DEV_SHADOW_RING, WD_DEV_SVA};
use crate::error::{Error, Op, Result};

/// Where to look: the sysfs root and the device node directory. Both can be
/// pointed at a fake tree, for tests.
#[derive(Clone, Debug)]
pub struct Sysfs {
    sys: PathBuf,
    dev: PathBuf,
}

impl Default for Sysfs {
    fn default() -> Self {
        Self::new()
    }
}

/// One uacce class device and its attributes. An attribute that is absent
/// is `None`; one that is present but malformed is `None` too, with the
/// reason in `problems`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Device {
    /// Class device name, e.g. `edu-0`.
    pub name: String,
    /// Its sysfs directory.
    pub sysfs: PathBuf,
    /// Its device node, e.g. `/dev/edu-0`.
    pub node: PathBuf,
    /// `api`.
    pub api: Option<String>,
    /// `flags` (`WD_DEV_*`).
    pub flags: Option<u32>,
    /// `algorithms`, one per line.
    pub algorithms: Vec<String>,
    /// `available_instances`: queues that can still be opened.
    pub available_instances: Option<i64>,
    /// `isolate`, where the driver tracks it.
    pub isolate: Option<bool>,
    /// `isolate_strategy`, where the driver has it.
    pub isolate_strategy: Option<u64>,
    /// `region_mmio_size` in bytes (hidden when zero).
    pub region_mmio_size: Option<u64>,
    /// `region_dus_size` in bytes (hidden when zero).
    pub region_dus_size: Option<u64>,
    /// NUMA node: `node_id`, else `device/numa_node`; -1 if not configured.
    pub numa_node: Option<i32>,
    /// The parent device (the `device` link's target name, a PCI BDF).
    pub parent: Option<String>,
    /// The parent's driver.
    pub driver: Option<String>,
    /// Attributes that could not be parsed.
    pub problems: Vec<String>,
}

impl Device {
    /// Whether `algorithms` lists `alg` (a whole line).
    pub fn has_algorithm(&self, alg: &str) -> bool {
        self.algorithms.iter().any(|a| a == alg)
    }

    /// Whether the device uses the shadow ring (`WD_DEV_SHADOW_RING`).
    pub fn is_shadow_ring(&self) -> bool {
        self.flags.is_some_and(|f| f & WD_DEV_SHADOW_RING != 0)
    }

    /// Whether the device does SVA (`WD_DEV_SVA`).
    pub fn is_sva(&self) -> bool {
        self.flags.is_some_and(|f| f & WD_DEV_SVA != 0)
    }

    /// Whether the device is isolated after errors (libwd skips those).
    pub fn is_isolated(&self) -> bool {
        self.isolate == Some(true)
    }

    /// The node libwd would use: a negative or unknown node is node 0.
    pub fn effective_node(&self) -> i32 {
        self.numa_node.filter(|&n| n >= 0).unwrap_or(0)
    }

    /// Whether this library can open queues of the device: a shadow-ring
    /// device whose ring region has a size.
    pub fn is_usable(&self) -> bool {
        self.is_shadow_ring() && self.region_dus_size.is_some()
    }
}

/// Reads an attribute: `None` if it does not exist.
fn read_attr(path: &Path) -> io::Result<Option<String>> {
    match fs::read(path) {
        Ok(b) => Ok(Some(String::from_utf8_lossy(&b).into_owned())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Parses a sysfs number as the kernel prints it with `"%d\n"`: optional
/// '-', digits, at most one trailing newline.
pub fn parse_int<T: std::str::FromStr>(s: &str) -> Option<T> {
    let s = s.strip_suffix('\n').unwrap_or(s);
    let digits = s.strip_prefix('-').unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Natural order of device names: `edu-2` before `edu-10`.
pub fn name_cmp(a: &str, b: &str) -> Ordering {
    let split = |s: &str| {
        let t = s.trim_end_matches(|c: char| c.is_ascii_digit());
        (t.to_string(), s[t.len()..].parse::<u64>().ok())
    };
    let (ta, na) = split(a);
    let (tb, nb) = split(b);
    ta.cmp(&tb).then(na.cmp(&nb)).then_with(|| a.cmp(b))
}

/// Parses a CPU list as sysfs prints it (`cpulist`, `online`):
/// comma-separated CPUs and inclusive ranges, `"0-3,8,10-11\n"`, in
/// ascending order without repeats. An empty list (a node without CPUs) is
/// empty; anything malformed is `None`.
pub fn parse_cpulist(s: &str) -> Option<Vec<usize>> {
    let s = s.strip_suffix('\n').unwrap_or(s);
    let mut cpus: Vec<usize> = Vec::new();
    if s.is_empty() {
        return Some(cpus);
    }
    let num = |t: &str| -> Option<usize> {
        (!t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
            .then(|| t.parse().ok())
            .flatten()
    };
    for part in s.split(',') {
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (num(a)?, num(b)?),
            None => (num(part)?, num(part)?),
        };
        if lo > hi || cpus.last().is_some_and(|&l| l >= lo) {
            return None;
        }
        cpus.extend(lo..=hi);
    }
    Some(cpus)
}

fn link_name(path: &Path) -> Option<String> {
    let target = fs::read_link(path).ok()?;
    Some(target.file_name()?.to_string_lossy().into_owned())
}

impl Sysfs {
    /// The real system: `/sys` and `/dev`.
    pub fn new() -> Self {
        Self::with_root("/sys", "/dev")
    }

    /// A sysfs tree at `sys` (which holds `class/uacce/`) and device nodes
    /// in `dev`.
    pub fn with_root(sys: impl Into<PathBuf>, dev: impl Into<PathBuf>) -> Self {
        Self {
            sys: sys.into(),
            dev: dev.into(),
        }
    }

    /// `<sys>/class/uacce`.
    pub fn class_dir(&self) -> PathBuf {
        self.sys.join("class/uacce")
    }

    /// The names of all uacce class devices, in natural order. No class
    /// directory (warpdrive not loaded) is an empty list.
    pub fn device_names(&self) -> Result<Vec<String>> {
        let dir = self.class_dir();
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::from_io(Op::Discover, &dir.to_string_lossy(), e)),
        };
        let mut names = Vec::new();
        for ent in rd {
            let ent = ent.map_err(|e| Error::from_io(Op::Discover, &dir.to_string_lossy(), e))?;
            let name = ent.file_name().to_string_lossy().into_owned();
            if !name.starts_with('.') {
                names.push(name);
            }
        }
        names.sort_by(|a, b| name_cmp(a, b));
        Ok(names)
    }

    /// All uacce class devices with their attributes.
    pub fn devices(&self) -> Result<Vec<Device>> {
        self.device_names()?
            .iter()
            .map(|n| self.device(n))
            .collect()
    }

    /// The device called `name`, or [`Error::NoDevice`].
    pub fn device(&self, name: &str) -> Result<Device> {
        let dir = self.class_dir().join(name);
        if name.contains('/') || name.starts_with('.') || !dir.exists() {
            return Err(Error::NoDevice {
                reason: format!("no device {name} under {}", self.class_dir().display()),
            });
        }
        let mut d = Device {
            name: name.to_string(),
            node: self.dev.join(name),
            sysfs: dir.clone(),
            ..Device::default()
        };
        let target = dir.to_string_lossy().into_owned();
        let mut problems = Vec::new();
        let raw = |attr: &str| -> Result<Option<String>> {
            read_attr(&dir.join(attr)).map_err(|e| Error::from_io(Op::Discover, &target, e))
        };
        let mut num = |attr: &str, raw: Option<String>| {
            let v = raw.as_deref().and_then(parse_int::<i64>);
            if raw.is_some() && v.is_none() {
                problems.push(format!("{attr}: malformed {:?}", raw.unwrap_or_default()));
            }
            v
        };
        d.api = raw("api")?.map(|s| s.trim_end_matches('\n').to_string());
        d.flags = num("flags", raw("flags")?).and_then(|v| u32::try_from(v).ok());
        d.algorithms = raw("algorithms")?
            .unwrap_or_default()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect();
        d.available_instances = num("available_instances", raw("available_instances")?);
        d.isolate = num("isolate", raw("isolate")?).map(|v| v == 1);
        d.isolate_strategy =
            num("isolate_strategy", raw("isolate_strategy")?).and_then(|v| u64::try_from(v).ok());
        d.region_mmio_size =
            num("region_mmio_size", raw("region_mmio_size")?).and_then(|v| u64::try_from(v).ok());
        d.region_dus_size =
            num("region_dus_size", raw("region_dus_size")?).and_then(|v| u64::try_from(v).ok());
        let node = match raw("node_id")? {
            Some(s) => Some(("node_id", s)),
            None => raw("device/numa_node")?.map(|s| ("device/numa_node", s)),
        };
        d.numa_node = node
            .and_then(|(attr, s)| num(attr, Some(s)))
            .and_then(|v| i32::try_from(v).ok());
        d.parent = link_name(&dir.join("device"));
        d.driver = link_name(&dir.join("device/driver"));
        d.problems = problems;
        Ok(d)
    }

    /// `available_instances` of `name` now.
    pub fn available_instances(&self, name: &str) -> Result<i64> {
        let path = self.class_dir().join(name).join("available_instances");
        let s = read_attr(&path)
            .map_err(|e| Error::from_io(Op::Discover, &path.to_string_lossy(), e))?
            .ok_or_else(|| Error::NoDevice {
                reason: format!("{} does not exist", path.display()),
            })?;
        parse_int(&s).ok_or_else(|| Error::Protocol(format!("{}: {s:?}", path.display())))
    }

    /// The NUMA node of the CPU this thread runs on, from
    /// `<sys>/devices/system/cpu/cpuN/nodeM`.
    pub fn current_node(&self) -> Option<i32> {
        let cpu = rustix::thread::sched_getcpu();
        self.node_of_cpu(cpu)
    }

    /// The NUMA nodes that sysfs shows (`<sys>/devices/system/node/nodeN`),
    /// in ascending order. A kernel without NUMA shows none.
    pub fn numa_nodes(&self) -> Vec<i32> {
        let Ok(rd) = fs::read_dir(self.sys.join("devices/system/node")) else {
            return Vec::new();
        };
        let mut nodes: Vec<i32> = rd
            .flatten()
            .filter_map(|e| {
                let n = e.file_name();
                let n = n.to_str()?.strip_prefix("node")?;
                (!n.starts_with('-')).then(|| parse_int(n)).flatten()
            })
            .collect();
        nodes.sort_unstable();
        nodes
    }

    /// The CPUs of NUMA node `node`, from
    /// `<sys>/devices/system/node/node<N>/cpulist`: `Ok(None)` if the node
    /// does not exist.
    pub fn node_cpus(&self, node: i32) -> Result<Option<Vec<usize>>> {
        let path = self
            .sys
            .join(format!("devices/system/node/node{node}/cpulist"));
        let Some(s) = read_attr(&path)
            .map_err(|e| Error::from_io(Op::Discover, &path.to_string_lossy(), e))?
        else {
            return Ok(None);
        };
        parse_cpulist(&s)
            .map(Some)
            .ok_or_else(|| Error::Protocol(format!("{}: {s:?}", path.display())))
    }

    /// The NUMA node of `cpu`, if sysfs says.
    pub fn node_of_cpu(&self, cpu: usize) -> Option<i32> {
        let dir = self.sys.join(format!("devices/system/cpu/cpu{cpu}"));
        fs::read_dir(dir).ok()?.flatten().find_map(|e| {
            let n = e.file_name();
            let n = n.to_str()?.strip_prefix("node")?;
            parse_int(n)
        })
    }
}

/// Orders devices for an algorithm the way libwd's `wd_find_dev_by_numa()`
/// does, with a fallback: usable devices offering `alg` that are not
/// isolated, those on `node` first (when given), then by most free queues,
/// then by name. Devices with no free queue come last.
///
/// Errors: [`Error::NoDevice`] if no device offers `alg`.
pub fn candidates<'d>(
    devices: &'d [Device],
    alg: &str,
    node: Option<i32>,
) -> Result<Vec<&'d Device>> {
    let mut c: Vec<&Device> = devices
        .iter()
        .filter(|d| d.is_usable() && d.has_algorithm(alg) && !d.is_isolated())
        .collect();
    if c.is_empty() {
        let mut reason = format!("no device offers algorithm {alg:?}");
        let isolated: Vec<&str> = devices
            .iter()
            .filter(|d| d.has_algorithm(alg) && d.is_isolated())
            .map(|d| d.name.as_str())
            .collect();
        if devices.is_empty() {
            reason = "no uacce device is registered".to_string();
        } else if !isolated.is_empty() {
            reason.push_str(&format!(" (isolated: {})", isolated.join(", ")));
        }
        return Err(Error::NoDevice { reason });
    }
    // Unknown counts sort as one free queue: worth a try.
    let free = |d: &Device| d.available_instances.unwrap_or(1).max(0);
    let key = |d: &Device| {
        (
            free(d) == 0,
            node.is_some_and(|n| d.effective_node() != n),
            std::cmp::Reverse(free(d)),
        )
    };
    c.sort_by(|a, b| key(a).cmp(&key(b)).then_with(|| name_cmp(&a.name, &b.name)));
    Ok(c)
}

/// The best device for `alg` (see [`candidates`]).
///
/// Errors: [`Error::NoDevice`] if none offers it, [`Error::Busy`] if all
/// that do have no free queue.
pub fn select<'d>(devices: &'d [Device], alg: &str, node: Option<i32>) -> Result<&'d Device> {
    let c = candidates(devices, alg, node)?;
    let best = c[0];
    if best.available_instances == Some(0) {
        let names: Vec<&str> = c.iter().map(|d| d.name.as_str()).collect();
        return Err(Error::Busy {
            device: names.join(", "),
        });
    }
    Ok(best)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempDir;

    const EDU_ALGS: &str = "factorial\ndma_copy\nnop\nemulated_memcpy\nemulated_crc32c\n";

    fn fake_dev(root: &Path, name: &str, avail: i64, node: &str, algs: &str) {
        let id: u32 = name.rsplit('-').next().unwrap().parse().unwrap();
        let pci = root.join(format!("devices/pci0000:00/0000:00:{:02x}.0", id + 5));
        fs::create_dir_all(&pci).unwrap();
        fs::write(pci.join("numa_node"), node).unwrap();
        let drv = root.join("bus/pci/drivers/warpdrive_edu");
        fs::create_dir_all(&drv).unwrap();
        std::os::unix::fs::symlink(&drv, pci.join("driver")).unwrap();
        let d = root.join("class/uacce").join(name);
        fs::create_dir_all(&d).unwrap();
        std::os::unix::fs::symlink(&pci, d.join("device")).unwrap();
        for (a, v) in [
            ("api", "warpdrive_edu_v2\n".to_string()),
            ("flags", "16\n".to_string()),
            ("available_instances", format!("{avail}\n")),
            ("algorithms", algs.to_string()),
            ("region_mmio_size", "4096\n".to_string()),
            ("region_dus_size", "36864\n".to_string()),
        ] {
            fs::write(d.join(a), v).unwrap();
        }
    }

    #[test]
    fn parses_a_fake_tree() {
        let t = TempDir::new();
        fake_dev(t.path(), "edu-1", 4, "-1\n", EDU_ALGS);
        fake_dev(t.path(), "edu-0", 3, "0\n", EDU_ALGS);
        fake_dev(t.path(), "edu-10", 1, "1\n", "nop\n");
        let s = Sysfs::with_root(t.path(), "/dev");
        let devs = s.devices().unwrap();
        let names: Vec<&str> = devs.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["edu-0", "edu-1", "edu-10"]);
        let d = &devs[0];
        assert_eq!(d.api.as_deref(), Some("warpdrive_edu_v2"));
        assert_eq!(d.flags, Some(16));
        assert!(d.is_shadow_ring() && !d.is_sva() && d.is_usable());
        assert_eq!(d.algorithms.len(), 5);
        assert!(d.has_algorithm("emulated_crc32c"));
        assert!(!d.has_algorithm("emulated"));
        assert_eq!(d.available_instances, Some(3));
        assert_eq!(d.isolate, None);
        assert_eq!(d.region_mmio_size, Some(4096));
        assert_eq!(d.region_dus_size, Some(36864));
        assert_eq!(d.numa_node, Some(0));
        assert_eq!(d.node, Path::new("/dev/edu-0"));
        assert_eq!(d.parent.as_deref(), Some("0000:00:05.0"));
        assert_eq!(d.driver.as_deref(), Some("warpdrive_edu"));
        assert!(d.problems.is_empty(), "{:?}", d.problems);
        assert_eq!(devs[1].numa_node, Some(-1));
        assert_eq!(devs[1].effective_node(), 0);
        assert_eq!(s.available_instances("edu-1").unwrap(), 4);
    }

    #[test]
    fn node_id_isolate_and_malformed() {
        let t = TempDir::new();
        fake_dev(t.path(), "edu-0", 2, "0\n", EDU_ALGS);
        let d = t.path().join("class/uacce/edu-0");
        fs::write(d.join("node_id"), "3\n").unwrap();
        fs::write(d.join("isolate"), "1\n").unwrap();
        fs::write(d.join("flags"), "0x10\n").unwrap();
        fs::write(d.join("available_instances"), "2\n\n").unwrap();
        fs::remove_file(d.join("region_dus_size")).unwrap();
        let dev = Sysfs::with_root(t.path(), "/dev").device("edu-0").unwrap();
        assert_eq!(dev.numa_node, Some(3));
        assert!(dev.is_isolated());
        assert_eq!(dev.flags, None);
        assert_eq!(dev.available_instances, None);
        assert_eq!(dev.region_dus_size, None);
        assert!(!dev.is_usable());
        assert_eq!(dev.problems.len(), 2, "{:?}", dev.problems);
    }

    #[test]
    fn missing_tree_and_device() {
        let t = TempDir::new();
        let s = Sysfs::with_root(t.path(), "/dev");
        assert!(s.devices().unwrap().is_empty());
        assert!(matches!(s.device("edu-0"), Err(Error::NoDevice { .. })));
        assert!(matches!(s.device("../x"), Err(Error::NoDevice { .. })));
        assert!(matches!(
            select(&[], "nop", None),
            Err(Error::NoDevice { reason }) if reason.contains("no uacce device")
        ));
    }

    #[test]
    fn cpu_node() {
        let t = TempDir::new();
        let c = t.path().join("devices/system/cpu/cpu3");
        fs::create_dir_all(c.join("node1")).unwrap();
        fs::create_dir_all(c.join("cache")).unwrap();
        let s = Sysfs::with_root(t.path(), "/dev");
        assert_eq!(s.node_of_cpu(3), Some(1));
        assert_eq!(s.node_of_cpu(0), None);
    }

    #[test]
    fn cpulists() {
        assert_eq!(
            parse_cpulist("0-3,8,10-11\n"),
            Some(vec![0, 1, 2, 3, 8, 10, 11])
        );
        assert_eq!(parse_cpulist("1\n"), Some(vec![1]));
        assert_eq!(parse_cpulist("0"), Some(vec![0]));
        assert_eq!(parse_cpulist("\n"), Some(vec![]));
        for bad in [
            "3-1", "1,1", "2,0", "a", "1-", "-1", "1,,2", " 1", "1-2-3", "+1",
        ] {
            assert_eq!(parse_cpulist(bad), None, "{bad:?}");
        }
    }

    /// A machine like the test guest's: two nodes of one CPU each, an edu
    /// device on each.
    fn two_node_tree(root: &Path) {
        fake_dev(root, "edu-0", 4, "0\n", EDU_ALGS);
        fake_dev(root, "edu-1", 4, "1\n", EDU_ALGS);
        for (node, cpu) in [(0, 0), (1, 1)] {
            let n = root.join(format!("devices/system/node/node{node}"));
            fs::create_dir_all(&n).unwrap();
            fs::write(n.join("cpulist"), format!("{cpu}\n")).unwrap();
            let c = root.join(format!("devices/system/cpu/cpu{cpu}"));
            fs::create_dir_all(c.join(format!("node{node}"))).unwrap();
        }
        // Not nodes.
        fs::create_dir_all(root.join("devices/system/node/power")).unwrap();
        fs::write(root.join("devices/system/node/online"), "0-1\n").unwrap();
    }

    #[test]
    fn numa_nodes_and_their_cpus() {
        let t = TempDir::new();
        two_node_tree(t.path());
        let s = Sysfs::with_root(t.path(), "/dev");
        assert_eq!(s.numa_nodes(), [0, 1]);
        assert_eq!(s.node_cpus(0).unwrap(), Some(vec![0]));
        assert_eq!(s.node_cpus(1).unwrap(), Some(vec![1]));
        assert_eq!(s.node_cpus(2).unwrap(), None);
        fs::write(t.path().join("devices/system/node/node1/cpulist"), "x\n").unwrap();
        assert!(matches!(s.node_cpus(1), Err(Error::Protocol(_))));
        // No NUMA at all.
        let t = TempDir::new();
        let s = Sysfs::with_root(t.path(), "/dev");
        assert!(s.numa_nodes().is_empty());
        assert_eq!(s.node_cpus(0).unwrap(), None);
    }

    #[test]
    fn selection_follows_the_cpus_node() {
        let t = TempDir::new();
        two_node_tree(t.path());
        let s = Sysfs::with_root(t.path(), "/dev");
        let devs = s.devices().unwrap();
        let order = |node: Option<i32>| -> Vec<String> {
            candidates(&devs, "emulated_memcpy", node)
                .unwrap()
                .iter()
                .map(|d| d.name.clone())
                .collect()
        };
        // What a thread pinned to each node's CPUs would see.
        for (node, want) in [(0, ["edu-0", "edu-1"]), (1, ["edu-1", "edu-0"])] {
            for cpu in s.node_cpus(node).unwrap().unwrap() {
                assert_eq!(s.node_of_cpu(cpu), Some(node));
                assert_eq!(order(s.node_of_cpu(cpu)), want, "cpu {cpu}");
            }
        }
        // The node wins over more free queues elsewhere, not over none.
        fs::write(
            t.path().join("class/uacce/edu-0/available_instances"),
            "1\n",
        )
        .unwrap();
        let devs = s.devices().unwrap();
        assert_eq!(select(&devs, "nop", Some(0)).unwrap().name, "edu-0");
        fs::write(
            t.path().join("class/uacce/edu-0/available_instances"),
            "0\n",
        )
        .unwrap();
        let devs = s.devices().unwrap();
        assert_eq!(select(&devs, "nop", Some(0)).unwrap().name, "edu-1");
        // An unknown CPU (no sysfs entry) gives no preference.
        assert_eq!(s.node_of_cpu(7), None);
    }

    fn dev(name: &str, avail: Option<i64>, node: i32, algs: &[&str]) -> Device {
        Device {
            name: name.into(),
            flags: Some(WD_DEV_SHADOW_RING),
            region_dus_size: Some(36864),
            available_instances: avail,
            numa_node: Some(node),
            algorithms: algs.iter().map(|s| s.to_string()).collect(),
            ..Device::default()
        }
    }

    #[test]
    fn selection() {
        let devs = [
            dev("edu-0", Some(1), 0, &["nop", "factorial"]),
            dev("edu-1", Some(4), 1, &["nop", "factorial"]),
            dev("edu-2", Some(2), 1, &["nop"]),
            dev("zip-0", Some(8), 0, &["deflate"]),
        ];
        // Same node first, even with fewer free queues.
        assert_eq!(select(&devs, "factorial", Some(0)).unwrap().name, "edu-0");
        assert_eq!(select(&devs, "factorial", Some(1)).unwrap().name, "edu-1");
        // No node preference: most free queues.
        assert_eq!(select(&devs, "nop", None).unwrap().name, "edu-1");
        // A node with no such device falls back to any.
        assert_eq!(select(&devs, "deflate", Some(1)).unwrap().name, "zip-0");
        assert_eq!(select(&devs, "nop", Some(7)).unwrap().name, "edu-1");
        let order: Vec<&str> = candidates(&devs, "nop", Some(0))
            .unwrap()
            .iter()
            .map(|d| d.name.as_str())
            .collect();
        assert_eq!(order, ["edu-0", "edu-1", "edu-2"]);
        assert!(matches!(
            select(&devs, "sha256", None),
            Err(Error::NoDevice { reason }) if reason.contains("sha256")
        ));
    }

    #[test]
    fn selection_skips_busy_isolated_and_unusable() {
        let mut iso = dev("edu-0", Some(4), 0, &["nop"]);
        iso.isolate = Some(true);
        let mut sva = dev("sva-0", Some(4), 0, &["nop"]);
        sva.flags = Some(WD_DEV_SVA);
        let devs = [
            iso,
            sva,
            dev("edu-1", Some(0), 0, &["nop"]),
            dev("edu-2", Some(1), 1, &["nop"]),
        ];
        // The busy same-node device loses to a free one elsewhere.
        assert_eq!(select(&devs, "nop", Some(0)).unwrap().name, "edu-2");
        let devs = [devs[0].clone(), devs[2].clone()];
        assert!(matches!(
            select(&devs, "nop", None),
            Err(Error::Busy { device }) if device == "edu-1"
        ));
        let devs = [devs[0].clone()];
        assert!(matches!(
            select(&devs, "nop", None),
            Err(Error::NoDevice { reason }) if reason.contains("isolated: edu-0")
        ));
        // Unknown counts are tried after known free ones.
        let devs = [
            dev("a-0", None, 0, &["nop"]),
            dev("b-0", Some(2), 0, &["nop"]),
        ];
        assert_eq!(select(&devs, "nop", None).unwrap().name, "b-0");
    }

    #[test]
    fn numbers_and_names() {
        assert_eq!(parse_int::<i64>("12\n"), Some(12));
        assert_eq!(parse_int::<i64>("-1\n"), Some(-1));
        assert_eq!(parse_int::<i64>("12"), Some(12));
        assert_eq!(parse_int::<i64>(""), None);
        assert_eq!(parse_int::<i64>("\n"), None);
        assert_eq!(parse_int::<i64>("1 2\n"), None);
        assert_eq!(parse_int::<i64>("+1\n"), None);
        assert_eq!(parse_int::<u32>("-1\n"), None);
        assert_eq!(parse_int::<u32>("99999999999\n"), None);
        assert_eq!(name_cmp("edu-2", "edu-10"), Ordering::Less);
        assert_eq!(name_cmp("edu-10", "hpre-0"), Ordering::Less);
        assert_eq!(name_cmp("edu", "edu-0"), Ordering::Less);
    }
}

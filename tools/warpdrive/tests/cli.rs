// SPDX-License-Identifier: GPL-2.0
//! wdctl on the host, against fake sysfs and procfs trees: no device needed.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

struct Tree(PathBuf);

impl Tree {
    fn new(name: &str) -> Self {
        let p = std::env::temp_dir().join(format!("wdctl-cli-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).unwrap();
        Self(p)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn wdctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wdctl"))
        .args(args)
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn fake_edu(root: &Path, id: u32, avail: u32) {
    let pci = root.join(format!("devices/pci0000:00/0000:00:0{}.0", id + 3));
    fs::create_dir_all(&pci).unwrap();
    fs::write(pci.join("numa_node"), "-1\n").unwrap();
    let d = root.join(format!("class/uacce/edu-{id}"));
    fs::create_dir_all(&d).unwrap();
    symlink(&pci, d.join("device")).unwrap();
    for (a, v) in [
        ("api", "warpdrive_edu_v2\n".to_string()),
        ("flags", "16\n".to_string()),
        ("available_instances", format!("{avail}\n")),
        (
            "algorithms",
            "factorial\ndma_copy\nnop\nemulated_memcpy\nemulated_crc32c\n".to_string(),
        ),
        ("region_mmio_size", "4096\n".to_string()),
        ("region_dus_size", "36864\n".to_string()),
    ] {
        fs::write(d.join(a), v).unwrap();
    }
}

#[test]
fn list_shows_devices() {
    let t = Tree::new("list");
    fake_edu(t.path(), 0, 4);
    fake_edu(t.path(), 1, 2);
    let sys = t.path().to_str().unwrap();
    let out = wdctl(&["--sysfs", sys, "list"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    let lines: Vec<&str> = s.lines().collect();
    assert_eq!(lines.len(), 3, "{s}");
    assert!(lines[0].starts_with("DEVICE"), "{s}");
    assert!(lines[1].starts_with("edu-0 "), "{s}");
    assert!(lines[2].starts_with("edu-1 "), "{s}");
    for want in [
        "warpdrive_edu_v2",
        "0x10 shadow_ring",
        "0000:00:03.0",
        "36864",
        "factorial,dma_copy,nop,emulated_memcpy,emulated_crc32c",
    ] {
        assert!(lines[1].contains(want), "{want}: {s}");
    }
    let cols: Vec<&str> = lines[2].split_whitespace().collect();
    assert_eq!(cols[4], "2", "free queues: {s}");
    assert_eq!(cols[5], "-1", "node: {s}");
}

#[test]
fn no_device_says_what_to_do() {
    let t = Tree::new("empty");
    let sys = t.path().to_str().unwrap();
    for args in [
        vec!["--sysfs", sys, "list"],
        vec!["--sysfs", sys, "run", "factorial", "5"],
        vec!["--sysfs", sys, "run", "crc32c", "--size", "4k"],
    ] {
        let out = wdctl(&args);
        assert_eq!(out.status.code(), Some(3), "{args:?}");
        let e = text(&out.stderr);
        assert!(e.contains("no device"), "{e}");
        assert!(e.contains("hint: is warpdrive_edu loaded?"), "{e}");
    }
}

#[test]
fn named_device_checks() {
    let t = Tree::new("named");
    fake_edu(t.path(), 0, 4);
    let sys = t.path().to_str().unwrap();
    let dev = t.path().join("dev");
    fs::create_dir_all(&dev).unwrap();
    let dev = dev.to_str().unwrap();
    let out = wdctl(&[
        "--sysfs",
        sys,
        "--dev",
        dev,
        "run",
        "factorial",
        "5",
        "--device",
        "edu-7",
    ]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        text(&out.stderr).contains("no device edu-7"),
        "{}",
        text(&out.stderr)
    );
    // The class device exists but its node does not.
    let out = wdctl(&[
        "--sysfs",
        sys,
        "--dev",
        dev,
        "run",
        "factorial",
        "5",
        "-d",
        "edu-0",
    ]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        text(&out.stderr).contains("no such device node"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn queues_from_fake_proc() {
    let t = Tree::new("proc");
    let pid = t.path().join("4242");
    fs::create_dir_all(pid.join("fd")).unwrap();
    fs::create_dir_all(pid.join("fdinfo")).unwrap();
    fs::write(pid.join("comm"), "myapp\n").unwrap();
    symlink("/dev/edu-1", pid.join("fd/5")).unwrap();
    fs::write(
        pid.join("fdinfo/5"),
        "pos:\t0\nflags:\t02\nmnt_id:\t1\nwd-device:\tedu-1\nwd-queue-index:\t3\n\
         wd-state:\tstarted\nwd-submitted:\t10\nwd-completed:\t9\nwd-errors:\t1\n\
         wd-in-flight:\t1\nwd-bytes:\t4096\nwd-pinned-pages:\t2\nwd-buffers:\t1\n\
         wd-invalidations:\t0\nwd-mapped-pages:\t256\n",
    )
    .unwrap();
    let out = wdctl(&["--proc", t.path().to_str().unwrap(), "queues"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    let row: Vec<&str> = s.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(
        row,
        [
            "4242", "myapp", "5", "edu-1", "3", "started", "10", "9", "1", "1", "4096", "2", "1",
            "0", "256"
        ],
        "{s}"
    );
    let header: Vec<&str> = s.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header[11..],
        ["PINNED", "BUFFERS", "INVAL", "MAPPED"],
        "{s}"
    );
}

#[test]
fn usage_errors() {
    let out = wdctl(&["run", "memcpy"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--size SIZE or --file PATH"));
    let out = wdctl(&["help"]);
    assert!(out.status.success());
    assert!(text(&out.stdout).contains("run crc32c"));
}

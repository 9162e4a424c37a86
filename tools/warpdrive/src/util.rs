// SPDX-License-Identifier: GPL-2.0
//! CPU references to check the device's results against, and small
//! helpers shared by the tools.

use std::sync::OnceLock;

/// CRC-32C (Castagnoli) as the edu bulk engine computes it: chainable, 0 to
/// start, `crc32c(crc32c(0, a), b) == crc32c(0, a ++ b)`.
pub fn crc32c(crc: u32, buf: &[u8]) -> u32 {
    static TABLES: OnceLock<[[u32; 256]; 8]> = OnceLock::new();
    let t = TABLES.get_or_init(|| {
        let mut t = [[0u32; 256]; 8];
        for (i, e) in t[0].iter_mut().enumerate() {
            let mut c = i as u32;
            for _ in 0..8 {
                c = (c >> 1) ^ if c & 1 != 0 { 0x82f6_3b78 } else { 0 };
            }
            *e = c;
        }
        for i in 0..256 {
            for j in 1..8 {
                t[j][i] = (t[j - 1][i] >> 8) ^ t[0][(t[j - 1][i] & 0xff) as usize];
            }
        }
        t
    });
    let mut crc = !crc;
    let mut chunks = buf.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_le_bytes(c.try_into().expect("8 bytes")) ^ u64::from(crc);
        crc = t[7][(w & 0xff) as usize]
            ^ t[6][((w >> 8) & 0xff) as usize]
            ^ t[5][((w >> 16) & 0xff) as usize]
            ^ t[4][((w >> 24) & 0xff) as usize]
            ^ t[3][((w >> 32) & 0xff) as usize]
            ^ t[2][((w >> 40) & 0xff) as usize]
            ^ t[1][((w >> 48) & 0xff) as usize]
            ^ t[0][(w >> 56) as usize];
    }
    for &b in chunks.remainder() {
        crc = (crc >> 8) ^ t[0][((crc ^ u32::from(b)) & 0xff) as usize];
    }
    !crc
}

/// n! in `u32` arithmetic, as the edu device computes it (0 from 34 on).
pub fn factorial_u32(n: u32) -> u32 {
    (2..=n).fold(1u32, |r, i| r.wrapping_mul(i))
}

/// splitmix64's finaliser: every word of the pattern differs.
fn mix64(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn pattern_word(seed: u64, word: u64) -> [u8; 8] {
    mix64(
        seed.wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .wrapping_add(word + 1),
    )
    .to_le_bytes()
}

/// Fills `buf` with a pattern determined by `seed` and each byte's offset
/// `off + i` from the start of the pattern, so that any piece of it can be
/// checked on its own (the same pattern as the selftests' `wd_fill`).
pub fn fill_pattern(buf: &mut [u8], seed: u64, off: u64) {
    let mut o = off;
    let mut rest = buf;
    // Up to the first whole pattern word, then words, then the tail.
    while !o.is_multiple_of(8) && !rest.is_empty() {
        rest[0] = pattern_word(seed, o / 8)[(o % 8) as usize];
        rest = &mut rest[1..];
        o += 1;
    }
    let mut words = rest.chunks_exact_mut(8);
    for w in &mut words {
        w.copy_from_slice(&pattern_word(seed, o / 8));
        o += 8;
    }
    for b in words.into_remainder() {
        *b = pattern_word(seed, o / 8)[(o % 8) as usize];
        o += 1;
    }
}

/// The first byte of `buf` that is not the pattern, or `None`.
pub fn check_pattern(buf: &[u8], seed: u64, off: u64) -> Option<usize> {
    let mut expect = [0u8; 4096];
    let mut done = 0;
    for piece in buf.chunks(expect.len()) {
        let e = &mut expect[..piece.len()];
        fill_pattern(e, seed, off + done as u64);
        if let Some(i) = first_difference(piece, e) {
            return Some(done + i);
        }
        done += piece.len();
    }
    None
}

/// The first index at which `a` and `b` differ, or `None`.
pub fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    if a == b {
        return None;
    }
    Some(
        a.iter()
            .zip(b)
            .position(|(x, y)| x != y)
            .unwrap_or(a.len().min(b.len())),
    )
}

/// Parses a size: a number with an optional binary suffix, `K`, `M`, `G`,
/// `T` (also `k`, `KiB`, `KB`...): `64M` is 64 MiB.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, suffix) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let shift = match suffix.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return None,
    };
    n.checked_mul(1u64 << shift)
}

/// A size for people: `64.0 MiB`, `512 B`.
pub fn format_size(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Bytes this process may still pin, `None` if there is no limit: the
/// soft `RLIMIT_MEMLOCK` less `VmPin`, unless the process has
/// `CAP_IPC_LOCK`, which warpdrive (like RDMA) lets pin without limit.
///
/// This budget is for commands' own operands, which are pinned while the
/// command lives. Registered buffers need none of it: they are mapped for
/// the device without pins.
pub fn pin_budget() -> Option<u64> {
    use rustix::thread::{capabilities, CapabilitySet};
    if capabilities(None).is_ok_and(|c| c.effective.contains(CapabilitySet::IPC_LOCK)) {
        return None;
    }
    let limit = crate::error::memlock_limit()?;
    let pinned = crate::stats::vmpin_kb().unwrap_or(0) * 1024;
    Some(limit.saturating_sub(pinned))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_vectors() {
        assert_eq!(crc32c(0, b"123456789"), 0xe306_9283);
        assert_eq!(crc32c(0, b""), 0);
        // Chained, at every split point, across the 8-byte fast path.
        let data: Vec<u8> = (0..100u32).map(|i| (i * 7 + 3) as u8).collect();
        let whole = crc32c(0, &data);
        for k in 0..data.len() {
            assert_eq!(
                crc32c(crc32c(0, &data[..k]), &data[k..]),
                whole,
                "split {k}"
            );
        }
        // iSCSI test vector: 32 bytes of zeroes.
        assert_eq!(crc32c(0, &[0u8; 32]), 0x8a91_36aa);
        assert_eq!(crc32c(0, &[0xffu8; 32]), 0x62a8_ab43);
    }

    #[test]
    fn factorial() {
        assert_eq!(factorial_u32(0), 1);
        assert_eq!(factorial_u32(1), 1);
        assert_eq!(factorial_u32(12), 479_001_600);
        assert_eq!(factorial_u32(13), 1_932_053_504);
        assert_eq!(factorial_u32(33), 2_147_483_648);
        assert_eq!(factorial_u32(34), 0);
    }

    #[test]
    fn pattern() {
        let mut a = vec![0u8; 1000];
        fill_pattern(&mut a, 5, 0);
        assert_eq!(check_pattern(&a, 5, 0), None);
        assert_eq!(check_pattern(&a[3..], 5, 3), None);
        assert!(check_pattern(&a, 6, 0).is_some());
        let mut b = vec![0u8; 997];
        fill_pattern(&mut b, 5, 3);
        assert_eq!(&a[3..], &b[..]);
        b[500] ^= 1;
        assert_eq!(check_pattern(&b, 5, 3), Some(500));
        assert_eq!(first_difference(&a[3..], &b), Some(500));
        assert_eq!(first_difference(&a, &a), None);
        assert_eq!(first_difference(&a[..4], &a[..5]), Some(4));
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64M"), Some(64 << 20));
        assert_eq!(parse_size("64MiB"), Some(64 << 20));
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("1g"), Some(1 << 30));
        assert_eq!(parse_size("3k"), Some(3072));
        assert_eq!(parse_size(""), None);
        assert_eq!(parse_size("M"), None);
        assert_eq!(parse_size("12X"), None);
        assert_eq!(parse_size("-1"), None);
        assert_eq!(parse_size("99999999T"), None);
        assert_eq!(format_size(512), "512 B");
        assert_eq!(format_size(64 << 20), "64.0 MiB");
        assert_eq!(format_size(1536), "1.5 KiB");
    }
}

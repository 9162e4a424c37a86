// SPDX-License-Identifier: GPL-2.0

//! CRC-32C (Castagnoli), for the emulated bulk engine: the software stands in for a device's
//! checksum unit, so it computes the checksum itself rather than calling the kernel's library.

/// The reflected Castagnoli polynomial.
const POLY: u32 = 0x82f6_3b78;

/// The byte-at-a-time lookup table, computed at build time.
const TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ POLY
            } else {
                crc >> 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

/// A running CRC-32C, in its internal (inverted) form.
pub(crate) struct Crc32c(u32);

impl Crc32c {
    /// Continues from `crc`, the CRC-32C of the data before (0 for none).
    pub(crate) fn resume(crc: u32) -> Self {
        Self(!crc)
    }

    /// Adds `data`.
    pub(crate) fn update(&mut self, data: &[u8]) {
        for &byte in data {
            self.0 = (self.0 >> 8) ^ TABLE[((self.0 ^ u32::from(byte)) & 0xff) as usize];
        }
    }

    /// The CRC-32C of everything so far.
    pub(crate) fn value(&self) -> u32 {
        !self.0
    }
}

// The check value of the standard ("123456789"), and chaining.
const _: () = {
    let data = b"123456789";
    let mut crc = !0u32;
    let mut i = 0;
    while i < data.len() {
        crc = (crc >> 8) ^ TABLE[((crc ^ data[i] as u32) & 0xff) as usize];
        i += 1;
    }
    assert!(!crc == 0xe306_9283);
};

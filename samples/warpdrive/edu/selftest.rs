// SPDX-License-Identifier: GPL-2.0

//! The self-test run at probe: the device must identify itself, answer, compute and move data
//! before anyone may use it.

use crate::{
    engine::Engine,
    regs::{DMA_BUFFER_SIZE, ID_MAGIC, ID_MAJOR},
};
use kernel::{
    device::Bound,
    dma::{Coherent, CoherentBox},
    io::Io,
    pci,
    prelude::*,
    time::{Instant, Monotonic},
};

/// Values written to the liveness register; between them every bit is read back as 0 and as 1.
const LIVENESS_PATTERNS: [u32; 2] = [0x5a5a_a5a5, 0xa5a5_5a5a];

/// The largest `n` whose factorial is checked; 12! is the largest that fits in a `u32`.
const FACTORIAL_MAX: u32 = 12;

/// Runs every test on the device of `engine`, `dev`, logging one line for each.
///
/// Fails with [`EIO`] if the device gives a wrong answer, or with the error of the first
/// operation that failed.
pub(crate) fn run(dev: &pci::Device<Bound>, engine: &Engine) -> Result {
    identity(dev, engine)?;
    liveness(dev, engine)?;
    factorial(dev, engine)?;
    dma_round_trip(dev, engine)
}

/// Checks the identification register.
fn identity(dev: &pci::Device<Bound>, engine: &Engine) -> Result {
    let id = engine.id()?;
    let (major, minor) = (id.major(), id.minor());
    // A later minor version only adds to the device, a later major one may change it.
    if id.magic() != ID_MAGIC || major != ID_MAJOR {
        dev_err!(
            dev,
            "edu self-test: identity {:#010x} is not edu {}.x\n",
            id.into_raw(),
            ID_MAJOR
        );
        return Err(EIO);
    }
    dev_info!(
        dev,
        "edu self-test: identity {:#010x} (edu {}.{}) ok\n",
        id.into_raw(),
        major,
        minor
    );
    Ok(())
}

/// Checks that the liveness register inverts what is written to it.
fn liveness(dev: &pci::Device<Bound>, engine: &Engine) -> Result {
    for pattern in LIVENESS_PATTERNS {
        let read = engine.liveness(pattern)?;
        if read != !pattern {
            dev_err!(
                dev,
                "edu self-test: liveness wrote {:#010x}, read {:#010x}, expected {:#010x}\n",
                pattern,
                read,
                !pattern
            );
            return Err(EIO);
        }
    }
    dev_info!(
        dev,
        "edu self-test: liveness {:#010x} {:#010x} ok\n",
        LIVENESS_PATTERNS[0],
        LIVENESS_PATTERNS[1]
    );
    Ok(())
}

/// Checks the factorials of `0..=FACTORIAL_MAX` against the CPU's.
fn factorial(dev: &pci::Device<Bound>, engine: &Engine) -> Result {
    let start = Instant::<Monotonic>::now();
    let mut expected = 1u32;
    for n in 0..=FACTORIAL_MAX {
        if n > 0 {
            expected = expected.wrapping_mul(n);
        }
        let result = engine.factorial(n)?;
        if result != expected {
            dev_err!(
                dev,
                "edu self-test: factorial {}! = {}, expected {}\n",
                n,
                result,
                expected
            );
            return Err(EIO);
        }
    }
    let elapsed = start.elapsed();
    dev_info!(
        dev,
        "edu self-test: factorial {}! = {} ok ({} interrupts, {} us)\n",
        FACTORIAL_MAX,
        expected,
        FACTORIAL_MAX + 1,
        elapsed.as_micros_ceil()
    );
    Ok(())
}

/// The byte at `offset` of the DMA test pattern. It differs between neighbours and between
/// 256-byte blocks, so that a misplaced or shifted block shows.
fn pattern(offset: usize) -> u8 {
    // CAST: Truncation to the low byte is intended.
    (offset.wrapping_mul(7) ^ (offset >> 8).wrapping_mul(0x35)) as u8
}

/// Copies a pattern from RAM through the device's buffer into other RAM, and compares.
fn dma_round_trip(dev: &pci::Device<Bound>, engine: &Engine) -> Result {
    let mut src = CoherentBox::<[u8]>::zeroed_slice(dev.as_ref(), DMA_BUFFER_SIZE, GFP_KERNEL)?;
    for (offset, byte) in src.iter_mut().enumerate() {
        *byte = pattern(offset);
    }
    let src: Coherent<[u8]> = src.into();
    let dst: Coherent<[u8]> = Coherent::zeroed_slice(dev.as_ref(), DMA_BUFFER_SIZE, GFP_KERNEL)?;

    let start = Instant::<Monotonic>::now();
    engine.dma_to_device(src.dma_address(), 0, DMA_BUFFER_SIZE)?;
    let to_device = start.elapsed();
    engine.dma_from_device(0, dst.dma_address(), DMA_BUFFER_SIZE)?;
    let total = start.elapsed();

    let mut read = KVec::from_elem(0u8, DMA_BUFFER_SIZE, GFP_KERNEL)?;
    (&dst).copy_to_slice(&mut read);
    if let Some(offset) = (0..DMA_BUFFER_SIZE).find(|&offset| read[offset] != pattern(offset)) {
        dev_err!(
            dev,
            "edu self-test: DMA round trip: byte {} is {:#04x}, expected {:#04x}\n",
            offset,
            read[offset],
            pattern(offset)
        );
        return Err(EIO);
    }
    dev_info!(
        dev,
        "edu self-test: DMA round trip {} bytes ok (2 transfers, {} ms: {} + {})\n",
        DMA_BUFFER_SIZE,
        total.as_millis(),
        to_device.as_millis(),
        (total - to_device).as_millis()
    );
    Ok(())
}

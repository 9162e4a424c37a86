// SPDX-License-Identifier: GPL-2.0

//! The edu device's compute units, for everyone who uses the device: its factorial unit, its DMA
//! engine, and the interrupt handler that reports their completions.

use crate::regs::{
    self, DMA_BUFFER_ADDR, DMA_BUFFER_SIZE, DMA_CMD, DMA_COUNT, DMA_DST, DMA_SRC, FACTORIAL, ID,
    IRQ_ACK, IRQ_STATUS, LIVENESS, STATUS,
};
use kernel::{
    device::Bound,
    dma::{DmaAddress, DmaMask},
    io::Io,
    irq::{self, IrqReturn},
    new_condvar, new_mutex, new_spinlock_irq, pci,
    prelude::*,
    sync::{aref::ARef, Arc, CondVar, CondVarTimeoutResult, Mutex, SpinLockIrq},
    time::{delay::fsleep, msecs_to_jiffies, Delta, Instant, Monotonic},
};

/// BAR0 of an edu device.
pub(crate) type Bar0<'a> = pci::Bar<'a, { regs::BAR0_SIZE }>;

/// BAR0 of an edu device, revoked when the device is unbound.
pub(crate) type DevresBar0 = pci::DevresBar<{ regs::BAR0_SIZE }>;

/// How long a factorial may take. Even 33! takes QEMU well under a millisecond.
const FACTORIAL_TIMEOUT: Delta = Delta::from_secs(1);

/// How long a DMA transfer may take. QEMU takes 100 ms for each, whatever its size.
const DMA_TIMEOUT: Delta = Delta::from_secs(2);

/// How often a unit is polled while its interrupt cannot be waited for (a signal is pending).
const POLL_INTERVAL: Delta = Delta::from_millis(1);

/// How often a unit that timed out is polled until it is idle.
const IDLE_POLL_INTERVAL: Delta = Delta::from_millis(10);

/// One of the device's units, as seen under its lock.
struct Unit {
    /// Set when the device is being unbound; the unit is never started again.
    shut_down: bool,
}

/// How waiting for a unit's interrupt ended.
enum Wake {
    /// The interrupt came.
    Irq,
    /// A signal is pending, so the task cannot sleep interruptibly any more.
    Signal,
    /// The time ran out.
    Timeout,
}

/// The units of one edu device.
///
/// It outlives the device's binding: warpdrive's queues hold it in an [`Arc`] and may call it at
/// any time, also after the device was unbound. It then fails with [`ENODEV`] and never touches
/// the device.
///
/// Each unit runs one operation at a time; its mutex is held from programming the unit until the
/// unit is idle again, so an operation never returns while the device may still be working for it
/// (for DMA: while it may still read or write the caller's memory). The factorial unit and the
/// DMA engine work independently of each other.
///
/// A pending signal does not cut an operation short, since the device cannot cancel one: the
/// wait goes on by polling the unit.
///
/// # Invariants
///
/// `dma_mask` is the DMA mask set for `dev`.
#[pin_data]
pub(crate) struct Engine {
    dev: ARef<pci::Device>,
    bar: DevresBar0,
    dma_mask: u64,
    /// Serializes the factorial unit.
    #[pin]
    factorial: Mutex<Unit>,
    /// Serializes the DMA engine.
    #[pin]
    dma: Mutex<Unit>,
    /// Completions that the interrupt handler has seen and no waiter has taken yet, as
    /// [`IRQ_STATUS`] bits. Taken in hard interrupt context, hence the interrupt-disabling lock.
    #[pin]
    events: SpinLockIrq<u32>,
    /// Notified when `events` gains bits.
    #[pin]
    event: CondVar,
}

impl Engine {
    /// Creates the engine of the bound device `dev`, mapped by `bar`.
    ///
    /// `dma_mask` must be the mask that was set for `dev`.
    pub(crate) fn new(
        dev: &pci::Device<Bound>,
        bar: DevresBar0,
        dma_mask: DmaMask,
    ) -> Result<Arc<Self>> {
        // INVARIANT: The caller passes the mask set for `dev`.
        Arc::pin_init(
            try_pin_init!(Self {
                dev: dev.into(),
                bar,
                dma_mask: dma_mask.value(),
                factorial <- new_mutex!(Unit { shut_down: false }),
                dma <- new_mutex!(Unit { shut_down: false }),
                events <- new_spinlock_irq!(0),
                event <- new_condvar!(),
            }),
            GFP_KERNEL,
        )
    }

    /// Runs `f` on the BAR, unless the device has been unbound.
    ///
    /// `f` runs in an RCU read-side critical section and must not sleep.
    fn io<R>(&self, f: impl FnOnce(&Bar0<'_>) -> R) -> Result<R> {
        let bar = self.bar.try_access().ok_or(ENODEV)?;
        Ok(f(&bar))
    }

    /// Reads the identification register.
    pub(crate) fn id(&self) -> Result<ID> {
        self.io(|bar| bar.read(ID))
    }

    /// Writes `value` to the liveness register and returns what it reads back, which is the
    /// bitwise inverse of `value` on a live device.
    pub(crate) fn liveness(&self, value: u32) -> Result<u32> {
        self.io(|bar| {
            bar.write_reg(LIVENESS::zeroed().with_value(value));
            bar.read(LIVENESS).value()
        })
    }

    /// Computes `n!` on the device, as a wrapping `u32` (so `n >= 34` gives 0).
    ///
    /// Fails with [`ENODEV`] once the device is unbound, with [`ETIMEDOUT`] if the completion
    /// interrupt does not come within a second.
    pub(crate) fn factorial(&self, n: u32) -> Result<u32> {
        let unit = self.factorial.lock();
        if unit.shut_down {
            return Err(ENODEV);
        }

        self.take_events(IRQ_STATUS::FACTORIAL_MASK);
        self.io(|bar| {
            // The unit is idle whenever its lock is free, unless the device misbehaves. It would
            // ignore the write.
            if bar.read(STATUS).computing() {
                return Err(EBUSY);
            }
            bar.write_reg(STATUS::zeroed().with_irq_on_completion(true));
            bar.write_reg(FACTORIAL::zeroed().with_value(n));
            Ok(())
        })??;
        self.wait_idle(
            IRQ_STATUS::FACTORIAL_MASK,
            FACTORIAL_TIMEOUT,
            "factorial",
            |bar| bar.read(STATUS).computing(),
        )?;
        let result = self.io(|bar| bar.read(FACTORIAL).value())?;

        drop(unit);
        Ok(result)
    }

    /// Copies `len` bytes from bus address `src` to offset `dev_offset` of the device's buffer.
    ///
    /// `src` must be mapped for the device, for reading, for `len` bytes, until this returns.
    ///
    /// Fails with [`EINVAL`] if the range does not fit in the buffer or `src` does not fit the
    /// device's DMA mask, with [`ENODEV`] once the device is unbound, and with [`ETIMEDOUT`] if
    /// the completion interrupt does not come within two seconds. It never returns while the
    /// device may still read from `src`.
    pub(crate) fn dma_to_device(&self, src: DmaAddress, dev_offset: usize, len: usize) -> Result {
        self.dma(false, src, dev_offset, len)
    }

    /// Copies `len` bytes from offset `dev_offset` of the device's buffer to bus address `dst`.
    ///
    /// `dst` must be mapped for the device, for writing, for `len` bytes, until this returns.
    ///
    /// Fails like [`Engine::dma_to_device`]. It never returns while the device may still write
    /// to `dst`.
    pub(crate) fn dma_from_device(&self, dev_offset: usize, dst: DmaAddress, len: usize) -> Result {
        self.dma(true, dst, dev_offset, len)
    }

    /// Copies `len` bytes between bus address `ram` and offset `dev_offset` of the device's
    /// buffer, into RAM if `to_ram`.
    fn dma(&self, to_ram: bool, ram: DmaAddress, dev_offset: usize, len: usize) -> Result {
        // QEMU performs an out-of-range transfer after only logging it, and corrupts its own
        // state: this check is all that stands in the way.
        let end = dev_offset.checked_add(len).ok_or(EINVAL)?;
        if len == 0 || end > DMA_BUFFER_SIZE {
            return Err(EINVAL);
        }
        // CAST: `dev_offset` and `len` are at most `DMA_BUFFER_SIZE`, so they fit in a `u32`.
        let (dev_addr, count) = (DMA_BUFFER_ADDR + dev_offset as u32, len as u32);

        // The device truncates addresses to its mask instead of failing, so check the whole range
        // against it. The mask also keeps the address within the 32 bits the registers take.
        #[allow(clippy::useless_conversion)] // `DmaAddress` is `u32` on some configurations.
        let ram = u64::from(ram);
        match ram.checked_add(u64::from(count) - 1) {
            Some(last) if last <= self.dma_mask => {}
            _ => return Err(EINVAL),
        }
        let ram = u32::try_from(ram).map_err(|_| EINVAL)?;

        let unit = self.dma.lock();
        if unit.shut_down {
            return Err(ENODEV);
        }

        self.take_events(IRQ_STATUS::DMA_MASK);
        self.io(|bar| {
            // The unit is idle whenever its lock is free, unless the device misbehaves. It would
            // ignore the command.
            if bar.read(DMA_CMD).start() {
                return Err(EBUSY);
            }
            let (src, dst) = if to_ram {
                (dev_addr, ram)
            } else {
                (ram, dev_addr)
            };
            bar.write_reg(DMA_SRC::zeroed().with_addr(src));
            bar.write_reg(DMA_DST::zeroed().with_addr(dst));
            bar.write_reg(DMA_COUNT::zeroed().with_count(count));
            bar.write_reg(
                DMA_CMD::zeroed()
                    .with_start(true)
                    .with_to_ram(to_ram)
                    .with_irq_on_completion(true),
            );
            Ok(())
        })??;
        self.wait_idle(IRQ_STATUS::DMA_MASK, DMA_TIMEOUT, "DMA", |bar| {
            bar.read(DMA_CMD).start()
        })?;

        drop(unit);
        Ok(())
    }

    /// Forgets completions of `irq` seen so far, before starting an operation that raises it.
    fn take_events(&self, irq: u32) {
        *self.events.lock() &= !irq;
    }

    /// Waits until the unit that raises `irq` on completion has finished the operation just
    /// started on it, which it has when `busy` reads false.
    ///
    /// Fails with [`ETIMEDOUT`] if that takes longer than `timeout`, but even then returns only
    /// once the unit is idle, since an operation cannot be cancelled. Fails with [`ENODEV`] if
    /// the device is unbound meanwhile.
    fn wait_idle(
        &self,
        irq: u32,
        timeout: Delta,
        unit: &str,
        busy: impl Fn(&Bar0<'_>) -> bool,
    ) -> Result {
        let start = Instant::<Monotonic>::now();
        let mut polling = false;
        loop {
            let left = timeout - start.elapsed();
            if !polling {
                match self.wait_irq(irq, left) {
                    Wake::Irq => {}
                    // The operation goes on regardless, and ending it early would leave the
                    // unit busy for the next one: finish it by polling.
                    Wake::Signal => polling = true,
                    Wake::Timeout => break,
                }
            }
            // A completion may also be a late one of an earlier operation that was finished by
            // polling, so the unit itself decides.
            if !self.io(&busy)? {
                return Ok(());
            }
            if polling {
                if left.is_negative() || left.is_zero() {
                    break;
                }
                fsleep(POLL_INTERVAL);
            }
        }

        dev_warn!(
            self.dev,
            "{} timed out after {} ms, waiting for it to go idle\n",
            unit,
            timeout.as_millis()
        );
        while self.io(&busy)? {
            fsleep(IDLE_POLL_INTERVAL);
        }
        Err(ETIMEDOUT)
    }

    /// Sleeps until the interrupt handler reports `irq`, a signal is pending, or `timeout` has
    /// passed, and takes the report.
    fn wait_irq(&self, irq: u32, timeout: Delta) -> Wake {
        let ms = u32::try_from(timeout.as_millis_ceil().max(0)).unwrap_or(u32::MAX);
        let mut jiffies = msecs_to_jiffies(ms);
        let mut events = self.events.lock();
        loop {
            if *events & irq != 0 {
                *events &= !irq;
                return Wake::Irq;
            }
            if jiffies == 0 {
                return Wake::Timeout;
            }
            match self.event.wait_interruptible_timeout(&mut events, jiffies) {
                CondVarTimeoutResult::Woken { jiffies: left } => jiffies = left,
                CondVarTimeoutResult::Timeout => jiffies = 0,
                CondVarTimeoutResult::Signal { .. } => return Wake::Signal,
            }
        }
    }

    /// Handles an interrupt of `dev`, the device of this engine.
    ///
    /// Runs in hard interrupt context. The borrow of `dev` proves that the device is still bound
    /// and therefore that the BAR is mapped.
    fn handle_irq(&self, dev: &pci::Device<Bound>) -> IrqReturn {
        let Ok(bar) = self.bar.access(dev.as_ref()) else {
            return IrqReturn::None;
        };
        let status = bar.read(IRQ_STATUS).into_raw();
        if status == 0 {
            return IrqReturn::None;
        }
        // The device keeps the bits set until acknowledged, with MSI too.
        bar.write_reg(IRQ_ACK::zeroed().with_bits(status));

        *self.events.lock() |= status;
        self.event.notify_all();
        IrqReturn::Handled
    }

    /// Stops all use of the device, for unbinding it: waits for the operation on each unit to
    /// finish, then makes all later operations fail with [`ENODEV`] without touching the device.
    pub(crate) fn shut_down(&self) {
        let mut factorial = self.factorial.lock();
        let mut dma = self.dma.lock();
        factorial.shut_down = true;
        dma.shut_down = true;
        // Nothing will wait for factorial completions any more. Fails only if already revoked.
        let _ = self.io(|bar| bar.write_reg(STATUS::zeroed()));
    }
}

/// The interrupt handler of an edu device, registered for as long as the device is bound.
pub(crate) struct EngineIrq<'bound> {
    dev: &'bound pci::Device<Bound>,
    engine: Arc<Engine>,
}

impl<'bound> EngineIrq<'bound> {
    /// A handler for `engine`, the engine of `dev`.
    pub(crate) fn new(dev: &'bound pci::Device<Bound>, engine: Arc<Engine>) -> Self {
        Self { dev, engine }
    }
}

impl irq::Handler for EngineIrq<'_> {
    fn handle(&self) -> IrqReturn {
        self.engine.handle_irq(self.dev)
    }
}

/// Shuts its engine down when dropped (see [`Engine::shut_down`]).
pub(crate) struct EngineShutdown(Arc<Engine>);

impl EngineShutdown {
    /// Makes `engine` shut down when this is dropped.
    pub(crate) fn new(engine: Arc<Engine>) -> Self {
        Self(engine)
    }
}

impl Drop for EngineShutdown {
    fn drop(&mut self) {
        self.0.shut_down();
    }
}

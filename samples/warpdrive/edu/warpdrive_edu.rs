// SPDX-License-Identifier: GPL-2.0

//! Driver for QEMU's `edu` device (PCI 1234:11e8), a warpdrive accelerator.
//!
//! The device computes factorials and moves data by DMA between RAM and a 4 KiB buffer of its
//! own, and reports both completions by MSI. See QEMU's `docs/specs/edu.rst`.
//!
//! QEMU must be started with `-device edu,dma_mask=0xffffffff` (see [`DMA_MASK_BITS`]).

mod commands;
mod crc32c;
mod debugfs;
mod engine;
mod queue;
mod regs;
mod sched;
mod selftest;

use engine::{Engine, EngineIrq, EngineShutdown};
use kernel::{
    device::{Bound, Core},
    dma::{Device as _, DmaMask},
    irq, pci,
    prelude::*,
    sync::Arc,
};

kernel::module_pci_driver! {
    type: EduDriver,
    name: "warpdrive_edu",
    authors: ["warpdrive developers"],
    description: "warpdrive driver for QEMU's edu device",
    license: "GPL",
    params: {
        queues: u32 {
            default: 4,
            description: "Number of warpdrive queues of each edu device (1-64)",
        },
    },
}

/// The most queues a device can have (the `queues` module parameter).
pub(crate) const MAX_QUEUES: u32 = 64;

/// The width of the DMA mask set for the device.
///
/// QEMU's edu truncates bus addresses to its own mask, silently: 28 bits by default. Linux
/// refuses a mask below 32 bits unless `CONFIG_ZONE_DMA` is set or all RAM fits under it, so
/// warpdrive's guests start QEMU with `-device edu,dma_mask=0xffffffff` and the driver sets a
/// 32-bit mask to match. The guests have 2 GiB of RAM, all below 4 GiB on q35, so every page is
/// reachable without bounce buffers; behind an IOMMU the bus addresses are IOVAs, which the DMA
/// API allocates below the mask. With QEMU's default mask the device would reach only the
/// first 256 MiB, and the DMA self-test would fail.
///
/// It cannot grow beyond 32 bits as it is: the driver writes bus addresses to the device with
/// 32-bit accesses (see [`regs`]).
const DMA_MASK_BITS: u32 = 32;
const _: () = assert!(DMA_MASK_BITS <= 32);

/// The name of the BAR's region and of the interrupt.
const NAME: &CStr = c"warpdrive_edu";

/// An edu device bound to this driver.
///
/// # Teardown
///
/// At unbind the driver core drops this, which drops the fields in their declaration order,
/// and only then releases the device's devres resources:
///
/// 1. `registration`: warpdrive stops and drops every open queue, zaps their user mappings and
///    removes the device node; open files get `ENODEV` from then on.
/// 2. `engine`: [`EngineShutdown`] waits for the operation in progress on each unit, so that
///    the device no longer uses any memory, and makes every later call of the [`Engine`] fail
///    with [`ENODEV`]. Queues may hold the engine for longer; it never touches the device again.
/// 3. `irq`: frees the interrupt, after waiting for a handler running on another CPU.
/// 4. `vectors`: frees the MSI vector.
/// 5. The driver core releases devres: the engine's BAR is revoked and unmapped.
///
/// The interrupt handler reaches the BAR through its borrow of the bound device rather than
/// through revocation (which would need RCU in hard interrupt context). That borrow is what
/// forces `irq` to go before the BAR is revoked.
#[pin_data]
struct EduData<'bound> {
    /// The device as warpdrive's `/dev/edu-<id>`. Declared first, so that it is dropped first.
    registration: warpdrive::Registration<'bound>,
    /// The engines' test hooks in the device's debugfs directory, if it has one.
    _holds: Option<debugfs::EngineHolds>,
    /// Shuts the engine down when dropped.
    engine: EngineShutdown,
    /// Borrows `vectors`, so it is declared (and dropped) before it.
    #[pin]
    irq: irq::Registration<'bound, EngineIrq<'bound>>,
    vectors: pci::IrqVectorRegistration<'bound>,
}

/// The edu driver.
struct EduDriver;

/// QEMU's PCI vendor ID, which `include/linux/pci_ids.h` does not name.
const EDU_VENDOR: pci::Vendor = pci::Vendor::from_raw(0x1234);

/// The edu device's PCI device ID.
const EDU_DEVICE: u32 = 0x11e8;

kernel::pci_device_table!(
    PCI_TABLE,
    <EduDriver as pci::Driver>::IdInfo,
    [(pci::DeviceId::from_id(EDU_VENDOR, EDU_DEVICE), ())]
);

impl pci::Driver for EduDriver {
    type IdInfo = ();
    type Data<'bound> = EduData<'bound>;
    const ID_TABLE: pci::IdTable<Self::IdInfo> = &PCI_TABLE;

    fn probe<'bound>(
        pdev: &'bound pci::Device<Core<'_>>,
        _info: Option<&'bound Self::IdInfo>,
    ) -> impl PinInit<Self::Data<'bound>, Error> + 'bound {
        pin_init::pin_init_scope(move || {
            let queues = module_parameters::queues.value();
            if !(1..=MAX_QUEUES).contains(&queues) {
                dev_err!(pdev, "queues={} is not in 1..={}\n", queues, MAX_QUEUES);
                return Err(EINVAL);
            }

            pdev.enable_device_mem()?;
            pdev.set_master();

            let dma_mask = DmaMask::new::<DMA_MASK_BITS>();
            // SAFETY: Nothing has allocated or mapped DMA memory for this device yet, and
            // nothing else runs for it during probe.
            unsafe { pdev.dma_set_mask_and_coherent(dma_mask)? };

            let dev: &'bound pci::Device<Bound> = pdev;
            let bar = dev
                .iomap_region_sized::<{ regs::BAR0_SIZE }>(0, NAME)?
                .into_devres()?;
            let engine = Engine::new(dev, bar, dma_mask)?;
            let edu = Arc::new(queue::EduDevice::new(engine.clone())?, GFP_KERNEL)?;

            // The edu device has a single MSI vector and no MSI-X. INTx would work too, but the
            // tests are about the MSI path.
            let msi = pci::IrqTypes::default().with(pci::IrqType::Msi);

            Ok(try_pin_init!(EduData {
                vectors: dev.alloc_irq_vectors(1, 1, msi)?,
                // SAFETY:
                // - `vectors` is initialized, and stays at its address until `EduData` is
                //   dropped, since `EduData` is pinned.
                // - `irq` is declared before `vectors`, so it is dropped first; on an
                //   initialization error, its drop guard runs first too.
                // - The registration is not leaked: the driver core drops `EduData` at unbind.
                irq <- unsafe {
                    irq::Registration::new(
                        (*core::ptr::from_ref(vectors)).index(0)?.into(),
                        irq::Flags::TRIGGER_NONE,
                        NAME,
                        Ok(EngineIrq::new(dev, engine.clone())),
                    )
                },
                _: {
                    selftest::run(dev, &engine)?;
                },
                engine: EngineShutdown::new(engine),
                // SAFETY: The registration is not leaked: the driver core drops `EduData` at
                // unbind.
                registration: unsafe {
                    warpdrive::Registration::new(
                        dev.as_ref(),
                        warpdrive::DeviceInfo {
                            name: c"edu",
                            api: queue::API,
                            flags: warpdrive::uapi::DEV_SHADOW_RING,
                            algorithms: queue::ALGORITHMS,
                            queues,
                            ioctls: queue::IOCTLS,
                            opcodes: commands::OPCODES,
                            sq_entries: queue::SQ_ENTRIES,
                            cq_entries: queue::CQ_ENTRIES,
                        },
                        edu.clone(),
                    )?
                },
                // The hooks are for tests; the device works without them.
                _holds: registration.debugfs_dir().and_then(|dir| {
                    debugfs::EngineHolds::new(dir, edu.device_units(), edu.bulk()).ok()
                }),
                _: {
                    dev_info!(dev, "ready as edu-{}, {} queues\n", registration.id(), queues);
                },
            }))
        })
    }
}

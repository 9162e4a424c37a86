// SPDX-License-Identifier: GPL-2.0

//! A fair scheduler: the queues of a device share each of its engines, one command at a time,
//! taking turns (round-robin) between the queues that have commands waiting.

use kernel::{
    new_condvar, new_mutex,
    prelude::*,
    sync::{
        atomic::{Atomic, Relaxed},
        Arc, CondVar, Mutex,
    },
    workqueue::{self, impl_has_work, new_work, Work, WorkItem},
};
use warpdrive::Command;

/// Runs commands for a [`Scheduler`]; called from its work item, one command at a time.
pub(crate) trait Executor: Send + Sync + 'static {
    /// Runs `cmd` to completion and returns its result. `cancel` is set when the command's
    /// queue stops or goes away: work that can be cut short should stop and return
    /// `ECANCELED`; work the device has started must be waited for.
    fn execute(&self, cmd: &Command, cancel: &Atomic<bool>) -> Result<u64>;
}

/// A queue's commands for one engine, in submission order: a first-in, first-out queue made of
/// two stacks, so that taking the oldest command is O(1) amortised instead of shifting every
/// command behind it (which cost more than the commands themselves in batches of hundreds).
///
/// # Invariants
///
/// - `incoming` holds the newer commands, oldest first; `outgoing` the older ones, newest first,
///   so its last element is the oldest command of all.
/// - Both were created with the lane's capacity, and together they never hold more, so moving
///   between them and pushing never allocate.
/// - `drainers` counts the tasks waiting on the lane's `idle` for `running` to clear.
struct LaneState {
    incoming: KVec<Command>,
    outgoing: KVec<Command>,
    /// Whether the engine is running one of this lane's commands.
    running: bool,
    /// Tasks in [`Lane::drain`] waiting for the running command: only they are woken when it
    /// is done, since waking nobody after every command costs a wake-up call each.
    drainers: u32,
}

impl LaneState {
    fn pop_oldest(&mut self) -> Option<Command> {
        if self.outgoing.is_empty() {
            // INVARIANT: Reversed, the newer commands become the older ones, newest first.
            while let Some(cmd) = self.incoming.pop() {
                // Cannot fail: `outgoing` is empty and has the capacity `incoming` has.
                if let Err(err) = self.outgoing.push_within_capacity(cmd) {
                    drop(err);
                }
            }
        }
        self.outgoing.pop()
    }

    /// Completes every command with `ECANCELED`, keeping the capacity.
    fn clear(&mut self) {
        self.outgoing.clear();
        self.incoming.clear();
    }
}

/// One queue's place in a scheduler.
#[pin_data]
pub(crate) struct Lane {
    #[pin]
    state: Mutex<LaneState>,
    /// Notified when the running command is done.
    #[pin]
    idle: CondVar,
    /// Set while the lane is being emptied, for the running command to stop early.
    cancel: Atomic<bool>,
}

impl Lane {
    /// A lane with room for `capacity` commands, which is as many as its queue can have in
    /// flight.
    pub(crate) fn new(capacity: usize) -> Result<Arc<Self>> {
        let incoming = KVec::with_capacity(capacity, GFP_KERNEL)?;
        let outgoing = KVec::with_capacity(capacity, GFP_KERNEL)?;
        Arc::pin_init(
            pin_init!(Self {
                // INVARIANT: Empty, each with room for `capacity`.
                state <- new_mutex!(LaneState {
                    incoming,
                    outgoing,
                    running: false,
                    drainers: 0,
                }),
                idle <- new_condvar!(),
                cancel: Atomic::new(false),
            }),
            GFP_KERNEL,
        )
    }

    /// Queues `cmd`. Never sleeps but on the lane's lock, and never allocates.
    fn push(&self, cmd: Command) {
        let mut state = self.state.lock();
        // INVARIANT: Only pushed within the capacity. warpdrive never gives a queue more
        // commands than that at once, so the command is cancelled only if that breaks.
        let full = state.incoming.len() + state.outgoing.len() >= state.incoming.capacity();
        if full {
            drop(state);
            drop(cmd);
            return;
        }
        if let Err(err) = state.incoming.push_within_capacity(cmd) {
            drop(state);
            drop(err);
        }
    }

    /// Takes the oldest command and marks the lane running.
    fn pop(&self) -> Option<Command> {
        let mut state = self.state.lock();
        let cmd = state.pop_oldest()?;
        state.running = true;
        Some(cmd)
    }

    /// Marks the running command done.
    fn finish(&self) {
        let mut state = self.state.lock();
        state.running = false;
        if state.drainers > 0 {
            self.idle.notify_all();
        }
    }

    /// Cancels every command not started yet, and waits for the one running, if any. The lane
    /// takes commands again afterwards.
    pub(crate) fn drain(&self) {
        self.cancel.store(true, Relaxed);
        let mut state = self.state.lock();
        state.clear();
        while state.running {
            state.drainers += 1;
            self.idle.wait(&mut state);
            state.drainers -= 1;
        }
        drop(state);
        self.cancel.store(false, Relaxed);
    }
}

/// The queues sharing an engine, under the scheduler's lock.
struct Turns {
    lanes: KVec<Arc<Lane>>,
    /// The lane whose turn is next.
    next: usize,
}

/// Runs the commands of every lane on one engine, taking turns between the lanes.
#[pin_data]
pub(crate) struct Scheduler<E: Executor> {
    #[pin]
    executor: E,
    #[pin]
    turns: Mutex<Turns>,
    /// Whether the engine is held: it starts no command until released. A test hook, set from
    /// debugfs, so that tests can keep commands queued, deterministically, while they change
    /// the memory those commands use.
    #[pin]
    held: Mutex<bool>,
    /// Notified when `held` is cleared.
    #[pin]
    released: CondVar,
    #[pin]
    work: Work<Scheduler<E>>,
}

impl_has_work! {
    impl{E: Executor} HasWork<Self> for Scheduler<E> { self.work }
}

impl<E: Executor> Scheduler<E> {
    /// A scheduler running commands with `executor`.
    pub(crate) fn new(executor: impl PinInit<E, Error>) -> Result<Arc<Self>> {
        Arc::pin_init(
            try_pin_init!(Self {
                executor <- executor,
                turns <- new_mutex!(Turns {
                    lanes: KVec::new(),
                    next: 0,
                }),
                held <- new_mutex!(false),
                released <- new_condvar!(),
                work <- new_work!("warpdrive_edu::Scheduler::work"),
            }),
            GFP_KERNEL,
        )
    }

    /// Adds `lane` to the lanes that take turns.
    pub(crate) fn attach(&self, lane: Arc<Lane>) -> Result {
        self.turns.lock().lanes.push(lane, GFP_KERNEL)?;
        Ok(())
    }

    /// Removes `lane`; the engine takes no more commands from it.
    pub(crate) fn detach(&self, lane: &Arc<Lane>) {
        let mut turns = self.turns.lock();
        if let Some(i) = turns.lanes.iter().position(|l| Arc::ptr_eq(l, lane)) {
            let _ = turns.lanes.remove(i);
        }
    }

    /// Queues `cmd` on `lane`, which must be attached, and makes sure the engine runs.
    pub(crate) fn submit(self: &Arc<Self>, lane: &Lane, cmd: Command) {
        lane.push(cmd);
        // Already queued is fine: the work item takes every command before it stops.
        let _ = workqueue::system_unbound().enqueue(self.clone());
    }

    /// Waits until the work item is not running; for the driver's teardown, after every lane
    /// was detached. Releases a held engine first.
    pub(crate) fn flush(&self) {
        self.hold(false);
        self.work.flush();
    }

    /// Holds the engine (it starts no command) or releases it.
    pub(crate) fn hold(&self, held: bool) {
        *self.held.lock() = held;
        if !held {
            self.released.notify_all();
        }
    }

    /// Whether the engine is held.
    pub(crate) fn is_held(&self) -> bool {
        *self.held.lock()
    }

    /// Waits while the engine is held. Interruptibly, so that a long hold is not reported as a
    /// hung task; a work item gets no signals, so it only returns once released.
    fn wait_released(&self) {
        let mut held = self.held.lock();
        while *held {
            let _ = self.released.wait_interruptible(&mut held);
        }
    }

    /// Takes the next command, from the next lane in turn that has one.
    fn pick(&self) -> Option<(Arc<Lane>, Command)> {
        let mut turns = self.turns.lock();
        let count = turns.lanes.len();
        for i in 0..count {
            let at = (turns.next + i) % count;
            if let Some(cmd) = turns.lanes[at].pop() {
                turns.next = (at + 1) % count;
                return Some((turns.lanes[at].clone(), cmd));
            }
        }
        None
    }
}

impl<E: Executor> WorkItem for Scheduler<E> {
    type Pointer = Arc<Self>;

    fn run(this: Arc<Self>) {
        while let Some((lane, cmd)) = {
            this.wait_released();
            this.pick()
        } {
            let result = if cmd.is_cancelled() {
                Err(ECANCELED)
            } else {
                this.executor.execute(&cmd, &lane.cancel)
            };
            // Its memory is let go before its completion is written: whoever reaps it finds
            // the pins and the buffers free.
            cmd.complete(result);
            lane.finish();
        }
    }
}

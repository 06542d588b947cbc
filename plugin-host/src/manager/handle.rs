//! Handles to plugins and the registry slot they point at: the call path.
//!
//! # The call path
//!
//! A call must find the slot's current version, mark itself in flight on it (so that an
//! unload or upgrade waits for it), and run entirely on it. Loading the `ArcSwap` that holds
//! the current version costs more than the plugin call itself, so each thread keeps a small
//! cache: for a few slots, the version it last called and the slot's *publication number*
//! at the time. Every store into a slot's `current` takes a new number from one
//! process-wide counter ([`Slot::publish`]), so a number names one publication of one slot
//! for the life of the process. A call reads the number, finds the cached version (or loads
//! the `ArcSwap` on a miss), marks itself in flight on that version, then reads the number
//! again; if it changed, the mark is undone and the call starts over.
//!
//! The mark goes on this thread's stripe of the version's in-flight counter; a thread owns
//! its stripe (see `InFlight`), so the unmark at the end is a plain store. Where the
//! process can issue a process-wide barrier (`fence.rs`), the mark is a plain store and a
//! compiler fence, and `publish` pays for the barrier; elsewhere it is an atomic add.
//!
//! Why the drain sees every call: `publish` swaps `current`, stores the new number and
//! issues a full barrier (a process-wide one where calls mark lightly); the drain then reads
//! the in-flight counters. A call marks itself, with a full barrier or under the
//! process-wide one, then reads the number again. If that read still returns the old
//! number, it came before the store of the new one, so the call's mark came before the
//! drain's read: the drain counts the call. Otherwise the call starts over, on the new
//! version.
//!
//! Why the version outlives the call: while a validated mark is in place, the version is
//! either the slot's current one (held by `current`) or one being retired (held by the
//! slot's `draining` list, which keeps a version until no call runs on it). The thread's
//! cache holds it too, but only until that thread replaces the entry.

use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use parking_lot::Mutex;
use plugin_abi::abi_stable::sabi_types::RRef;
use plugin_abi::abi_stable::std_types::RResult;
use plugin_abi::{HostContext_TO, PluginError};

/// The FFI signature of a plugin's `execute` entry.
type ExecuteFn =
    for<'a> extern "C" fn(HostContext_TO<'a, RRef<'a, ()>>) -> RResult<(), PluginError>;

use super::status::{PluginState, PluginStatus, PluginSummary};
use super::version::{CallGuard, LoadedVersion, ThreadStripe};
use crate::fence;
use crate::{Context, Error};

/// One plugin name in the registry. Handles point here, so a handle sees upgrades and
/// unloads.
pub(super) struct Slot {
    pub(super) name: String,
    /// The active version. Store into it only through [`Slot::publish`].
    pub(super) current: ArcSwapOption<LoadedVersion>,
    /// The publication number of `current` (see the module docs).
    publication: AtomicU64,
    pub(super) status: Mutex<SlotStatus>,
    /// Serialises this plugin's lifecycle changes (load, upgrade, unload, enable, disable).
    pub(super) lifecycle: Arc<Mutex<()>>,
    /// Libraries mapped for this plugin name since the manager started (never closed);
    /// shared with the manager, so the count survives an unload and a new load.
    pub(super) retained: Arc<AtomicUsize>,
}

pub(super) struct SlotStatus {
    pub(super) state: PluginState,
    /// The versions replaced or unloaded that calls may still run on. A version stays here
    /// until no call runs on it, which is what keeps it alive for those calls.
    pub(super) draining: Vec<Arc<LoadedVersion>>,
}

/// A slot's lifecycle lock, held.
pub(super) type SlotGuard = parking_lot::ArcMutexGuard<parking_lot::RawMutex, ()>;

/// The next publication number; see the module docs.
static PUBLICATIONS: AtomicU64 = AtomicU64::new(1);

fn next_publication() -> u64 {
    PUBLICATIONS.fetch_add(1, Ordering::Relaxed)
}

impl Slot {
    /// A slot with no active version.
    pub(super) fn new(name: &str, retained: Arc<AtomicUsize>) -> Self {
        Slot {
            name: name.to_owned(),
            current: ArcSwapOption::empty(),
            publication: AtomicU64::new(next_publication()),
            lifecycle: Arc::new(Mutex::new(())),
            status: Mutex::new(SlotStatus {
                state: PluginState::Discovered,
                draining: Vec::new(),
            }),
            retained,
        }
    }

    /// Makes `version` the one new calls run on, and returns the one they ran on before.
    pub(super) fn publish(
        &self,
        version: Option<Arc<LoadedVersion>>,
    ) -> Option<Arc<LoadedVersion>> {
        let previous = self.current.swap(version);
        self.publication.store(next_publication(), Ordering::SeqCst);
        // Pairs with the calls' side of the fence: see the module docs and `fence.rs`.
        fence::heavy();
        previous
    }

    /// Records `old`, just swapped out, as draining, and sets the state, in one step.
    pub(super) fn begin_retiring(&self, old: Option<&Arc<LoadedVersion>>, state: PluginState) {
        let mut status = self.status.lock();
        status.state = state;
        if let Some(old) = old {
            status.draining.push(old.clone());
        }
    }

    /// Whether the plugin was unloaded: the registry then treats the slot as absent (it
    /// stays in the map only while an unload's stuck calls were still running).
    pub(super) fn is_gone(&self) -> bool {
        self.status.lock().state == PluginState::Unloaded && self.current.load().is_none()
    }

    /// Forgets the retired versions no call runs on any more.
    pub(super) fn prune_draining(&self) {
        self.status
            .lock()
            .draining
            .retain(|v| v.in_flight.total() != 0);
    }

    /// Marks a call in flight on the current version; `None` if no version is active.
    #[inline]
    fn enter(&self) -> Option<Call<'_>> {
        loop {
            let publication = self.publication.load(Ordering::SeqCst);
            let (hit, keep) = match cached(self, publication) {
                Some(hit) => (hit, None),
                None => self.miss(publication)?,
            };
            // SAFETY: `hit.version` points to a live `LoadedVersion` and `hit.stripe` into
            // it: the thread's cache holds a strong reference to it (and only this thread
            // replaces it, not before this line), or `keep` does. Once the mark below is
            // validated, `current` or `draining` also holds one for as long as the call
            // runs (see the module docs), so the references may outlive the cache entry.
            let (version, stripe) = unsafe { (&*hit.version, &*hit.stripe) };
            let guard = CallGuard::on(stripe, hit.owned, hit.light);
            if self.publication.load(Ordering::SeqCst) == publication {
                return Some(Call {
                    version,
                    execute: hit.execute,
                    _guard: guard,
                    _keep: keep,
                });
            }
        }
    }

    /// The slow path of [`enter`](Slot::enter): loads the current version and caches it.
    #[cold]
    #[inline(never)]
    fn miss(&self, publication: u64) -> Option<(Hit, Option<Arc<LoadedVersion>>)> {
        let version = self.current.load_full()?;
        // Cached when the thread still has its cache; otherwise the call keeps its own
        // reference, and marks itself on the shared stripe.
        Some(remember(self, publication, version))
    }

    pub(super) fn status(&self) -> PluginStatus {
        let current = self.current.load_full();
        let status = self.status.lock();
        // A version read as current just before it was swapped out is also in `draining`:
        // count it once.
        let draining: usize = status
            .draining
            .iter()
            .filter(|v| !current.as_ref().is_some_and(|c| Arc::ptr_eq(c, v)))
            .map(|v| v.in_flight.total())
            .sum();
        let stuck_calls = status
            .draining
            .iter()
            .filter(|v| v.stuck.load(Ordering::Relaxed))
            .map(|v| v.in_flight.total())
            .sum();
        PluginStatus {
            name: self.name.clone(),
            state: status.state.clone(),
            active: current.as_deref().map(|v| PluginSummary::of(&v.loaded)),
            calls_in_flight: current.as_deref().map_or(0, |v| v.in_flight.total()) + draining,
            stuck_calls,
            retained_libraries: self.retained.load(Ordering::Relaxed),
        }
    }
}

/// One call in flight: the version it runs on, marked until the call ends.
struct Call<'a> {
    version: &'a LoadedVersion,
    /// The plugin's `execute` entry when it runs in this process.
    execute: Option<ExecuteFn>,
    _guard: CallGuard<'a>,
    /// A reference for a thread whose cache is gone (it is exiting).
    _keep: Option<Arc<LoadedVersion>>,
}

/// How many slots each thread caches a version for.
const CACHE_WAYS: usize = 4;

/// What a call needs from the cache: the version, and this thread's stripe of its
/// in-flight counter, for one publication of one slot. Plain pointers, valid while the
/// cache's `held` entry of the same way holds the version.
#[derive(Clone, Copy)]
struct Hit {
    slot: *const Slot,
    publication: u64,
    version: *const LoadedVersion,
    stripe: *const AtomicUsize,
    /// The version's `execute` entry if it runs in this process, read once per cache fill
    /// rather than through the version and its root module on every call.
    execute: Option<ExecuteFn>,
    /// Whether this thread owns the stripe (see `InFlight`).
    owned: bool,
    /// Whether the mark may be a plain store and a compiler fence (an owned stripe, and
    /// drains that pay for the barrier: see `fence.rs`).
    light: bool,
}

const EMPTY: Hit = Hit {
    slot: std::ptr::null(),
    publication: 0,
    version: std::ptr::null(),
    stripe: std::ptr::null(),
    execute: None,
    owned: false,
    light: false,
};

impl Hit {
    fn of(
        slot: &Slot,
        publication: u64,
        version: &Arc<LoadedVersion>,
        owner: Option<&ThreadStripe>,
    ) -> Hit {
        let (stripe, owned) = version.in_flight.stripe(owner);
        Hit {
            slot,
            publication,
            version: Arc::as_ptr(version),
            stripe,
            execute: version.loaded.code.entry(),
            owned,
            light: owned && fence::asymmetric(),
        }
    }
}

/// One thread's cache. `hits[w]` is read on every call; `held[w]` holds the version
/// `hits[w]` points to, and changes only when the entry is replaced. `stripe` is the
/// in-flight stripe this thread owns: it is given back when the cache goes, with the
/// pointers to it.
struct Cache {
    hits: [Cell<Hit>; CACHE_WAYS],
    held: RefCell<[Option<Arc<LoadedVersion>>; CACHE_WAYS]>,
    stripe: ThreadStripe,
}

thread_local! {
    static CACHE: Cache = Cache {
        hits: [const { Cell::new(EMPTY) }; CACHE_WAYS],
        held: RefCell::new([const { None }; CACHE_WAYS]),
        stripe: ThreadStripe::take(),
    };
}

fn way(slot: *const Slot) -> usize {
    // Slots are heap allocations at least 64 bytes apart.
    (slot as usize >> 6) % CACHE_WAYS
}

/// What this thread cached for `slot` at `publication`, if anything.
#[inline]
fn cached(slot: &Slot, publication: u64) -> Option<Hit> {
    let slot: *const Slot = slot;
    CACHE
        .try_with(|cache| {
            let hit = cache.hits[way(slot)].get();
            (std::ptr::eq(hit.slot, slot) && hit.publication == publication).then_some(hit)
        })
        .ok()
        .flatten()
}

/// Caches `version` for `slot` at `publication`, and returns what a call needs: the hit,
/// and the version itself if this thread's cache is gone (the thread is exiting) or busy.
fn remember(
    slot: &Slot,
    publication: u64,
    version: Arc<LoadedVersion>,
) -> (Hit, Option<Arc<LoadedVersion>>) {
    let mut version = Some(version);
    let mut hit = None;
    let _ = CACHE.try_with(|cache| {
        let w = way(slot);
        if let Ok(mut held) = cache.held.try_borrow_mut() {
            let v = version.take().expect("taken once");
            let fresh = Hit::of(slot, publication, &v, Some(&cache.stripe));
            // Forget the old pointers before the reference that keeps them valid goes.
            cache.hits[w].set(EMPTY);
            held[w] = Some(v);
            cache.hits[w].set(fresh);
            hit = Some(fresh);
        }
    });
    match (hit, version) {
        (Some(hit), None) => (hit, None),
        (_, Some(version)) => (Hit::of(slot, publication, &version, None), Some(version)),
        (None, None) => unreachable!("the version is either cached or given back"),
    }
}

/// A handle to one plugin.
///
/// Cheap to clone and `Send + Sync`: call it from any thread. It follows upgrades: each call
/// runs on the version active when it starts.
#[derive(Clone)]
pub struct PluginHandle {
    pub(super) slot: Arc<Slot>,
}

impl PluginHandle {
    /// The plugin's name.
    pub fn name(&self) -> &str {
        &self.slot.name
    }

    /// Calls the plugin's `execute` entry in `ctx`.
    ///
    /// The plugin reads and writes `ctx`'s values; errors it returns (and panics, which the
    /// SDK catches inside the plugin) come back as [`Error::Call`].
    pub fn execute(&self, ctx: &Context) -> Result<(), Error> {
        // Counted in flight until it returns, so an unload or upgrade waits for it.
        let Some(call) = self.slot.enter() else {
            return Err(self.not_active());
        };
        let version = call.version;
        let Some(execute) = call.execute.or_else(|| version.loaded.code.entry()) else {
            return version
                .loaded
                .code
                .call(&self.slot.name, ctx, &version.abort);
        };
        crate::module::invoke(
            execute,
            ctx,
            &self.slot.name,
            &version.abort,
            crate::context::emit_log,
        )
        .map_err(|err| Error::call(&self.slot.name, err))
    }

    /// Calls the plugin's typed entry (`export_plugin! { call: f }`): stores `input` in `ctx`
    /// under [`INPUT_KEY`](plugin_abi::INPUT_KEY), runs the call, and returns what the plugin
    /// stored under [`OUTPUT_KEY`](plugin_abi::OUTPUT_KEY) as an `O`.
    ///
    /// The rest of `ctx` works as for [`execute`](PluginHandle::execute): other values,
    /// the label, cancellation and the deadline. A plugin written against the untyped
    /// context can serve typed calls too, by reading `input` and setting `output`.
    ///
    /// # Errors
    ///
    /// Those of [`execute`](PluginHandle::execute); [`Error::Value`] if `input` cannot be
    /// stored or the output does not have the shape of `O`; [`Error::NoOutput`] if the
    /// plugin returned without storing an output.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use plugin_host::{Context, PluginManager};
    /// use serde::{Deserialize, Serialize};
    ///
    /// #[derive(Serialize)]
    /// struct Input<'a> { name: &'a str }
    /// #[derive(Deserialize)]
    /// struct Output { greeting: String }
    ///
    /// let manager = PluginManager::new("plugins");
    /// manager.load_plugin("typed-greeter")?;
    /// let out: Output = manager
    ///     .get("typed-greeter")?
    ///     .call(&Context::background(), &Input { name: "world" })?;
    /// println!("{}", out.greeting);
    /// # Ok::<(), plugin_host::Error>(())
    /// ```
    pub fn call<I, O>(&self, ctx: &Context, input: &I) -> Result<O, Error>
    where
        I: serde::Serialize + ?Sized,
        O: serde::de::DeserializeOwned,
    {
        ctx.set(plugin_abi::INPUT_KEY, input)?;
        self.execute(ctx)?;
        self.output(ctx)
    }

    /// The output a typed call left in `ctx`.
    pub(super) fn output<O: serde::de::DeserializeOwned>(&self, ctx: &Context) -> Result<O, Error> {
        ctx.get(plugin_abi::OUTPUT_KEY)?
            .ok_or_else(|| Error::NoOutput {
                plugin: self.slot.name.clone(),
                key: plugin_abi::OUTPUT_KEY,
            })
    }

    #[cold]
    fn not_active(&self) -> Error {
        Error::Unloaded {
            plugin: self.slot.name.clone(),
        }
    }

    /// The active version, or `None` once unloaded.
    pub fn summary(&self) -> Option<PluginSummary> {
        self.slot
            .current
            .load()
            .as_deref()
            .map(|v| PluginSummary::of(&v.loaded))
    }

    /// The plugin's current status.
    pub fn status(&self) -> PluginStatus {
        self.slot.status()
    }
}

impl std::fmt::Debug for PluginHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginHandle")
            .field("name", &self.slot.name)
            .finish()
    }
}

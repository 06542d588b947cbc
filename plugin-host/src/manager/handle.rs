//! Handles to plugins and the registry slot they point at: the call path.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use arc_swap::ArcSwapOption;
use parking_lot::Mutex;
use plugin_abi::abi_stable::sabi_trait::TD_Opaque;
use plugin_abi::abi_stable::sabi_types::RRef;
use plugin_abi::abi_stable::std_types::RResult;
use plugin_abi::HostContext_TO;

use super::status::{PluginState, PluginStatus, PluginSummary};
use super::version::{CallGuard, LoadedVersion};
use crate::context::CallContext;
use crate::{Context, Error};

/// One plugin name in the registry. Handles point here, so a handle sees upgrades and
/// unloads.
pub(super) struct Slot {
    pub(super) name: String,
    pub(super) current: ArcSwapOption<LoadedVersion>,
    pub(super) status: Mutex<SlotStatus>,
    /// Libraries mapped for this plugin name since the manager started (never closed);
    /// shared with the manager, so the count survives an unload and a new load.
    pub(super) retained: Arc<AtomicUsize>,
}

pub(super) struct SlotStatus {
    pub(super) state: PluginState,
    /// The versions replaced or unloaded but still referenced by calls past their drain.
    pub(super) draining: Vec<Weak<LoadedVersion>>,
}

impl Slot {
    /// Records `old`, just swapped out, as draining, and sets the state, in one step.
    pub(super) fn begin_retiring(&self, old: Option<&Arc<LoadedVersion>>, state: PluginState) {
        let mut status = self.status.lock();
        status.state = state;
        if let Some(old) = old {
            status.draining.push(Arc::downgrade(old));
        }
    }

    pub(super) fn status(&self) -> PluginStatus {
        let current = self.current.load_full();
        let status = self.status.lock();
        // A version read as current just before it was swapped out is also in `draining`:
        // count it once.
        let draining: usize = status
            .draining
            .iter()
            .filter_map(Weak::upgrade)
            .filter(|v| !current.as_ref().is_some_and(|c| Arc::ptr_eq(c, v)))
            .map(|v| v.in_flight.total())
            .sum();
        PluginStatus {
            name: self.name.clone(),
            state: status.state.clone(),
            active: current.as_deref().map(|v| PluginSummary::of(&v.loaded)),
            calls_in_flight: current.as_deref().map_or(0, |v| v.in_flight.total()) + draining,
            retained_libraries: self.retained.load(Ordering::Relaxed),
        }
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
        // The guard keeps this version alive for the whole call; the call guard counts it
        // as in flight, so an unload or upgrade waits for it.
        let guard = self.slot.current.load();
        let Some(version) = guard.as_deref() else {
            return Err(self.not_active());
        };
        let _in_flight = CallGuard::enter(&version.in_flight);
        let call = CallContext {
            ctx,
            plugin: &self.slot.name,
            abort: &version.abort,
        };
        let raw = HostContext_TO::from_ptr(RRef::new(&call), TD_Opaque);
        match (version.loaded.module.execute())(raw) {
            RResult::ROk(()) => Ok(()),
            RResult::RErr(err) => Err(Error::call(&self.slot.name, err)),
        }
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

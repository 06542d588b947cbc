//! Changing what runs: unload, reload, hot upgrade, enable, disable, and the watch hooks.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::handle::Slot;
use super::install::{install_folder, FolderStamp};
use super::status::{Drain, Event, PluginState, ShutdownOutcome, UpgradeOptions, Upgraded};
use super::version::{drain, remove_copy, run_on_unload, LoadedVersion};
use super::{Listeners, PluginManager};
use crate::watch::{WatchOptions, WatchTarget, Watcher};
use crate::Error;

/// Waits on a thread of its own for the last call on a stuck version, then runs its
/// `on_unload`, marks an unloaded plugin gone, and reports [`Event::Drained`].
fn finish_when_drained(slot: Arc<Slot>, old: Arc<LoadedVersion>, listeners: Listeners) {
    let name = slot.name.clone();
    let spawned = std::thread::Builder::new()
        .name(format!("plugin-drain-{name}"))
        .spawn(move || {
            drain(&old, None);
            let _lifecycle = slot.lifecycle.lock();
            let result = run_on_unload(&slot.name, &old.loaded);
            remove_copy(&old.loaded);
            slot.prune_draining();
            {
                let mut status = slot.status.lock();
                if status.state == PluginState::Unloading && slot.current.load().is_none() {
                    status.state = PluginState::Unloaded;
                }
            }
            listeners.emit(Event::Drained {
                name: slot.name.clone(),
                version: old.loaded.manifest.version.clone(),
                on_unload: result.err().map(|e| e.report()),
            });
        });
    if let Err(err) = spawned {
        // Without a thread, on_unload is skipped rather than run beside the stuck calls.
        tracing::error!(
            plugin = %name,
            "cannot start a thread to wait for stuck calls ({err}); on_unload will not run"
        );
    }
}

impl PluginManager {
    /// Unloads the plugin `name`.
    ///
    /// New calls are refused at once ([`Error::Unloaded`] through existing handles,
    /// [`Error::NotActive`] through `get`, while `list` shows it as unloading; then
    /// [`Error::NotFound`]). Calls in flight get up to the drain timeout to
    /// finish; then their contexts are cancelled and they are waited for (as long again).
    /// Then `on_unload` runs and the plugin leaves the registry. The library's code stays
    /// mapped: libraries are never closed (see the crate docs).
    pub fn unload(&self, name: &str) -> Result<Drain, Error> {
        self.unload_within(name, self.drain_timeout)
    }

    /// [`unload`](Self::unload), with `drain_timeout` instead of the manager's.
    fn unload_within(&self, name: &str, drain_timeout: Duration) -> Result<Drain, Error> {
        let Some((slot, _lifecycle)) = self.locked_slot(name, false) else {
            return Err(Error::NotFound {
                plugin: name.to_owned(),
                base_dir: self.base_dir.clone(),
            });
        };
        // Refuse new calls first; the plugin stays listed as unloading while it drains.
        let old = slot.publish(None);
        slot.begin_retiring(old.as_ref(), PluginState::Unloading);
        let (drain, result) = match old {
            Some(old) => self.retire(&slot, old, drain_timeout),
            None => (Drain::Clean, Ok(())),
        };
        if drain.is_clean() {
            self.remove_slot(name, &slot);
            slot.status.lock().state = PluginState::Unloaded;
        }
        // Otherwise the plugin stays listed as unloading, with its stuck calls, until the
        // last of them returns.
        self.emit(Event::Unloaded {
            name: name.to_owned(),
        });
        result.map(|()| drain)
    }

    /// Drains a version that no longer receives calls, then runs its `on_unload`; call
    /// after [`Slot::begin_retiring`].
    ///
    /// Calls get the drain timeout to return; then their contexts are cancelled and they get
    /// as long again. Calls still running after that ignore cancellation: they are reported
    /// (a [`Drain::Stuck`], an [`Event::Stuck`], the plugin's `stuck_calls`), and the
    /// version's `on_unload` is deferred to a thread that waits for the last of them, so it
    /// never runs while a call of that version still does.
    fn retire(
        &self,
        slot: &Arc<Slot>,
        old: Arc<LoadedVersion>,
        drain_timeout: Duration,
    ) -> (Drain, Result<(), Error>) {
        if !drain(&old, Some(drain_timeout)) {
            tracing::warn!(
                plugin = %slot.name,
                in_flight = old.in_flight.total(),
                timeout = ?drain_timeout,
                "calls still running after the drain timeout; cancelling them"
            );
            old.abort.abort();
            if !drain(&old, Some(drain_timeout)) {
                let calls = old.in_flight.total();
                // Calls that run in a process of their own end with it.
                if old.loaded.code.kill() {
                    tracing::error!(
                        plugin = %slot.name,
                        calls,
                        "calls ignore cancellation; killed the plugin's worker"
                    );
                    drain(&old, None);
                    slot.prune_draining();
                    return (Drain::Killed { calls }, Ok(()));
                }
                old.stuck.store(true, Ordering::Relaxed);
                tracing::error!(
                    plugin = %slot.name,
                    version = %old.loaded.manifest.version,
                    calls,
                    "calls ignore cancellation; on_unload waits until they return"
                );
                self.emit(Event::Stuck {
                    name: slot.name.clone(),
                    version: old.loaded.manifest.version.clone(),
                    calls,
                });
                finish_when_drained(slot.clone(), old, self.listeners.clone());
                return (Drain::Stuck { calls }, Ok(()));
            }
        }
        let result = run_on_unload(&slot.name, &old.loaded);
        remove_copy(&old.loaded);
        slot.prune_draining();
        (Drain::Clean, result)
    }

    /// Reloads plugin `name` from its folder: a hot upgrade to whatever the folder holds now.
    ///
    /// See [`upgrade`](PluginManager::upgrade). A plugin that is not active is loaded.
    /// Reloading to a lower version than the running one is refused; use
    /// [`upgrade`](PluginManager::upgrade) with [`UpgradeOptions::allow_downgrade`] for a
    /// downgrade.
    pub fn reload(&self, name: &str) -> Result<Upgraded, Error> {
        let dir = self.plugin_dir(name)?;
        self.upgrade_from(name, &dir, false, false)
    }

    /// Upgrades plugin `name` to the version in `from_dir` (a plugin folder anywhere: its
    /// `plugin.json` must name the same plugin), without dropping a call.
    ///
    /// The new version is loaded beside the old one, from its own private copy, through every
    /// check, and its `on_load` runs. Then its files are installed into the base directory
    /// (replacing the plugin's folder), and it replaces the old version atomically: calls in
    /// flight finish on the old version, new calls go to the new one, and every call runs
    /// entirely on one version. The old version is then drained like an unload and its
    /// `on_unload` runs.
    ///
    /// If the new version fails any check, its `on_load`, or the install, the old version
    /// keeps serving and the error is returned. A lower version than the running one is
    /// refused with [`Error::Downgrade`] unless `options` allow a downgrade.
    pub fn upgrade(
        &self,
        name: &str,
        from_dir: impl AsRef<Path>,
        options: UpgradeOptions,
    ) -> Result<Upgraded, Error> {
        let from_dir = from_dir.as_ref();
        let own = self.base_dir.join(name);
        let same = match (from_dir.canonicalize(), own.canonicalize()) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        };
        self.upgrade_from(name, from_dir, options.allow_downgrade, !same)
    }

    fn upgrade_from(
        &self,
        name: &str,
        from_dir: &Path,
        allow_downgrade: bool,
        install: bool,
    ) -> Result<Upgraded, Error> {
        let (slot, _lifecycle) = self.locked_slot(name, true).expect("inserted");
        if self.state_file.disabled(name)? {
            return Err(Error::Disabled {
                plugin: name.to_owned(),
            });
        }
        let old = slot.current.load_full();
        let fail = |err: Error| {
            // With a version running, a failed upgrade leaves it active (rollback).
            if old.is_none() {
                slot.status.lock().state = PluginState::Failed(err.report());
            }
            self.emit(Event::Failed {
                name: name.to_owned(),
                error: err.report(),
            });
            err
        };
        let new = self.load_version(name, from_dir, &slot).map_err(&fail)?;
        let to = new.loaded.manifest.version.clone();
        let rollback = |new: &LoadedVersion, err: Error| {
            let _ = run_on_unload(name, &new.loaded);
            remove_copy(&new.loaded);
            fail(err)
        };
        if let Some(old) = &old {
            let from = &old.loaded.manifest.version;
            if to < *from && !allow_downgrade {
                return Err(rollback(
                    &new,
                    Error::Downgrade {
                        plugin: name.to_owned(),
                        from: from.clone(),
                        to: to.clone(),
                    },
                ));
            }
        }
        if install {
            if let Err(err) = install_folder(name, from_dir, &self.base_dir) {
                return Err(rollback(&new, err));
            }
            *new.files.lock() =
                FolderStamp::of(&self.base_dir.join(name), &new.loaded.library_in_folder());
        }
        // The swap: from here new calls run the new version.
        let previous = slot.publish(Some(new));
        slot.begin_retiring(previous.as_ref(), PluginState::Active);
        let from = previous.as_ref().map(|p| p.loaded.manifest.version.clone());
        let (drain, retired) = match previous {
            Some(previous) => self.retire(&slot, previous, self.drain_timeout),
            None => (Drain::Clean, Ok(())),
        };
        let upgraded = Upgraded {
            name: name.to_owned(),
            from,
            to: to.clone(),
            drain,
        };
        match &upgraded.from {
            Some(from) => self.emit(Event::Upgraded {
                name: name.to_owned(),
                from: from.clone(),
                to: upgraded.to.clone(),
            }),
            None => self.emit(Event::Loaded {
                name: name.to_owned(),
                version: upgraded.to.clone(),
            }),
        }
        // An `on_unload` failure of the old version does not undo the upgrade.
        if let Err(err) = retired {
            tracing::warn!(plugin = name, "{}", err.report());
        }
        Ok(upgraded)
    }

    /// Unloads every plugin, all at once, each as [`unload`](PluginManager::unload) does
    /// (refuse new calls, drain, cancel, run `on_unload`), and reports each outcome. It
    /// takes at most about twice the drain timeout, however many plugins there are. The
    /// manager can be used again afterwards.
    ///
    /// Dropping the manager does the same for the plugins still loaded, so a host that
    /// exits by returning from `main` runs its plugins' `on_unload`.
    pub fn shutdown(&self) -> Vec<ShutdownOutcome> {
        self.shutdown_with(self.drain_timeout)
    }

    /// [`shutdown`](PluginManager::shutdown) within about `timeout` instead of twice the
    /// drain timeout: each plugin's calls get half of it to return, then their contexts are
    /// cancelled and they get the other half. Calls still running then are abandoned: the
    /// outcome says [`Drain::Stuck`] (or [`Drain::Killed`] in process isolation, whose
    /// worker is ended), and the version's `on_unload` waits for them on a thread of its
    /// own. `on_unload` hooks that run add their own time.
    ///
    /// A server that must exit soon after a signal calls this: in-process calls that ignore
    /// cancellation cannot be stopped, only left behind.
    pub fn shutdown_within(&self, timeout: Duration) -> Vec<ShutdownOutcome> {
        self.shutdown_with(timeout / 2)
    }

    fn shutdown_with(&self, drain_timeout: Duration) -> Vec<ShutdownOutcome> {
        let mut names: Vec<String> = self
            .plugins
            .load()
            .iter()
            .filter(|(_, slot)| !slot.is_gone())
            .map(|(name, _)| name.clone())
            .collect();
        names.sort();
        let mut outcomes: Vec<ShutdownOutcome> = std::thread::scope(|scope| {
            let unloads: Vec<_> = names
                .into_iter()
                .map(|name| scope.spawn(move || (self.unload_within(&name, drain_timeout), name)))
                .collect();
            unloads
                .into_iter()
                .filter_map(|unload| match unload.join() {
                    Ok((Err(Error::NotFound { .. }), _)) => None,
                    Ok((result, name)) => Some(ShutdownOutcome { name, result }),
                    // `unload` does not panic; were it to, the panic is the caller's.
                    Err(panic) => std::panic::resume_unwind(panic),
                })
                .collect()
        });
        outcomes.sort_by(|a, b| a.name.cmp(&b.name));
        outcomes
    }

    /// Disables plugin `name`: unloads it if it is loaded, and records it in the base
    /// directory's state file so that it is discovered but never loaded, now and at the next
    /// start.
    pub fn disable(&self, name: &str) -> Result<(), Error> {
        self.plugin_dir(name)?;
        self.state_file.set_disabled(name, true)?;
        if self.plugins.load().get(name).is_some() {
            match self.unload(name) {
                Ok(_) | Err(Error::NotFound { .. }) => {}
                Err(err) => tracing::warn!(plugin = name, "{}", err.report()),
            }
        }
        let (slot, _lifecycle) = self.locked_slot(name, true).expect("inserted");
        slot.status.lock().state = PluginState::Disabled;
        self.emit(Event::Disabled {
            name: name.to_owned(),
        });
        Ok(())
    }

    /// Enables plugin `name` (removing it from the state file) and loads it.
    pub fn enable(&self, name: &str) -> Result<(), Error> {
        let dir = self.plugin_dir(name)?;
        self.state_file.set_disabled(name, false)?;
        {
            let (slot, _lifecycle) = self.locked_slot(name, true).expect("inserted");
            let mut status = slot.status.lock();
            if status.state == PluginState::Disabled {
                status.state = PluginState::Discovered;
            }
        }
        self.emit(Event::Enabled {
            name: name.to_owned(),
        });
        match self.load_dir(name, &dir) {
            Err(Error::AlreadyLoaded { .. }) if self.is_quarantined(name) => {
                // Enabling a quarantined plugin lifts the quarantine: a fresh load.
                self.reload(name).map(|_| ())
            }
            Err(Error::AlreadyLoaded { .. }) => Ok(()),
            other => other,
        }
    }

    /// Whether the active version of `name` runs in a worker that crashed too often.
    fn is_quarantined(&self, name: &str) -> bool {
        let Some(slot) = self.plugins.load().get(name).cloned() else {
            return false;
        };
        let current = slot.current.load();
        current
            .as_ref()
            .is_some_and(|v| v.loaded.code.is_quarantined())
    }

    /// Whether plugin `name` is disabled in the state file. If the file cannot be read, every
    /// plugin counts as disabled (and the error is logged): any may be disabled in it, and
    /// loading one fails with [`Error::StateFile`].
    pub fn is_disabled(&self, name: &str) -> bool {
        self.state_file.is_disabled(name)
    }
}

impl PluginManager {
    /// Watches the base directory and keeps the registry in step with it, until the returned
    /// [`Watcher`] is dropped: a new plugin folder is loaded, a changed `plugin.json` or
    /// library is upgraded ([`reload`](PluginManager::reload)), a removed folder is
    /// unloaded. Outcomes arrive as [`Event`]s.
    ///
    /// A folder is acted on once its files are complete; see [`crate::watch`] for how that is
    /// decided. Call it before [`load_plugins`](PluginManager::load_plugins) to miss nothing.
    pub fn watch(self: &Arc<Self>) -> Result<Watcher, Error> {
        self.watch_with(WatchOptions::default())
    }

    /// [`watch`](PluginManager::watch) with options (debounce, polling).
    pub fn watch_with(self: &Arc<Self>, options: WatchOptions) -> Result<Watcher, Error> {
        Ok(Watcher::start(self.clone(), options)?)
    }
}

impl WatchTarget for PluginManager {
    fn base_dir(&self) -> &Path {
        &self.base_dir
    }

    fn is_loaded(&self, name: &str) -> bool {
        self.plugins
            .load()
            .get(name)
            .is_some_and(|slot| slot.current.load().is_some())
    }

    fn is_disabled(&self, name: &str) -> bool {
        self.state_file.is_disabled(name)
    }

    // Outcomes reach listeners as events; the errors are only logged here.
    fn watch_load(&self, name: &str) {
        match self.load_plugin(name) {
            Ok(()) | Err(Error::AlreadyLoaded { .. }) | Err(Error::Disabled { .. }) => {}
            Err(err) => tracing::debug!(plugin = name, "watch: {}", err.report()),
        }
    }

    fn watch_reload(&self, name: &str) {
        // Under the plugin's lock: an upgrade installs its files and records their stamps
        // before it releases it, so the watcher never sees its install half done.
        let locked = self.locked_slot(name, false);
        let unchanged = locked.as_ref().is_some_and(|(slot, _lifecycle)| {
            slot.current.load().as_deref().is_some_and(|v| {
                let files = v.files.lock();
                files.is_some()
                    && *files
                        == FolderStamp::of(&self.base_dir.join(name), &v.loaded.library_in_folder())
            })
        });
        drop(locked);
        if unchanged {
            tracing::debug!(
                plugin = name,
                "watch: files unchanged since the running version was loaded"
            );
            return;
        }
        if let Err(err) = self.reload(name) {
            tracing::debug!(plugin = name, "watch: {}", err.report());
        }
    }

    fn watch_unload(&self, name: &str) {
        if let Err(err) = self.unload(name) {
            tracing::debug!(plugin = name, "watch: {}", err.report());
        }
    }
}

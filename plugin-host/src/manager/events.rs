//! Lifecycle event listeners: registered with an id that removes them, and channels that
//! go away with their receivers.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};

use parking_lot::Mutex;

use super::status::Event;
#[cfg(all(target_os = "linux", feature = "isolation"))]
use super::{handle::Slot, PluginState};
#[cfg(all(target_os = "linux", feature = "isolation"))]
use crate::isolate::{SupervisorHooks, WorkerExit};
#[cfg(all(target_os = "linux", feature = "isolation"))]
use std::time::Duration;

/// Names a listener added with [`PluginManager::add_listener`](crate::PluginManager::add_listener),
/// so that [`remove_listener`](crate::PluginManager::remove_listener) can remove it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ListenerId(u64);

type Listener = Arc<dyn Fn(&Event) + Send + Sync>;

/// The manager's listeners and subscribers; cloned into the threads that finish stuck
/// versions, which report [`Event::Drained`].
#[derive(Clone, Default)]
pub(super) struct Listeners(Arc<Inner>);

#[derive(Default)]
struct Inner {
    next: AtomicU64,
    listeners: Mutex<Vec<(ListenerId, Listener)>>,
    subscribers: Mutex<Vec<mpsc::Sender<Event>>>,
}

impl Listeners {
    pub(super) fn add(&self, listener: Listener) -> ListenerId {
        let id = ListenerId(self.0.next.fetch_add(1, Ordering::Relaxed));
        self.0.listeners.lock().push((id, listener));
        id
    }

    pub(super) fn remove(&self, id: ListenerId) -> bool {
        let mut listeners = self.0.listeners.lock();
        let before = listeners.len();
        listeners.retain(|(each, _)| *each != id);
        listeners.len() != before
    }

    pub(super) fn subscribe(&self) -> mpsc::Receiver<Event> {
        let (tx, rx) = mpsc::channel();
        self.0.subscribers.lock().push(tx);
        rx
    }

    /// Logs `event` and hands it to every listener and subscriber. Listeners are called
    /// outside the listener list's lock, so a listener may add or remove listeners; a
    /// subscriber whose receiver is gone is dropped.
    pub(super) fn emit(&self, event: Event) {
        match &event {
            Event::Failed { name, error } => tracing::warn!(plugin = %name, "{error}"),
            other => tracing::info!(plugin = %other.plugin(), event = ?other, "plugin event"),
        }
        let listeners: Vec<Listener> = self
            .0
            .listeners
            .lock()
            .iter()
            .map(|(_, listener)| listener.clone())
            .collect();
        for listener in listeners {
            listener(&event);
        }
        self.0
            .subscribers
            .lock()
            .retain(|tx| tx.send(event.clone()).is_ok());
    }

    /// Listeners and live subscribers, for tests.
    #[cfg(test)]
    pub(super) fn counts(&self) -> (usize, usize) {
        (
            self.0.listeners.lock().len(),
            self.0.subscribers.lock().len(),
        )
    }
}

/// What a worker's supervisor reports back: crashes become events, and a quarantine
/// turns the plugin's state to failed.
#[cfg(all(target_os = "linux", feature = "isolation"))]
pub(super) fn supervisor_hooks(listeners: &Listeners, slot: &Arc<Slot>) -> SupervisorHooks {
    let (on_crash, name) = (listeners.clone(), slot.name.clone());
    let crashed = move |exit: &WorkerExit, restart: Option<Duration>| {
        on_crash.emit(Event::WorkerCrashed {
            name: name.clone(),
            exit: exit.clone(),
            restart_in_ms: restart.map(|d| d.as_millis() as u64),
        });
    };
    let (listeners, slot) = (listeners.clone(), Arc::downgrade(slot));
    let quarantined = move |reason: &str| {
        let Some(slot) = slot.upgrade() else { return };
        slot.status.lock().state = PluginState::Failed(format!("quarantined: {reason}"));
        listeners.emit(Event::Quarantined {
            name: slot.name.clone(),
            reason: reason.to_owned(),
        });
    };
    SupervisorHooks {
        crashed: Box::new(crashed),
        quarantined: Box::new(quarantined),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> Event {
        Event::Enabled { name: "x".into() }
    }

    #[test]
    fn a_removed_listener_is_not_called_and_a_dropped_receiver_is_forgotten() {
        let listeners = Listeners::default();
        let calls = Arc::new(AtomicU64::new(0));
        let id = listeners.add({
            let calls = calls.clone();
            Arc::new(move |_| {
                calls.fetch_add(1, Ordering::SeqCst);
            })
        });
        let kept = listeners.subscribe();
        let dropped = listeners.subscribe();
        drop(dropped);
        assert_eq!(listeners.counts(), (1, 2));
        listeners.emit(event());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(kept.try_recv(), Ok(event()));
        assert_eq!(
            listeners.counts(),
            (1, 1),
            "the dropped receiver's sender is gone"
        );

        assert!(listeners.remove(id));
        assert!(!listeners.remove(id));
        listeners.emit(event());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(kept.try_recv(), Ok(event()));
    }

    #[test]
    fn a_listener_may_add_another_while_it_runs() {
        let listeners = Listeners::default();
        let inner = listeners.clone();
        listeners.add(Arc::new(move |_| {
            inner.add(Arc::new(|_| {}));
        }));
        listeners.emit(event());
        assert_eq!(listeners.counts(), (2, 0));
    }
}

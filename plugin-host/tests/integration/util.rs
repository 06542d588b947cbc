//! Helpers shared by the integration tests.

use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use plugin_host::semver::Version;
use plugin_host::{Event, UpgradeOptions};

/// The longest any test waits for one lifecycle event. Generous, because a loaded CI machine
/// may take seconds to build and load a plugin; a hang still ends as a failure with a message.
pub(crate) const EVENT_TIMEOUT: Duration = Duration::from_secs(30);

/// The next event, or a test failure once [`EVENT_TIMEOUT`] has passed.
pub(crate) fn next_event(events: &Receiver<Event>) -> Event {
    events
        .recv_timeout(EVENT_TIMEOUT)
        .expect("an event within the timeout")
}

/// A version, parsed.
pub(crate) fn v(text: &str) -> Version {
    Version::parse(text).expect("a valid version")
}

/// Upgrade options that accept a downgrade.
pub(crate) fn downgrade() -> UpgradeOptions {
    UpgradeOptions::new().allow_downgrade(true)
}

/// Waits until `done` holds, failing the test once [`EVENT_TIMEOUT`] has passed. What it
/// waits for (a value a plugin sets, a counter of the manager) notifies no one, so it is
/// polled every millisecond: the waiting thread sleeps rather than competing for a core
/// with the threads it waits for.
pub(crate) fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let give_up = Instant::now() + EVENT_TIMEOUT;
    while !done() {
        assert!(Instant::now() < give_up, "timed out waiting until {what}");
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

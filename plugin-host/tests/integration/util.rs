//! Helpers shared by the integration tests.

use std::sync::mpsc::Receiver;
use std::time::Duration;

use plugin_host::Event;

/// The longest any test waits for one lifecycle event. Generous, because a loaded CI machine
/// may take seconds to build and load a plugin; a hang still ends as a failure with a message.
pub(crate) const EVENT_TIMEOUT: Duration = Duration::from_secs(30);

/// The next event, or a test failure once [`EVENT_TIMEOUT`] has passed.
pub(crate) fn next_event(events: &Receiver<Event>) -> Event {
    events
        .recv_timeout(EVENT_TIMEOUT)
        .expect("an event within the timeout")
}

//! Plugins that ignore cancellation: unload and upgrade report them, keep them visible, never
//! run `on_unload` beside them, and never hold up another plugin's lifecycle.

use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use plugin_host::{Context, Drain, ErrorKind, Event, PluginManager, PluginState};
use plugin_test_support::fixtures;

use crate::util::{next_event, wait_until, EVENT_TIMEOUT};

fn manager_with(names: &[&str], drain: Duration) -> (tempfile::TempDir, Arc<PluginManager>) {
    let base = tempfile::tempdir().unwrap();
    for name in names {
        fixtures().install(base.path(), name);
    }
    let m = PluginManager::builder(base.path())
        .drain_timeout(drain)
        .build();
    for name in names {
        m.load_plugin(name).unwrap();
    }
    (base, Arc::new(m))
}

/// Starts a `hang` call of `hostile` and returns once the plugin runs it.
fn start_hanging_call(m: &PluginManager) -> (Context, JoinHandle<Result<(), plugin_host::Error>>) {
    let ctx = Context::background().with_label("hang");
    let call = {
        let (h, ctx) = (m.get("hostile").unwrap(), ctx.clone());
        std::thread::spawn(move || h.execute(&ctx))
    };
    wait_until("the call runs", || {
        ctx.get::<bool>("started").unwrap() == Some(true)
    });
    (ctx, call)
}

#[test]
fn an_unload_with_calls_that_ignore_cancellation_reports_them_and_defers_on_unload() {
    let (_base, m) = manager_with(&["hostile"], Duration::from_millis(50));
    let events = m.subscribe();
    let (ctx, call) = start_hanging_call(&m);

    let drain = m.unload("hostile").unwrap();
    assert_eq!(drain, Drain::Stuck { calls: 1 });
    assert!(!drain.is_clean());
    // The plugin is no longer callable, but stays listed, with its stuck call.
    assert!(m.get("hostile").is_err());
    let listed = m.list();
    let status = listed
        .iter()
        .find(|s| s.name == "hostile")
        .expect("still listed");
    assert_eq!(status.state, PluginState::Unloading);
    assert_eq!((status.calls_in_flight, status.stuck_calls), (1, 1));
    assert_eq!(
        next_event(&events),
        Event::Stuck {
            name: "hostile".into(),
            version: plugin_host::semver::Version::new(0, 1, 0),
            calls: 1
        }
    );
    assert!(matches!(next_event(&events), Event::Unloaded { .. }));

    // Released, the call returns; on_unload had not run while it ran, and runs now.
    ctx.set("release", &true).unwrap();
    call.join().unwrap().unwrap();
    assert_eq!(
        ctx.get::<bool>("unloaded_during_call").unwrap(),
        Some(false)
    );
    assert_eq!(
        next_event(&events),
        Event::Drained {
            name: "hostile".into(),
            version: plugin_host::semver::Version::new(0, 1, 0),
            on_unload: None
        }
    );
    assert!(m.list().iter().all(|s| s.name != "hostile"));
    assert_eq!(m.state("hostile"), None);
    // The name can be loaded again.
    m.load_plugin("hostile").unwrap();
    assert_eq!(m.state("hostile"), Some(PluginState::Active));
}

#[test]
fn an_upgrade_past_a_stuck_call_reports_it_in_its_result() {
    let (_base, m) = manager_with(&["hostile"], Duration::from_millis(50));
    let (ctx, call) = start_hanging_call(&m);
    let upgraded = m.reload("hostile").unwrap();
    assert_eq!(upgraded.drain, Drain::Stuck { calls: 1 });
    // The new version serves; the old one's call is still counted.
    let status = m.get("hostile").unwrap().status();
    assert_eq!(status.state, PluginState::Active);
    assert_eq!((status.calls_in_flight, status.stuck_calls), (1, 1));
    ctx.set("release", &true).unwrap();
    call.join().unwrap().unwrap();
    assert_eq!(
        ctx.get::<bool>("unloaded_during_call").unwrap(),
        Some(false)
    );
}

#[test]
fn one_plugins_drain_does_not_delay_another_plugins_lifecycle() {
    // A long drain: the unload of `hostile` waits for its call until the test releases it.
    let (_base, m) = manager_with(&["hostile"], EVENT_TIMEOUT * 4);
    fixtures().install(m.base_dir(), "hello");
    let (ctx, call) = start_hanging_call(&m);
    let (done, unloaded) = mpsc::channel();
    let unloading = {
        let m = m.clone();
        std::thread::spawn(move || {
            let drain = m.unload("hostile");
            let _ = done.send(());
            drain
        })
    };
    wait_until("the unload starts", || {
        m.state("hostile") == Some(PluginState::Unloading)
    });

    // Meanwhile another plugin loads, is reloaded, disabled and enabled.
    m.load_plugin("hello").unwrap();
    m.reload("hello").unwrap();
    m.disable("hello").unwrap();
    m.enable("hello").unwrap();
    assert_eq!(m.state("hello"), Some(PluginState::Active));
    assert_eq!(
        unloaded.try_recv(),
        Err(mpsc::TryRecvError::Empty),
        "the unload of hostile was still draining"
    );

    ctx.set("release", &true).unwrap();
    call.join().unwrap().unwrap();
    assert_eq!(unloading.join().unwrap().unwrap(), Drain::Clean);
}

#[test]
fn a_drain_that_times_out_cancels_a_call_that_only_polls_is_cancelled() {
    let (_base, m) = manager_with(&["hostile"], Duration::from_millis(50));
    let ctx = Context::background().with_label("poll");
    let call = {
        let (h, ctx) = (m.get("hostile").unwrap(), ctx.clone());
        std::thread::spawn(move || h.execute(&ctx))
    };
    wait_until("the call runs", || {
        ctx.get::<bool>("started").unwrap() == Some(true)
    });
    // The caller's context is never cancelled: only the drain's abort can stop the call.
    assert_eq!(m.unload("hostile").unwrap(), Drain::Clean);
    let err = call.join().unwrap().unwrap_err();
    assert_eq!(err.plugin_error_kind(), Some(ErrorKind::Cancelled), "{err}");
    assert!(!ctx.is_cancelled());
}

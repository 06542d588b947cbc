//! Unload, hot upgrade, enable/disable and events, through the public API.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::util::{downgrade, next_event, v, wait_until};
use plugin_host::{
    Context, Drain, Error, ErrorKind, Event, PluginManager, PluginState, UpgradeOptions,
};
use plugin_test_support::{fixtures, install_folder, versioned_variant};

/// Calls `versioned` and returns the versions it saw at the start and the end of the call.
fn call_versions(m: &PluginManager) -> (String, String) {
    let ctx = Context::background();
    m.get("versioned").unwrap().execute(&ctx).unwrap();
    (
        ctx.get::<String>("version_at_start").unwrap().unwrap(),
        ctx.get::<String>("version_at_end").unwrap().unwrap(),
    )
}

#[test]
fn upgrade_under_load_drops_no_call_and_each_call_runs_on_one_version() {
    let versions = ["1.0.0", "2.0.0", "1.0.1"];
    let folders: Vec<_> = versions.iter().map(|v| versioned_variant(v, &[])).collect();
    let base = tempfile::tempdir().unwrap();
    install_folder(&folders[0], base.path(), "versioned");
    let m = Arc::new(PluginManager::new(base.path()));
    m.load_plugin("versioned").unwrap();
    let handle = m.get("versioned").unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let callers: Vec<_> = (0..4)
        .map(|_| {
            let (handle, stop) = (handle.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut seen = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let ctx = Context::background();
                    let result = handle.execute(&ctx).map(|()| {
                        (
                            ctx.get::<String>("version_at_start").unwrap().unwrap(),
                            ctx.get::<String>("version_at_end").unwrap().unwrap(),
                        )
                    });
                    seen.push(result);
                }
                seen
            })
        })
        .collect();

    let mut last = versions[0];
    for i in 1..=20 {
        let next = i % versions.len();
        let up = m.upgrade("versioned", &folders[next], downgrade()).unwrap();
        assert_eq!(up.from, Some(v(last)));
        assert_eq!(up.to, v(versions[next]));
        last = versions[next];
    }
    stop.store(true, Ordering::Relaxed);

    let mut calls = 0;
    for caller in callers {
        for result in caller.join().unwrap() {
            let (start, end) = result.expect("no call fails during upgrades");
            assert_eq!(start, end, "a call ran on two versions");
            assert!(versions.contains(&start.as_str()), "{start}");
            calls += 1;
        }
    }
    assert!(calls > 0);
    // After the last swap only the newest version answers.
    for _ in 0..10 {
        assert_eq!(call_versions(&m).0, last);
    }
    // The base directory now holds the last version, so a restart loads it.
    let restarted = PluginManager::new(base.path());
    restarted.load_plugin("versioned").unwrap();
    assert_eq!(call_versions(&restarted).0, last);
    let status = m.get("versioned").unwrap().status();
    assert_eq!(status.retained_libraries, 21);
    assert_eq!(status.calls_in_flight, 0);
}

fn run(cmd: &str, args: &[&Path]) {
    let status = std::process::Command::new(cmd).args(args).status().unwrap();
    assert!(status.success(), "{cmd} failed");
}

/// Lays out `variant`'s library as `<dir>/libversioned.so` (the file an operator replaces)
/// and writes a manifest for `version` pointing at it.
fn write_manifest(dir: &Path, version: &str) {
    std::fs::write(
        dir.join("plugin.json"),
        format!(
            r#"{{ "name": "versioned", "version": "{version}", "source": {{ "mode": "local_so", "path": "versioned" }} }}"#
        ),
    )
    .unwrap();
}

fn built_library(folder: &Path) -> std::path::PathBuf {
    std::fs::read_dir(folder)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.extension()
                .is_some_and(|e| e == std::env::consts::DLL_EXTENSION)
        })
        .unwrap()
}

#[test]
fn a_library_replaced_by_cp_or_mv_runs_its_new_code_after_reload() {
    let v1 = versioned_variant("1.0.0", &[]);
    let v2 = versioned_variant("2.0.0", &[]);
    let v3 = versioned_variant("3.0.0", &[]);
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("versioned");
    std::fs::create_dir(&dir).unwrap();
    let lib = dir.join(plugin_test_support::library_file_name("versioned"));
    std::fs::copy(built_library(&v1), &lib).unwrap();
    write_manifest(&dir, "1.0.0");

    let m = PluginManager::new(base.path());
    m.load_plugin("versioned").unwrap();
    assert_eq!(call_versions(&m).0, "1.0.0");

    // `cp` writes into the same inode the running code was loaded from... had it been
    // loaded from there. It was loaded from a private copy, so it keeps running.
    run("cp", &[&built_library(&v2), &lib]);
    assert_eq!(call_versions(&m).0, "1.0.0");
    write_manifest(&dir, "2.0.0");
    let up = m.reload("versioned").unwrap();
    assert_eq!((up.from, up.to), (Some(v("1.0.0")), v("2.0.0")));
    assert_eq!(call_versions(&m), ("2.0.0".into(), "2.0.0".into()));

    // `mv` puts a new inode at the same path; dlopen by that path would return the cached
    // old library, which was the seed's bug.
    let staged = base.path().join("staged.so");
    std::fs::copy(built_library(&v3), &staged).unwrap();
    run("mv", &[&staged, &lib]);
    write_manifest(&dir, "3.0.0");
    m.reload("versioned").unwrap();
    assert_eq!(call_versions(&m), ("3.0.0".into(), "3.0.0".into()));
}

#[test]
fn a_broken_new_version_leaves_the_old_one_serving() {
    let v1 = versioned_variant("1.0.0", &[]);
    let panics = versioned_variant("2.0.0", &["panic-on-load"]);
    let base = tempfile::tempdir().unwrap();
    install_folder(&v1, base.path(), "versioned");
    let m = PluginManager::new(base.path());
    let events = m.subscribe();
    m.load_plugin("versioned").unwrap();
    assert!(matches!(next_event(&events), Event::Loaded { .. }));

    // Wrong ABI: a library with another root-module layout, under this plugin's name. Its
    // identity record is rewritten to say `versioned` 2.0.0 (the same lengths as
    // `wrong-abi` 0.1.0), so that every check on the file passes and only the layout
    // check, once the library is mapped, refuses it.
    let wrong = tempfile::tempdir().unwrap();
    let wrong_dir = wrong.path().join("versioned");
    std::fs::create_dir(&wrong_dir).unwrap();
    let mut library = std::fs::read(fixtures().library("wrong-abi")).unwrap();
    let (from, to) = (
        b"\x09\0wrong-abi\x05\x000.1.0",
        b"\x09\0versioned\x05\x002.0.0",
    );
    let at = library
        .windows(from.len())
        .position(|w| w == from)
        .expect("wrong-abi's identity record");
    library[at..at + to.len()].copy_from_slice(to);
    std::fs::write(
        wrong_dir.join(fixtures().plugin("wrong-abi").library_file_name()),
        library,
    )
    .unwrap();
    std::fs::write(
        wrong_dir.join("plugin.json"),
        r#"{ "name": "versioned", "version": "2.0.0", "source": { "mode": "local_so", "path": "wrong_abi" } }"#,
    )
    .unwrap();
    let err = m
        .upgrade("versioned", &wrong_dir, UpgradeOptions::new())
        .unwrap_err();
    assert!(matches!(err, Error::AbiMismatch { .. }), "{err}");
    assert!(matches!(next_event(&events), Event::Failed { .. }));
    assert_eq!(call_versions(&m).0, "1.0.0");

    // Panics in on_load.
    let err = m
        .upgrade("versioned", &panics, UpgradeOptions::new())
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::OnLoad {
                kind: ErrorKind::Panicked,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(call_versions(&m).0, "1.0.0");
    assert_eq!(m.state("versioned"), Some(PluginState::Active));
    // Nothing was installed: a restart still loads 1.0.0.
    let restarted = PluginManager::new(base.path());
    restarted.load_plugin("versioned").unwrap();
    assert_eq!(call_versions(&restarted).0, "1.0.0");

    // A downgrade needs force.
    let v0 = versioned_variant("0.9.0", &[]);
    let err = m
        .upgrade("versioned", &v0, UpgradeOptions::new())
        .unwrap_err();
    assert!(matches!(err, Error::Downgrade { .. }), "{err}");
    assert_eq!(call_versions(&m).0, "1.0.0");
    m.upgrade("versioned", &v0, downgrade()).unwrap();
    assert_eq!(call_versions(&m).0, "0.9.0");
}

fn slow_manager(drain: Duration) -> (tempfile::TempDir, Arc<PluginManager>) {
    let base = tempfile::tempdir().unwrap();
    fixtures().install(base.path(), "slow");
    let m = PluginManager::builder(base.path())
        .drain_timeout(drain)
        .build();
    m.load_plugin("slow").unwrap();
    (base, Arc::new(m))
}

/// Starts a `slow` call on another thread and returns once the plugin is running.
fn start_slow_call(
    m: &PluginManager,
    max_steps: Option<u64>,
) -> (Context, std::thread::JoinHandle<Result<(), Error>>) {
    let handle = m.get("slow").unwrap();
    let ctx = Context::background();
    ctx.set("step_ms", &5u64).unwrap();
    if let Some(max) = max_steps {
        ctx.set("max_steps", &max).unwrap();
    }
    let worker = {
        let ctx = ctx.clone();
        std::thread::spawn(move || handle.execute(&ctx))
    };
    wait_until("the call runs", || {
        ctx.get::<u64>("steps").unwrap().is_some()
    });
    (ctx, worker)
}

#[test]
fn unload_waits_for_a_call_in_flight() {
    let (_base, m) = slow_manager(Duration::from_secs(60));
    let (ctx, worker) = start_slow_call(&m, Some(20));
    assert_eq!(m.list()[0].calls_in_flight, 1);
    let unloading = {
        let m = m.clone();
        std::thread::spawn(move || m.unload("slow"))
    };
    // While it drains, the plugin is listed as unloading, with its call still counted,
    // and new calls are refused.
    wait_until("the plugin is unloading", || {
        m.state("slow") == Some(PluginState::Unloading)
    });
    let status = &m.list()[0];
    assert_eq!(status.calls_in_flight, 1, "{status:?}");
    assert!(matches!(
        m.get("slow"),
        Err(Error::NotActive {
            state: PluginState::Unloading,
            ..
        })
    ));
    assert_eq!(unloading.join().unwrap().unwrap(), Drain::Clean);
    // The unload returned only after the call finished all its steps.
    assert_eq!(ctx.get::<u64>("steps").unwrap(), Some(20));
    worker.join().unwrap().unwrap();
    assert!(matches!(m.get("slow"), Err(Error::NotFound { .. })));
}

#[test]
fn unload_cancels_a_call_that_outlives_the_drain_timeout() {
    // The call never ends by itself; once cancelled it ends within the drain timeout's
    // second wait, which is seconds so that a loaded machine still makes it.
    let (_base, m) = slow_manager(Duration::from_secs(2));
    let (ctx, worker) = start_slow_call(&m, None);
    let handle = m.get("slow").unwrap();
    assert_eq!(m.unload("slow").unwrap(), Drain::Clean);
    let err = worker.join().unwrap().unwrap_err();
    assert_eq!(err.plugin_error_kind(), Some(ErrorKind::Cancelled), "{err}");
    assert!(ctx.is_cancelled());
    // New calls through old handles are refused at once.
    assert!(matches!(
        handle.execute(&Context::background()),
        Err(Error::Unloaded { .. })
    ));
}

#[test]
fn a_deadline_stops_slow() {
    let (_base, m) = slow_manager(Duration::from_secs(1));
    let err = m
        .get("slow")
        .unwrap()
        .execute(&Context::with_timeout(Duration::from_millis(50)))
        .unwrap_err();
    assert_eq!(
        err.plugin_error_kind(),
        Some(ErrorKind::DeadlineExceeded),
        "{err}"
    );
}

#[test]
fn disabled_plugins_stay_unloaded_across_restarts_until_enabled() {
    let base = tempfile::tempdir().unwrap();
    fixtures().install(base.path(), "hello");
    fixtures().install(base.path(), "counter");
    let m = PluginManager::new(base.path());
    let events = m.subscribe();
    m.load_plugins().unwrap();
    m.disable("counter").unwrap();
    let mut seen = Vec::new();
    while seen.len() < 4 {
        seen.push(next_event(&events));
    }
    assert!(seen.contains(&Event::Unloaded {
        name: "counter".into()
    }));
    assert!(seen.contains(&Event::Disabled {
        name: "counter".into()
    }));
    drop(m);

    let m = PluginManager::new(base.path());
    let report = m.load_plugins().unwrap();
    assert!(report.all_loaded());
    assert_eq!(m.state("counter"), Some(PluginState::Disabled));
    assert_eq!(m.state("hello"), Some(PluginState::Active));
    let err = m.get("counter").unwrap_err();
    assert!(
        matches!(
            err,
            Error::NotActive {
                state: PluginState::Disabled,
                ..
            }
        ),
        "{err}"
    );
    assert!(matches!(
        m.load_plugin("counter"),
        Err(Error::Disabled { .. })
    ));

    let events = m.subscribe();
    m.enable("counter").unwrap();
    assert_eq!(
        next_event(&events),
        Event::Enabled {
            name: "counter".into()
        }
    );
    assert_eq!(
        next_event(&events),
        Event::Loaded {
            name: "counter".into(),
            version: v("0.1.0")
        }
    );
    let ctx = Context::background();
    m.get("counter").unwrap().execute(&ctx).unwrap();
    drop(m);
    let m = PluginManager::new(base.path());
    m.load_plugins().unwrap();
    assert_eq!(m.state("counter"), Some(PluginState::Active));
}

#[test]
fn list_shows_states_of_every_plugin() {
    let base = tempfile::tempdir().unwrap();
    fixtures().install(base.path(), "hello");
    fixtures().install(base.path(), "identity-mismatch");
    let m = PluginManager::new(base.path());
    m.load_plugins().unwrap();
    let list = m.list();
    let hello = list.iter().find(|p| p.name == "hello").unwrap();
    assert_eq!(hello.state, PluginState::Active);
    assert_eq!(hello.retained_libraries, 1);
    let active = hello.active.as_ref().unwrap();
    #[cfg(target_os = "linux")]
    assert_eq!(
        active.running_copy,
        std::path::Path::new("memfd:plugin:hello-0.1.0")
    );
    #[cfg(not(target_os = "linux"))]
    assert!(active.running_copy.exists());
    assert!(active.loaded_at > std::time::UNIX_EPOCH);
    let bad = list.iter().find(|p| p.name == "identity-mismatch").unwrap();
    assert!(matches!(&bad.state, PluginState::Failed(reason) if reason.contains("9.9.9")));
    assert!(bad.active.is_none());
    let err = m.get("identity-mismatch").unwrap_err();
    assert!(
        matches!(
            err,
            Error::NotActive {
                state: PluginState::Failed(_),
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn a_failing_on_unload_is_reported_and_the_plugin_is_gone_anyway() {
    let broken = versioned_variant("1.0.0", &["fail-on-unload"]);
    let base = tempfile::tempdir().unwrap();
    install_folder(&broken, base.path(), "versioned");
    let m = PluginManager::new(base.path());
    let events = m.subscribe();
    m.load_plugin("versioned").unwrap();
    let err = m.unload("versioned").unwrap_err();
    assert!(
        matches!(
            err,
            Error::OnUnload {
                kind: ErrorKind::Other,
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains("built to fail in on_unload"),
        "{err}"
    );
    assert!(matches!(next_event(&events), Event::Loaded { .. }));
    assert_eq!(
        next_event(&events),
        Event::Unloaded {
            name: "versioned".into()
        }
    );
    assert!(matches!(m.get("versioned"), Err(Error::NotFound { .. })));
}

#[test]
fn cancelling_a_parent_context_stops_a_call_running_in_its_child() {
    let (_base, m) = slow_manager(Duration::from_secs(1));
    let parent = Context::background();
    let child = parent.child();
    child.set("step_ms", &60_000u64).unwrap();
    let worker = {
        let (handle, child) = (m.get("slow").unwrap(), child.clone());
        std::thread::spawn(move || handle.execute(&child))
    };
    // The plugin is asleep in `wait_cancelled` for a minute once it has written `steps`.
    wait_until("the call runs", || {
        child.get::<u64>("steps").unwrap().is_some()
    });
    parent.cancel();
    let err = worker.join().unwrap().unwrap_err();
    assert_eq!(err.plugin_error_kind(), Some(ErrorKind::Cancelled), "{err}");
    assert_eq!(child.reason(), Some(plugin_host::CancelReason::Cancelled));
}

#[test]
fn a_failed_plugin_is_loaded_by_reload_once_fixed() {
    let base = tempfile::tempdir().unwrap();
    let dir = fixtures().install(base.path(), "identity-mismatch");
    let m = PluginManager::new(base.path());
    m.load_plugins().unwrap();
    assert!(matches!(
        m.state("identity-mismatch"),
        Some(PluginState::Failed(_))
    ));

    let err = m.reload("identity-mismatch").unwrap_err();
    assert!(matches!(err, Error::IdentityMismatch { .. }), "{err}");
    assert!(matches!(
        m.state("identity-mismatch"),
        Some(PluginState::Failed(_))
    ));

    // Fix the manifest (the library was built as 0.1.0) and reload.
    let manifest = std::fs::read_to_string(dir.join("plugin.json")).unwrap();
    std::fs::write(dir.join("plugin.json"), manifest.replace("9.9.9", "0.1.0")).unwrap();
    let up = m.reload("identity-mismatch").unwrap();
    assert_eq!((up.from, up.to), (None, v("0.1.0")));
    assert_eq!(m.state("identity-mismatch"), Some(PluginState::Active));
    m.get("identity-mismatch")
        .unwrap()
        .execute(&Context::background())
        .unwrap();
}

#[test]
fn shutdown_unloads_every_plugin_and_dropping_the_manager_does_too() {
    let base = tempfile::tempdir().unwrap();
    for name in ["hello", "counter", "slow"] {
        fixtures().install(base.path(), name);
    }
    let m = PluginManager::new(base.path());
    m.load_plugins().unwrap();
    let outcomes = m.shutdown();
    let names: Vec<&str> = outcomes.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(names, ["counter", "hello", "slow"]);
    assert!(outcomes
        .iter()
        .all(|o| matches!(o.result, Ok(Drain::Clean))));
    assert!(m.list().is_empty());

    // Loaded again, then dropped: every plugin is unloaded on the way out.
    m.load_plugins().unwrap();
    let events = m.subscribe();
    drop(m);
    let mut unloaded: Vec<String> = events
        .try_iter()
        .filter_map(|e| match e {
            Event::Unloaded { name } => Some(name),
            _ => None,
        })
        .collect();
    unloaded.sort();
    assert_eq!(unloaded, ["counter", "hello", "slow"]);
}

#[test]
fn listeners_can_be_removed_and_subscriptions_end_with_their_receiver() {
    let base = tempfile::tempdir().unwrap();
    fixtures().install(base.path(), "hello");
    let m = PluginManager::new(base.path());
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let id = m.add_listener({
        let seen = seen.clone();
        move |event| seen.lock().unwrap().push(event.clone())
    });
    m.load_plugin("hello").unwrap();
    assert!(m.remove_listener(id));
    assert!(!m.remove_listener(id));
    let _ = m.unload("hello").unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(matches!(&seen[0], Event::Loaded { name, .. } if name == "hello"));
}

#[test]
fn calls_from_more_threads_than_owned_stripes_are_all_counted() {
    // Each of the first 64 threads to call owns a stripe of the in-flight counter; later
    // threads share one, which must count with atomic adds. 64 threads take the owned
    // stripes and hold them; then 4 more call at once on the shared one. Nothing may be
    // left counted after: a lost increment or decrement would show here.
    let base = tempfile::tempdir().unwrap();
    fixtures().install(base.path(), "noop");
    let m = PluginManager::builder(base.path())
        .drain_timeout(Duration::from_millis(200))
        .build();
    m.load_plugin("noop").unwrap();
    let handle = m.get("noop").unwrap();
    let holding = std::sync::Barrier::new(65);
    let done = std::sync::Barrier::new(65);
    let start = std::sync::Barrier::new(4);
    // No thread may panic while others wait on a barrier: each returns what went wrong.
    let (held, shared) = std::thread::scope(|s| {
        let holders: Vec<_> = (0..64)
            .map(|_| {
                let (handle, holding, done) = (&handle, &holding, &done);
                s.spawn(move || {
                    let called = handle.execute(&Context::background()).is_ok();
                    holding.wait();
                    done.wait();
                    called
                })
            })
            .collect();
        holding.wait();
        let sharers: Vec<_> = (0..4)
            .map(|_| {
                let (handle, start) = (&handle, &start);
                s.spawn(move || {
                    let ctx = Context::background();
                    start.wait();
                    (0..300_000).all(|_| handle.execute(&ctx).is_ok())
                })
            })
            .collect();
        let shared: Vec<_> = sharers.into_iter().map(|t| t.join()).collect();
        done.wait();
        let held: Vec<_> = holders.into_iter().map(|t| t.join()).collect();
        (held, shared)
    });
    assert!(held.into_iter().all(|r| r.is_ok_and(|called| called)));
    assert!(
        shared.into_iter().all(|r| r.is_ok_and(|called| called)),
        "a call failed or panicked"
    );
    assert_eq!(handle.status().calls_in_flight, 0);
    assert_eq!(m.unload("noop").unwrap(), Drain::Clean);
}

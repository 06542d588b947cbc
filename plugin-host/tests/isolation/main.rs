//! Process isolation, driven through the public API: crashes and hangs contained, restarts,
//! quarantine, real unload, upgrades under load, and no worker left behind.
//!
//! A binary of its own with `harness = false`: this test binary is also the worker program
//! (its `main` calls [`plugin_host::isolate::init`] first, as a host's would), which
//! libtest's generated `main` cannot do.

mod crashes;
mod lifecycle;
mod orphans;
mod util;

use libtest_mimic::{Arguments, Trial};

fn main() {
    plugin_host::isolate::init();
    // `init` never returns in a worker. Were it to, this process would run the tests and
    // start workers of its own, which would do the same, without end: stop here instead.
    if std::env::var_os(plugin_host::isolate::WORKER_ENV).is_some() {
        eprintln!("isolate::init returned in a worker process");
        std::process::exit(101);
    }
    // Run again as a host for a test to SIGKILL (see `orphans::host`).
    if let Ok(scenario) = std::env::var(orphans::HOST_ENV) {
        orphans::host(&scenario)
    }
    util::capture_logs();
    let args = Arguments::from_args();
    let mut trials = Vec::new();
    for (name, test) in crashes::TESTS
        .iter()
        .chain(lifecycle::TESTS)
        .chain(orphans::TESTS)
    {
        trials.push(Trial::test(*name, move || {
            test();
            Ok(())
        }));
    }
    libtest_mimic::run(&args, trials).exit();
}

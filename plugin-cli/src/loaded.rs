//! `plugctl list --load` and `info --load`: plugins loaded for real, with their states,
//! calls, where each runs and, for a process-isolated plugin, its worker.

use std::process::ExitCode;

use plugin_host::{PluginManager, PluginState, PluginSummary};

use crate::isolation::{print_isolation, worker_cell};
use crate::{print_routes, printed_json_or_nothing, Failure, Output, SOME_FAILED};

pub(crate) fn list(manager: &PluginManager, output: Output) -> Result<ExitCode, Failure> {
    let report = manager.load_plugins()?;
    let code = if report.all_loaded() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(SOME_FAILED)
    };
    let list = manager.list();
    if printed_json_or_nothing(&list, manager, output) {
        return Ok(code);
    }
    println!(
        "{:<20} {:<10} {:<10} {:<10} {:<24} {:>9} {:>8}  {:<20} RUNNING COPY / REASON",
        "NAME", "VERSION", "STATE", "MODE", "WORKER", "IN-FLIGHT", "RETAINED", "LOADED AT (UTC)"
    );
    for p in &list {
        let active = p.active.as_ref();
        let version = active.map_or_else(|| "-".to_owned(), |a| a.version.to_string());
        let loaded_at = active.map_or_else(|| "-".to_owned(), |a| format_time(a.loaded_at));
        // Where it runs, or, with nothing loaded, where it would.
        let mode = active.map_or_else(|| manager.isolation_of(&p.name), |a| a.isolation);
        let detail = match (&p.state, active) {
            (PluginState::Failed(reason), _) => reason.clone(),
            (_, Some(a)) => a.running_copy.display().to_string(),
            _ => String::new(),
        };
        println!(
            "{:<20} {:<10} {:<10} {:<10} {:<24} {:>9} {:>8}  {:<20} {}",
            p.name,
            version,
            p.state.as_str(),
            mode.as_str(),
            worker_cell(active),
            p.calls_in_flight,
            p.retained_libraries,
            loaded_at,
            detail
        );
    }
    Ok(code)
}

fn format_time(t: std::time::SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

pub(crate) fn print_info(s: &PluginSummary) {
    println!("name:         {}", s.name);
    println!("version:      {}", s.version);
    if let Some(d) = &s.manifest.description {
        println!("description:  {d}");
    }
    if !s.manifest.maintainers.is_empty() {
        println!("maintainers:  {}", s.manifest.maintainers.join(", "));
    }
    if let Some(h) = &s.manifest.home {
        println!("home:         {h}");
    }
    println!("folder:       {}", s.dir.display());
    println!("library:      {}", s.library.display());
    println!("running copy: {}", s.running_copy.display());
    println!("sdk version:  {}", s.sdk_version);
    println!(
        "hooks:        on_load {}, on_unload {}",
        yes_no(s.has_on_load),
        yes_no(s.has_on_unload)
    );
    print_isolation(s);
    print_routes(&s.manifest);
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

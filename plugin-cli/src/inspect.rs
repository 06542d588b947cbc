//! `plugctl list` and `info` without `--load`: what each plugin folder holds, read from its
//! files, with no plugin code run.

use std::process::ExitCode;

use plugin_host::{Inspection, Isolation, PluginManager};
use serde::Serialize;

use crate::{print_routes, printed_json_or_nothing, to_json, Failure, Output, SOME_FAILED};

/// One folder's row.
#[derive(Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
enum Row {
    /// Every check that needs no `dlopen` passed.
    /// The name is the inspection's.
    Ok {
        /// Where it would run if loaded (`--isolation`, `--isolate`).
        isolation: Isolation,
        #[serde(flatten)]
        inspection: Box<Inspection>,
    },
    /// The plugin is disabled: it is not checked.
    Disabled { name: String },
    /// A check failed.
    Failed { name: String, error: String },
}

pub(crate) fn list(manager: &PluginManager, output: Output) -> Result<ExitCode, Failure> {
    let folders = plugin_host::discover::discover(manager.base_dir())?;
    let rows: Vec<Row> = folders
        .into_iter()
        .map(|folder| {
            let name = folder.name;
            if manager.is_disabled(&name) {
                return Row::Disabled { name };
            }
            match manager.inspect(&name) {
                Ok(inspection) => Row::Ok {
                    isolation: manager.isolation_of(&name),
                    inspection: Box::new(inspection),
                },
                Err(err) => Row::Failed {
                    name,
                    error: err.report(),
                },
            }
        })
        .collect();
    let code = if rows.iter().any(|r| matches!(r, Row::Failed { .. })) {
        ExitCode::from(SOME_FAILED)
    } else {
        ExitCode::SUCCESS
    };
    if printed_json_or_nothing(&rows, manager, output) {
        return Ok(code);
    }
    println!(
        "{:<20} {:<10} {:<10} {:<8} {:<10} LIBRARY / REASON",
        "NAME", "VERSION", "CHECKS", "SDK", "MODE"
    );
    for row in &rows {
        match row {
            Row::Ok {
                isolation,
                inspection,
            } => println!(
                "{:<20} {:<10} {:<10} {:<8} {:<10} {}",
                inspection.name,
                inspection.version.to_string(),
                "ok",
                inspection.sdk_version,
                isolation.as_str(),
                inspection.library.display()
            ),
            Row::Disabled { name } => println!("{name:<20} {:<10} {:<10}", "-", "disabled"),
            Row::Failed { name, error } => {
                println!(
                    "{:<20} {:<10} {:<10} {:<8} {:<10} {}",
                    name, "-", "failed", "-", "-", error
                )
            }
        }
    }
    println!(
        "\n(checked from the files, no plugin code run; MODE is where each would run; \
         `--load` loads them)"
    );
    Ok(code)
}

/// `info`'s JSON: the inspection, and where the plugin would run.
#[derive(Serialize)]
struct Info<'a> {
    #[serde(flatten)]
    inspection: &'a Inspection,
    isolation: Isolation,
}

pub(crate) fn info(manager: &PluginManager, name: &str, output: Output) -> Result<(), Failure> {
    let inspection = manager.inspect(name).map_err(Failure::from)?;
    let isolation = manager.isolation_of(name);
    if output == Output::Json {
        let info = Info {
            inspection: &inspection,
            isolation,
        };
        println!("{}", to_json(&info));
        return Ok(());
    }
    let m = &inspection.manifest;
    println!("name:         {}", inspection.name);
    println!("version:      {}", inspection.version);
    if let Some(d) = &m.description {
        println!("description:  {d}");
    }
    if !m.maintainers.is_empty() {
        println!("maintainers:  {}", m.maintainers.join(", "));
    }
    if let Some(h) = &m.home {
        println!("home:         {h}");
    }
    println!("folder:       {}", inspection.dir.display());
    println!(
        "library:      {} ({} bytes)",
        inspection.library.display(),
        inspection.library_bytes
    );
    println!("sha256:       {}", inspection.sha256);
    if let (Some(repository), Some(commit)) = (&m.source.repository, &m.source.commit) {
        println!("built from:   {repository} at {commit}");
    }
    println!("sdk version:  {}", inspection.sdk_version);
    println!("isolation:    {isolation} (when loaded)");
    print_routes(m);
    println!(
        "\n(checked from the files, no plugin code run; `--load` shows hooks and the running copy)"
    );
    Ok(())
}

//! Test fixture: a plugin that misbehaves on purpose. The call's label picks how:
//!
//! - `hang`: ignores cancellation and runs until the host sets the value `release` to
//!   `true` on the context (tests release it, so nothing outlives them);
//! - `spin`: ignores cancellation and never returns (only for a child process);
//! - `poll`: runs until `ctx.is_cancelled()` turns true (it never waits, so only the
//!   cancellation state it polls can stop it), then returns a `cancelled` error;
//! - `abort`, `segfault`, `exit` (status 7), `stack_overflow`, `panic`: what they say;
//! - `shout`: logs one 60 KiB line;
//! - `leak`: allocates `leak_mb` MiB (default 256), writes every page, and keeps it;
//! - `ok`: returns at once, recording `pid`, the process it runs in, `cancelled_at_start`,
//!   `env_marker` (whether
//!   an environment variable naming a worker is set), `inheritable_fds` (descriptors above 2
//!   a child process would inherit), `no_new_privs`, and logging a line at info level (`hostile says hello`).
//!
//! It records `started` = `true` in the context as soon as a call begins, so a test can wait
//! for the call to be running instead of sleeping. A `hang` call that is released records
//! `unloaded_during_call`: whether this library's `on_unload` ran while the call still ran.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use plugin_sdk::{export_plugin, Context, PluginError};

fn execute(ctx: &Context<'_>) -> Result<(), PluginError> {
    ctx.set("started", &true)?;
    let label = ctx.label().unwrap_or_default();
    match label {
        "hang" => {
            while ctx.get::<bool>("release")? != Some(true) {
                // Not `wait_cancelled`: this plugin ignores cancellation on purpose.
                std::thread::sleep(Duration::from_millis(1));
            }
            ctx.set("unloaded_during_call", &UNLOADED.load(Ordering::SeqCst))?;
            Ok(())
        }
        "poll" => {
            while !ctx.is_cancelled() {
                std::thread::yield_now();
            }
            ctx.check_cancelled()
        }
        "spin" => loop {
            std::hint::spin_loop();
            std::thread::yield_now();
        },
        "abort" => std::process::abort(),
        "segfault" => {
            let null = std::hint::black_box(std::ptr::null_mut::<u64>());
            // SAFETY: not safe at all: this writes through a null pointer on purpose, to
            // crash the process the way a buggy plugin would.
            unsafe { null.write_volatile(1) };
            Ok(())
        }
        "exit" => std::process::exit(7),
        "stack_overflow" => {
            recurse(std::hint::black_box(1));
            Ok(())
        }
        "panic" => panic!("hostile plugin panics on purpose"),
        "leak" => {
            let mb = ctx.get::<usize>("leak_mb")?.unwrap_or(256);
            let block = vec![1u8; mb << 20];
            ctx.set("leaked_mb", &(block.len() >> 20))?;
            std::mem::forget(std::hint::black_box(block));
            Ok(())
        }
        "shout" => {
            // A long log line: more than a socket writes in one piece.
            ctx.info(&"x".repeat(60 << 10));
            Ok(())
        }
        "ok" => {
            ctx.set("pid", &std::process::id())?;
            ctx.set("cancelled_at_start", &ctx.is_cancelled())?;
            // What a process this plugin started would inherit: the worker marker in the
            // environment, and descriptors without close-on-exec (O_CLOEXEC is 0o2000000 in
            // the `flags:` line of /proc/self/fdinfo/N).
            ctx.set("env_marker", &std::env::vars().any(|(k, _)| k.contains("WORKER")))?;
            let inherited = std::fs::read_dir("/proc/self/fd")
                .map(|dir| {
                    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
                        .filter(|fd| *fd > 2)
                        .filter(|fd| {
                            let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}"))
                                .unwrap_or_default();
                            info.lines()
                                .find_map(|l| l.strip_prefix("flags:"))
                                .and_then(|f| u32::from_str_radix(f.trim(), 8).ok())
                                .is_some_and(|flags| flags & 0o2000000 == 0)
                        })
                        .count()
                })
                .unwrap_or(0);
            ctx.set("inheritable_fds", &inherited)?;
            let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
            ctx.set(
                "no_new_privs",
                &status
                    .lines()
                    .any(|l| l.starts_with("NoNewPrivs:") && l.ends_with('1')),
            )?;
            ctx.info("hostile says hello");
            Ok(())
        }
        other => Err(PluginError::invalid_input(format!(
            "unknown label `{other}`: use hang, poll, spin, abort, segfault, exit, stack_overflow, panic, leak or ok"
        ))),
    }
}

/// Recurses without end, with a frame the optimiser cannot remove.
#[expect(unconditional_recursion, reason = "it overflows the stack on purpose")]
fn recurse(n: u64) -> u64 {
    let frame = std::hint::black_box([n; 64]);
    recurse(frame[n as usize % 64] + 1) + frame[0]
}

/// Set by `on_unload`.
static UNLOADED: AtomicBool = AtomicBool::new(false);

fn on_unload() -> Result<(), PluginError> {
    UNLOADED.store(true, Ordering::SeqCst);
    Ok(())
}

export_plugin! { execute: execute, on_unload: on_unload }

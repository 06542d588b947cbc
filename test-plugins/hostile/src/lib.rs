//! Test fixture: a plugin that misbehaves on purpose. The call's label picks how:
//!
//! - `hang`: ignores cancellation and runs until the host sets the value `release` to
//!   `true` on the context (tests release it, so nothing outlives them);
//! - `spin`: ignores cancellation and never returns (only for a child process);
//! - `poll`: runs until `ctx.is_cancelled()` turns true (it never waits, so only the
//!   cancellation state it polls can stop it), then returns a `cancelled` error;
//! - `abort`, `segfault`, `exit` (status 7), `stack_overflow`, `panic`: what they say;
//! - `shout`: logs one 60 KiB line;
//! - `spawn`: starts two processes that never end on their own: a child in the worker's
//!   process group, and a grandchild in a session of its own (its parent calls `setsid`,
//!   forks it and exits, as a daemon does). Writes their pids, space-separated, into the
//!   file named by the string value `pid_file` (whole: written beside it, then renamed) and
//!   records them as `spawned`;
//! - `spawn_spin`: `spawn`, then ignores cancellation and never returns;
//! - `kill_parent`: `spawn`, then SIGKILLs its own parent process (in process isolation,
//!   the worker's keeper) and waits for its own end;
//! - `env`: records `env`, the process's environment as a map of names to values;
//! - `leak`: allocates `leak_mb` MiB (default 256), writes every page, and keeps it;
//! - `ok`: returns at once, recording `pid`, the process it runs in, `cancelled_at_start`,
//!   `env_marker` (whether
//!   an environment variable naming a worker is set), `inheritable_fds` (descriptors above 2
//!   a child process would inherit), `no_new_privs`, and logging a line at info level (`hostile says hello`).
//!
//! Its `on_load` does nothing, unless the environment variable `HOSTILE_LOAD_PID_FILE`
//! names a file: then it writes its pid there (whole, as above) and never returns.
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
        "spawn" | "spawn_spin" | "kill_parent" => {
            let file = ctx
                .get::<String>("pid_file")?
                .ok_or_else(|| PluginError::invalid_input("`spawn` needs the value `pid_file`"))?;
            let pids = spawn()?;
            let text: Vec<String> = pids.iter().map(ToString::to_string).collect();
            write_whole(&file, &text.join(" "))?;
            ctx.set("spawned", &pids)?;
            if label == "kill_parent" {
                // SAFETY: getppid and kill(2) with a pid and a constant signal.
                unsafe { libc::kill(libc::getppid(), libc::SIGKILL) };
                loop {
                    std::thread::park();
                }
            }
            if label == "spawn_spin" {
                loop {
                    std::hint::spin_loop();
                    std::thread::yield_now();
                }
            }
            Ok(())
        }
        "env" => {
            let env: std::collections::BTreeMap<String, String> = std::env::vars().collect();
            ctx.set("env", &env)?;
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
            "unknown label `{other}`: use hang, poll, spin, abort, segfault, exit, stack_overflow, panic, leak, shout, spawn, spawn_spin, kill_parent, env or ok"
        ))),
    }
}

/// Recurses without end, with a frame the optimiser cannot remove.
#[expect(unconditional_recursion, reason = "it overflows the stack on purpose")]
fn recurse(n: u64) -> u64 {
    let frame = std::hint::black_box([n; 64]);
    recurse(frame[n as usize % 64] + 1) + frame[0]
}

/// Writes `text` to `path` whole: into a file beside it, then renamed, so a reader never sees
/// part of it.
fn write_whole(path: &str, text: &str) -> Result<(), PluginError> {
    let partial = format!("{path}.partial");
    std::fs::write(&partial, text)
        .and_then(|()| std::fs::rename(&partial, path))
        .map_err(|e| PluginError::other(format!("cannot write {path}: {e}")))
}

/// A process that never ends on its own. Only async-signal-safe calls: it runs in the child
/// of a fork in a multi-threaded process.
fn forever() -> ! {
    loop {
        // SAFETY: pause has no preconditions; it only waits for a signal.
        unsafe { libc::pause() };
    }
}

/// Starts a child in this process group and a grandchild in a new session (see `spawn`);
/// their pids.
fn spawn() -> Result<Vec<i32>, PluginError> {
    let failed =
        |what: &str| PluginError::other(format!("{what}: {}", std::io::Error::last_os_error()));
    let mut pipe = [0; 2];
    // SAFETY: pipe2 writes two descriptors into the array it is given.
    if unsafe { libc::pipe2(pipe.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(failed("pipe2"));
    }
    // SAFETY: the child makes only async-signal-safe calls (pause) before it ends.
    let child = unsafe { libc::fork() };
    if child == 0 {
        forever()
    }
    if child < 0 {
        return Err(failed("fork"));
    }
    // SAFETY: the child and the grandchild make only async-signal-safe calls (setsid, fork,
    // getpid, write, pause, _exit) on plain integers and a local buffer.
    let middle = unsafe { libc::fork() };
    if middle == 0 {
        // SAFETY: in the child of a fork: only async-signal-safe calls, as said above.
        unsafe {
            libc::setsid();
            if libc::fork() == 0 {
                let me = libc::getpid().to_ne_bytes();
                libc::write(pipe[1], me.as_ptr().cast(), me.len());
                forever()
            }
            libc::_exit(0)
        }
    }
    if middle < 0 {
        return Err(failed("fork"));
    }
    let mut grandchild = [0u8; 4];
    // SAFETY: close, waitpid and read on this process's own descriptors and child, with
    // valid pointers to locals.
    let read = unsafe {
        libc::close(pipe[1]);
        let mut status = 0;
        libc::waitpid(middle, &mut status, 0);
        let read = libc::read(pipe[0], grandchild.as_mut_ptr().cast(), grandchild.len());
        libc::close(pipe[0]);
        read
    };
    if read != grandchild.len() as isize {
        return Err(failed("the grandchild's pid"));
    }
    Ok(vec![child, i32::from_ne_bytes(grandchild)])
}

/// Hangs, after writing its pid, when `HOSTILE_LOAD_PID_FILE` names a file.
fn on_load(_ctx: &Context<'_>) -> Result<(), PluginError> {
    if let Some(file) = std::env::var_os("HOSTILE_LOAD_PID_FILE") {
        write_whole(&file.to_string_lossy(), &std::process::id().to_string())?;
        loop {
            std::thread::park();
        }
    }
    Ok(())
}

/// Set by `on_unload`.
static UNLOADED: AtomicBool = AtomicBool::new(false);

fn on_unload() -> Result<(), PluginError> {
    UNLOADED.store(true, Ordering::SeqCst);
    Ok(())
}

export_plugin! { execute: execute, on_load: on_load, on_unload: on_unload }

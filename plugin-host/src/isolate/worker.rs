//! The worker process: maps the plugin the host checked, then serves its calls.
//!
//! The process the host starts becomes the worker's keeper first (see `keeper`), and forks
//! the plugin process, which does the rest. The host starts the worker with [`WORKER_ENV`](super::WORKER_ENV) set to
//! `v1 <host pid> <name> <version>` and three descriptors: the socket on 3, the channel on 4
//! and the sealed memory file holding the library's bytes on 5. The worker
//!
//! 1. maps the library from descriptor 5 and runs abi_stable's checks, then checks that the
//!    identity its code reports is the one the host expects;
//! 2. runs `on_load` and reports `Ready` (or `Failed`, and exits);
//! 3. starts one thread per lane, each serving the calls written into its lane;
//! 4. reads the socket on its main thread: cancellations, `Stop` (run `on_unload`, report,
//!    exit), and end of file, which means the host is gone: it exits at once.

use std::ffi::OsString;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use parking_lot::Mutex;
use plugin_abi::abi_stable::library::RawLibrary;
use plugin_abi::{ErrorKind, LogLevel};

use super::{CHANNEL_FD, LIBRARY_FD, SOCKET_FD};
use crate::cancel::AbortToken;
use crate::module::{invoke, one_line, Module};
use crate::{CancelHandle, Context, Error};
use plugin_ipc::{Channel, LoadFailure, Message, Reader, Writer, REQUEST, RESPONSE};

/// How long a lane spins for the next call after answering one, before it sleeps.
const LANE_SPIN: Duration = Duration::from_micros(50);

/// The socket to the host, once this process is a worker: log records go there.
static SOCKET: OnceLock<UnixStream> = OnceLock::new();

/// Serialises writes to the socket: lanes log at once, and a long frame is written in
/// pieces, which must not interleave with another thread's.
static SENDING: Mutex<()> = Mutex::new(());

/// Sends `message` to the host, one whole frame at a time.
fn send(socket: &UnixStream, message: &Message) -> std::io::Result<()> {
    let _one_at_a_time = SENDING.lock();
    plugin_ipc::send(socket, message)
}

/// The worker's log sink: sends a plugin's log record to the host, which logs it as its own
/// plugins' records are logged.
fn forward_log(_plugin: &str, level: LogLevel, message: &str) {
    if let Some(socket) = SOCKET.get() {
        let _ = send(
            socket,
            &Message::Log {
                level,
                message: message.to_owned(),
            },
        );
    }
}

/// The worker's entry: never returns.
pub(super) fn main(params: OsString) -> ! {
    // Nothing the plugin starts may take itself for a worker, or inherit the channel.
    // SAFETY: the worker is still single-threaded here: no other thread reads the
    // environment.
    unsafe { std::env::remove_var(super::WORKER_ENV) };
    for fd in [SOCKET_FD, CHANNEL_FD, LIBRARY_FD] {
        // SAFETY: fcntl(F_SETFD) on a descriptor number only changes its close-on-exec flag
        // (or fails harmlessly if it is not open).
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    //
    // The process the host started becomes the keeper, and forks the plugin process, in
    // which `split` returns (see `keeper`). Bad parameters get no keeper: the worker reports
    // them below and exits.
    if let Some(host) = host_pid(&params) {
        super::keeper::split(host);
    }
    // SAFETY: the host passed the socket on this descriptor, open and owned by nothing else
    // in this process (checked below by using it; a wrong one fails the first read).
    let socket = UnixStream::from(unsafe { OwnedFd::from_raw_fd(SOCKET_FD) });
    let Some((name, version)) = parse(&params) else {
        let _ = send(
            &socket,
            &Message::Failed {
                failure: LoadFailure::Setup,
                message: format!("bad worker parameters {params:?}"),
            },
        );
        exit(2)
    };
    let socket = SOCKET.get_or_init(|| socket);
    match serve(socket, &name, &version) {
        Ok(()) => exit(0),
        Err((failure, message)) => {
            let _ = send(socket, &Message::Failed { failure, message });
            exit(1)
        }
    }
}

/// Ends the worker without running destructors or `atexit` handlers (the plugin's among
/// them): nothing in this process outlives it anyway.
fn exit(code: i32) -> ! {
    // SAFETY: `_exit` ends the process at once; it is always safe to call.
    unsafe { libc::_exit(code) }
}

fn parse(params: &OsString) -> Option<(String, String)> {
    let text = params.to_str()?;
    let mut words = text.split(' ');
    if words.next()? != "v1" {
        return None;
    }
    // The host's pid: the keeper checked it against its parent.
    let _host: i32 = words.next()?.parse().ok()?;
    let name = words.next()?.to_owned();
    let version = words.next()?.to_owned();
    Some((name, version))
}

/// The host's pid in the worker's parameters, if they are well formed enough to say.
fn host_pid(params: &OsString) -> Option<i32> {
    let mut words = params.to_str()?.split(' ');
    if words.next()? != "v1" {
        return None;
    }
    words.next()?.parse().ok()
}

/// The call in progress on each lane, so a cancellation reaches it.
type Current = Arc<Vec<Mutex<Option<(u64, CancelHandle)>>>>;

fn serve(socket: &UnixStream, name: &str, version: &str) -> Result<(), (LoadFailure, String)> {
    // SAFETY: the host passed the channel on this descriptor, as for the socket.
    let channel_fd = unsafe { OwnedFd::from_raw_fd(CHANNEL_FD) };
    let shm = Arc::new(
        Channel::open(&channel_fd)
            .map_err(|e| (LoadFailure::Setup, format!("the channel: {e}")))?,
    );
    drop(channel_fd);
    let module = load(name, version)?;

    let abort = AbortToken::new();
    module.on_load(name, &abort).map_err(|err| match err {
        Error::OnLoad { kind, message, .. } => (LoadFailure::OnLoad(kind), message),
        other => (LoadFailure::OnLoad(ErrorKind::Other), other.to_string()),
    })?;
    let current: Current = Arc::new((0..shm.lanes()).map(|_| Mutex::new(None)).collect());
    for lane in 0..shm.lanes() {
        let (shm, current, name) = (shm.clone(), current.clone(), name.to_owned());
        std::thread::Builder::new()
            .name(format!("lane-{lane}"))
            .spawn(move || serve_lane(&shm, lane, module, &name, &current))
            .map_err(|e| (LoadFailure::Setup, format!("a lane thread: {e}")))?;
    }
    send(
        socket,
        &Message::Ready {
            has_on_load: module.has_on_load(),
            has_on_unload: module.has_on_unload(),
            pid: std::process::id(),
        },
    )
    .map_err(|e| (LoadFailure::Setup, format!("the socket: {e}")))?;

    loop {
        match plugin_ipc::receive(socket) {
            Ok(Some(Message::Cancel { lane, seq })) => {
                if let Some(slot) = current.get(lane as usize) {
                    if let Some((running, handle)) = &*slot.lock() {
                        if *running == seq {
                            handle.cancel();
                        }
                    }
                }
            }
            Ok(Some(Message::Stop)) => {
                let on_unload = module.on_unload(name);
                let _ = send(
                    socket,
                    &Message::Stopped {
                        on_unload: on_unload.map_err(|e| match e {
                            Error::OnUnload { kind, message, .. } => (kind, message),
                            other => (ErrorKind::Other, other.to_string()),
                        }),
                    },
                );
                return Ok(());
            }
            // The host is gone, or speaks nonsense: no one will read an answer.
            Ok(None) | Err(_) => exit(0),
            Ok(Some(_)) => {}
        }
    }
}

fn load(name: &str, version: &str) -> Result<Module, (LoadFailure, String)> {
    let path = format!("/proc/self/fd/{LIBRARY_FD}");
    let raw = RawLibrary::load_at(Path::new(&path))
        .map_err(|e| (LoadFailure::NotAPlugin, one_line(&e.to_string())))?;
    let raw: &'static RawLibrary = Box::leak(Box::new(raw));
    let as_failure = |err| match err {
        Error::AbiMismatch { reason, .. } => (LoadFailure::AbiMismatch, reason),
        Error::IdentityMismatch {
            field,
            expected,
            found,
            ..
        } => (LoadFailure::Identity { field, expected }, found),
        Error::NotAPlugin { reason, .. } => (LoadFailure::NotAPlugin, reason),
        other => (LoadFailure::NotAPlugin, other.to_string()),
    };
    let module = Module::open(name, Path::new(&path), raw, forward_log).map_err(as_failure)?;
    // The host checked the file's identity record against the manifest; the identity the
    // code reports gets the same check, with the version the host passed.
    let version = semver::Version::parse(version).map_err(|e| {
        (
            LoadFailure::Setup,
            format!("the host passed the version `{version}`: {e}"),
        )
    })?;
    module
        .check_identity(name, &version, Path::new(&path))
        .map_err(as_failure)?;
    Ok(module)
}

fn serve_lane(shm: &Channel, lane: usize, module: Module, name: &str, current: &Current) {
    let abort = AbortToken::new();
    let mut input = Vec::new();
    let mut output = Vec::new();
    loop {
        let state = shm.state(lane);
        if state != REQUEST {
            shm.wait(lane, state, LANE_SPIN, None);
            continue;
        }
        if shm.read(lane, &mut input).is_err() {
            exit(4)
        }
        let mut reader = Reader::new(&input);
        let Ok(head) = reader.head() else { exit(4) };
        let ctx = match head.remaining {
            Some(left) => Context::with_timeout(left),
            None => Context::background(),
        };
        let ctx = match head.label {
            Some(label) => ctx.with_label(label),
            None => ctx,
        };
        if ctx.replace_values(|put| reader.values(put)).is_err() {
            exit(4)
        }
        if head.cancelled {
            ctx.cancel();
        }
        *current[lane].lock() = Some((head.seq, ctx.cancel_handle()));
        let result = invoke(module.execute(), &ctx, name, &abort, forward_log)
            .map_err(|err| (err.kind, err.message.into_string()));
        *current[lane].lock() = None;

        let mut writer = Writer::new(std::mem::take(&mut output));
        writer.result(&result);
        ctx.with_values(|count, values| writer.values(count, values));
        output = writer.finish();
        if output.len() > shm.capacity() {
            let size = output.len();
            let mut writer = Writer::new(std::mem::take(&mut output));
            writer.result(&Err((
                ErrorKind::InvalidInput,
                format!(
                    "the context after the call holds {} bytes of values, more than the {} an \
                     isolated call may return (ProcessOptions::max_message)",
                    size,
                    shm.capacity()
                ),
            )));
            writer.values(0, std::iter::empty());
            output = writer.finish();
        }
        if shm.send(lane, &output, RESPONSE).is_err() {
            // Not even the error fits (a capacity of a few bytes): the host sees the worker
            // end instead of an answer.
            exit(4)
        }
    }
}

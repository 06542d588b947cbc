//! Asymmetric fences: a call pays a compiler fence, a drain pays a process-wide barrier.
//!
//! A call marks itself in flight and then re-reads the slot's publication number; a drain
//! stores a new publication number and then reads the marks. Each side needs a full memory
//! barrier between its store and its load, or both could read the other's old value. Calls
//! are many and drains are rare, so on Linux the drain's side issues
//! `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)`, which makes every running thread of the
//! process execute a full barrier, and a call's side needs only a compiler fence. Where
//! that is not available (another OS, or a kernel or sandbox that refuses it), calls use an
//! atomic read-modify-write, which is a full barrier on its own.

use std::sync::atomic::{fence, Ordering};
use std::sync::OnceLock;

/// Whether the process-wide barrier is available; decided once, on first use, for good,
/// so calls and drains always agree on which side pays.
pub(crate) fn asymmetric() -> bool {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    *REGISTERED.get_or_init(register)
}

#[cfg(target_os = "linux")]
fn register() -> bool {
    // SAFETY: `membarrier` takes two integers and touches no memory of ours; registering
    // the process for private expedited barriers has no other effect.
    let registered = unsafe {
        libc::syscall(
            libc::SYS_membarrier,
            libc::MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED,
            0,
            0,
        )
    };
    registered == 0
}

#[cfg(not(target_os = "linux"))]
fn register() -> bool {
    false
}

/// The drain's side: after it, every mark a call made before it is visible here, and every
/// call that marks itself later sees what this thread stored before it.
pub(crate) fn heavy() {
    fence(Ordering::SeqCst);
    #[cfg(target_os = "linux")]
    if asymmetric() {
        // SAFETY: as in `register`; the process is registered, so the command is allowed.
        let done = unsafe {
            libc::syscall(
                libc::SYS_membarrier,
                libc::MEMBARRIER_CMD_PRIVATE_EXPEDITED,
                0,
                0,
            )
        };
        // Registration guarantees the command; were it to fail, the calls that rely on it
        // could be missed by a drain, which must not happen silently.
        assert_eq!(
            done, 0,
            "membarrier failed after the process registered for it"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[test]
    fn the_barrier_is_available_here_and_can_be_issued() {
        // This project's machines run Linux kernels with membarrier; a sandbox refusing it
        // would fall back to the symmetric path, which this test would then point out.
        assert!(asymmetric());
        heavy();
        heavy();
    }
}

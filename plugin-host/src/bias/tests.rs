//! The biased lock: who holds the bias, when it goes, and that accesses stay exclusive.

use std::sync::Barrier;

use super::*;

/// A read-modify-write spread over a few instructions, so two threads inside it at once
/// would lose updates.
fn bump(v: &mut u64) {
    let seen = *v;
    for _ in 0..64 {
        std::hint::spin_loop();
    }
    std::hint::black_box(&seen);
    *v = seen + 1;
}

#[test]
fn a_call_is_granted_the_bias_and_gives_it_back() {
    assert!(
        fence::asymmetric(),
        "the bias needs the process-wide barrier"
    );
    let b = Biased::new(0u64);
    let grant = Grant::default();
    b.in_call(&grant, bump);
    assert!(b.held_here());
    b.in_call(&grant, bump);
    b.end_call(&grant);
    assert!(!b.held_here());
    // The host reads the result after the call without revoking anything.
    assert_eq!(b.lock(|v| *v), 2);
    assert!(!b.was_contended());
    // The next call is granted it again.
    let grant = Grant::default();
    b.in_call(&grant, bump);
    assert!(b.held_here());
    b.end_call(&grant);
    assert_eq!(b.lock(|v| *v), 3);
}

#[test]
fn another_thread_revokes_the_bias_and_sees_every_write() {
    let b = Biased::new(0u64);
    let grant = Grant::default();
    for _ in 0..10 {
        b.in_call(&grant, bump);
    }
    assert!(b.held_here());
    let seen = std::thread::scope(|s| s.spawn(|| b.lock(|v| *v)).join().unwrap());
    assert_eq!(seen, 10);
    assert!(b.was_contended());
    assert!(!b.held_here());
    // After contention no bias is granted: the call's accesses take the lock.
    b.in_call(&grant, bump);
    assert!(!b.held_here());
    b.end_call(&grant);
    assert_eq!(b.lock(|v| *v), 11);
}

#[test]
fn a_second_call_on_another_thread_revokes_and_neither_is_biased_again() {
    let b = Biased::new(0u64);
    let first = Grant::default();
    b.in_call(&first, bump);
    std::thread::scope(|s| {
        s.spawn(|| {
            let second = Grant::default();
            b.in_call(&second, bump);
            assert!(!b.held_here(), "a contended value is not biased");
            b.end_call(&second);
        });
    });
    b.in_call(&first, bump);
    assert!(!b.held_here());
    b.end_call(&first);
    assert_eq!(b.lock(|v| *v), 3);
}

#[test]
fn the_end_of_a_call_revokes_a_bias_another_thread_was_granted() {
    let b = Biased::new(0u64);
    let grant = Grant::default();
    std::thread::scope(|s| {
        s.spawn(|| {
            b.in_call(&grant, bump);
            assert!(b.held_here());
        });
    });
    b.end_call(&grant);
    assert!(b.was_contended());
    assert_eq!(b.lock(|v| *v), 1);
}

#[test]
fn a_revocation_waits_for_the_owners_access_in_progress() {
    // The owner bumps in a loop, inside its access most of the time; the other thread
    // revokes at some point in it. Each trial loses an update if the two ever overlap.
    use std::sync::atomic::AtomicBool;
    for trial in 0..1000 {
        let b = Biased::new(0u64);
        let stop = AtomicBool::new(false);
        let start = Barrier::new(2);
        let owner_bumps = std::thread::scope(|s| {
            let owner = s.spawn(|| {
                let grant = Grant::default();
                let mut n = 0u64;
                b.in_call(&grant, bump);
                n += 1;
                start.wait();
                while !stop.load(Ordering::Relaxed) {
                    b.in_call(&grant, bump);
                    n += 1;
                }
                b.end_call(&grant);
                n
            });
            s.spawn(|| {
                start.wait();
                for _ in 0..trial % 7 {
                    std::hint::spin_loop();
                }
                b.lock(bump);
                stop.store(true, Ordering::Relaxed);
            });
            owner.join().unwrap()
        });
        assert_eq!(
            b.lock(|v| *v),
            owner_bumps + 1,
            "trial {trial} lost an update"
        );
    }
}

//! Unit tests of the host's context and of the context a plugin sees in a call.

use super::*;

#[test]
fn deadline_becomes_cancellation_and_wakes_waiters() {
    let ctx = Context::with_timeout(Duration::from_millis(20));
    assert_eq!(ctx.reason(), None);
    // Waits no longer than the deadline even though the timeout is much longer.
    assert!(ctx.wait_cancelled(Duration::from_secs(30)));
    assert_eq!(ctx.reason(), Some(CancelReason::DeadlineExceeded));
}

#[test]
fn wait_times_out_on_a_live_context() {
    let ctx = Context::background();
    assert!(!ctx.wait_cancelled(Duration::from_millis(5)));
}

#[test]
fn cancel_propagates_to_children_not_parents() {
    let parent = Context::background();
    let child = parent.child();
    let grandchild = child.child();
    let sibling = parent.child();
    child.cancel();
    assert_eq!(grandchild.reason(), Some(CancelReason::Cancelled));
    assert_eq!(parent.reason(), None);
    assert_eq!(sibling.reason(), None);
    parent.cancel();
    assert_eq!(sibling.reason(), Some(CancelReason::Cancelled));
}

#[test]
fn cancel_wakes_a_waiting_thread() {
    let ctx = Context::background();
    let waiter = {
        let ctx = ctx.clone();
        std::thread::spawn(move || ctx.wait_cancelled(Duration::from_secs(60)))
    };
    ctx.cancel();
    assert!(waiter.join().unwrap());
}

#[test]
fn child_of_cancelled_parent_is_cancelled() {
    let parent = Context::background();
    parent.cancel();
    assert!(parent.child().is_cancelled());
}

#[test]
fn child_inherits_the_earlier_deadline() {
    let parent = Context::with_timeout(Duration::from_secs(1));
    let child = parent.child_with_timeout(Duration::from_secs(100));
    assert_eq!(child.deadline(), parent.deadline());
}

#[test]
fn a_live_context_is_not_cancelled_and_keeps_its_deadline() {
    let ctx = Context::background();
    assert!(!ctx.is_cancelled());
    assert_eq!(ctx.deadline(), None);
    let before = Instant::now();
    let timed = Context::with_timeout(Duration::from_secs(60));
    assert!(!timed.is_cancelled());
    let deadline = timed.deadline().expect("a deadline");
    assert!(deadline >= before + Duration::from_secs(60));
    assert!(deadline <= Instant::now() + Duration::from_secs(60));
    timed.cancel();
    assert!(timed.is_cancelled());
}

#[test]
fn raw_values_can_be_read_listed_and_removed() {
    let ctx = Context::background();
    ctx.set_value("b", Value::Int(2));
    ctx.set_value("a", Value::Bool(true));
    assert_eq!(ctx.get_value("b").unwrap(), Some(Value::Int(2)));
    assert_eq!(ctx.get_value("missing").unwrap(), None);
    assert_eq!(ctx.keys(), ["a", "b"]);
    assert_eq!(
        ctx.values().unwrap(),
        [
            ("a".to_owned(), Value::Bool(true)),
            ("b".to_owned(), Value::Int(2))
        ]
    );
    assert!(ctx.remove("b"));
    assert!(!ctx.remove("b"));
    assert_eq!(ctx.keys(), ["a"]);
}

#[test]
fn encoded_bytes_are_stored_as_they_are_once_they_are_checked() {
    let ctx = Context::background();
    let bytes = plugin_abi::codec::encode(&("x", 7)).unwrap();
    ctx.set_bytes("pair", &bytes).unwrap();
    assert_eq!(ctx.get_bytes("pair"), Some(bytes));
    assert_eq!(
        ctx.get::<(String, i32)>("pair").unwrap(),
        Some(("x".into(), 7))
    );
    // Not one well-formed value: refused, and what was there is kept.
    let err = ctx.set_bytes("pair", &[0x92, 0xc0]).unwrap_err();
    assert_eq!(
        err.report(),
        "context value `pair` is not one well-formed encoded value; encode it with \
         `plugin_abi::codec`: malformed value at byte 2: a length runs past the end"
    );
    assert_eq!(
        ctx.get::<(String, i32)>("pair").unwrap(),
        Some(("x".into(), 7))
    );
    assert_eq!(ctx.get_bytes("missing"), None);
}

#[test]
fn bytes_a_plugin_stores_that_do_not_decode_are_a_typed_error_naming_the_key() {
    let ctx = Context::background();
    let abort = AbortToken::new();
    let call = CallContext::new(&ctx, "test", &abort, emit_log);
    // What a plugin that bypasses the SDK could store.
    HostContext::set(&call, "bad".into(), (&[0xc1u8][..]).into());
    drop(call);
    for err in [
        ctx.get::<i64>("bad").unwrap_err(),
        ctx.get_value("bad").unwrap_err(),
        ctx.values().unwrap_err(),
    ] {
        let shown = err.report();
        assert!(shown.starts_with("context value `bad`"), "{shown}");
        assert!(shown.contains(": malformed value: "), "{shown}");
    }
}

#[test]
fn a_plugin_overwriting_a_value_reuses_its_buffer() {
    let ctx = Context::background();
    ctx.set("s", &"a string of some length").unwrap();
    let before = ctx.inner.values.lock(|v| v["s"].as_ptr());
    as_plugin_sees_it(&ctx, &AbortToken::new(), |p| {
        p.set("s", "shorter").unwrap();
    });
    let after = ctx.inner.values.lock(|v| v["s"].as_ptr());
    assert_eq!(before, after, "the value's buffer was reallocated");
    assert_eq!(ctx.get::<String>("s").unwrap().as_deref(), Some("shorter"));
}

#[test]
fn a_cancel_handle_cancels_its_context_and_its_children_only() {
    fn is_send_sync_clone<T: Send + Sync + Clone>(_: &T) {}
    let parent = Context::background();
    let ctx = parent.child();
    let child = ctx.child();
    let handle = ctx.cancel_handle();
    is_send_sync_clone(&handle);
    assert!(!handle.is_cancelled());
    handle.clone().cancel();
    assert!(handle.is_cancelled());
    assert_eq!(ctx.reason(), Some(CancelReason::Cancelled));
    assert_eq!(child.reason(), Some(CancelReason::Cancelled));
    assert_eq!(parent.reason(), None);
}

#[test]
fn typed_values_round_trip() {
    #[derive(Serialize, serde::Deserialize, PartialEq, Debug)]
    struct Hello {
        name: String,
    }
    let ctx = Context::background();
    ctx.set("sample", &Hello { name: "go".into() }).unwrap();
    assert_eq!(
        ctx.get::<Hello>("sample").unwrap(),
        Some(Hello { name: "go".into() })
    );
    assert!(ctx.get::<i64>("sample").is_err());
    assert_eq!(ctx.get::<i64>("missing").unwrap(), None);
    assert_eq!(ctx.keys(), vec!["sample".to_owned()]);
}

/// Runs `f` with the context a plugin sees for a call in `ctx`, through the SDK.
fn as_plugin_sees_it<R>(
    ctx: &Context,
    abort: &AbortToken,
    f: impl FnOnce(&plugin_sdk::Context<'_>) -> R,
) -> R {
    use plugin_abi::abi_stable::{sabi_trait::TD_Opaque, sabi_types::RRef};
    let call = CallContext::new(ctx, "test", abort, emit_log);
    let raw = plugin_abi::HostContext_TO::from_ptr(RRef::new(&call), TD_Opaque);
    let plugin_view = plugin_sdk::Context::from_raw(raw);
    f(&plugin_view)
}

#[test]
fn a_plugin_sees_and_changes_the_values_label_and_deadline() {
    let ctx = Context::with_timeout(Duration::from_secs(60)).with_label("route");
    ctx.set_value("a", Value::Int(1));
    ctx.set_value("b", Value::Bool(true));
    let abort = AbortToken::new();
    as_plugin_sees_it(&ctx, &abort, |p| {
        assert_eq!(p.get_value("a").unwrap(), Some(Value::Int(1)));
        assert_eq!(p.get_value("missing").unwrap(), None);
        assert_eq!(p.get::<i64>("a").unwrap(), Some(1));
        assert_eq!(p.get::<i64>("missing").unwrap(), None);
        let mut keys = p.keys();
        keys.sort();
        assert_eq!(keys, ["a", "b"]);
        assert!(p.remove("b"));
        assert!(!p.remove("b"));
        p.set_value("c", Value::Int(3));
        assert_eq!(p.label(), Some("route"));
        let deadline = p.deadline().expect("a deadline");
        let host_deadline = ctx.deadline().unwrap();
        assert!(deadline >= host_deadline, "{deadline:?} {host_deadline:?}");
        assert!(deadline < host_deadline + Duration::from_secs(30));
        // Fixed for the call: asked again later, it is the same instant.
        std::hint::black_box((0..10_000).sum::<u64>());
        assert_eq!(p.deadline(), Some(deadline));
        assert_eq!(p.reason(), None);
    });
    assert_eq!(ctx.keys(), ["a", "c"]);

    as_plugin_sees_it(&Context::background(), &abort, |p| {
        assert_eq!(p.label(), None);
        assert_eq!(p.deadline(), None);
        assert!(p.keys().is_empty());
    });
}

#[test]
fn a_plugin_sees_cancellation_deadlines_and_an_abort() {
    let ctx = Context::background();
    let abort = AbortToken::new();
    as_plugin_sees_it(&ctx, &abort, |p| {
        assert_eq!(p.reason(), None);
        assert!(!p.wait_cancelled(Duration::from_millis(1)));
    });
    // An abort reaches a call that is not waiting: it reads as a cancellation, and a
    // wait returns at once.
    abort.abort();
    as_plugin_sees_it(&ctx, &abort, |p| {
        assert_eq!(p.reason(), Some(CancelReason::Cancelled));
        assert!(p.wait_cancelled(Duration::from_secs(60)));
    });
    let past = Context::with_deadline(Instant::now());
    as_plugin_sees_it(&past, &AbortToken::new(), |p| {
        assert_eq!(p.reason(), Some(CancelReason::DeadlineExceeded));
    });
}

#[test]
fn a_call_gives_back_the_bias_so_the_host_reads_its_results_without_revoking() {
    let ctx = Context::background();
    let abort = AbortToken::new();
    as_plugin_sees_it(&ctx, &abort, |p| {
        p.set("n", &1).unwrap();
        assert!(
            ctx.inner.values.held_here(),
            "the call's thread holds the bias"
        );
        p.set("s", "text").unwrap();
        assert_eq!(p.get::<String>("s").unwrap().as_deref(), Some("text"));
    });
    assert!(!ctx.inner.values.held_here());
    assert_eq!(ctx.get::<i64>("n").unwrap(), Some(1));
    assert!(!ctx.inner.values.was_contended());
    // The next call is granted it again.
    as_plugin_sees_it(&ctx, &abort, |p| {
        p.set("n", &2).unwrap();
        assert!(ctx.inner.values.held_here());
    });
    assert_eq!(ctx.get::<i64>("n").unwrap(), Some(2));
}

#[test]
fn debug_shows_label_deadline_and_keys() {
    let ctx = Context::background().with_label("route");
    ctx.set_value("key", Value::Int(1));
    let shown = format!("{ctx:?}");
    for part in ["Context", "route", "deadline: None", "key"] {
        assert!(shown.contains(part), "{shown}");
    }
}

//! Plugins log into the host's `tracing` subscriber, target `plugins`, field `plugin`.

use std::io::Write;
use std::sync::{Arc, Mutex};

use plugin_host::{Context, PluginManager};
use plugin_test_support::fixtures;

/// A `tracing` writer that keeps everything written to it.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// What `f` logged, at every level, through a `tracing` subscriber of this thread.
fn logs_of(f: impl FnOnce()) -> String {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer({
            let captured = captured.clone();
            move || captured.clone()
        })
        .with_ansi(false)
        .with_max_level(tracing::Level::TRACE)
        .finish();
    tracing::subscriber::with_default(subscriber, f);
    let bytes = captured.0.lock().unwrap().clone();
    String::from_utf8(bytes).unwrap()
}

#[test]
fn a_plugins_log_records_reach_the_hosts_subscriber() {
    let base = tempfile::tempdir().unwrap();
    fixtures().install(base.path(), "hello");
    let m = PluginManager::new(base.path());
    m.load_plugin("hello").unwrap();

    let text = logs_of(|| {
        let ctx = Context::background();
        ctx.set("sample", &serde_json::json!({ "name": "logbook" }))
            .unwrap();
        m.get("hello").unwrap().execute(&ctx).unwrap();
    });
    let line = text
        .lines()
        .find(|l| l.contains("greeting logbook"))
        .unwrap_or_else(|| panic!("the plugin's record is missing from: {text}"));
    assert!(line.contains("INFO"), "{line}");
    assert!(line.contains("plugins"), "{line}");
    assert!(line.contains("plugin=\"hello\""), "{line}");
}

#[test]
fn on_unload_logs_through_its_context() {
    let base = tempfile::tempdir().unwrap();
    fixtures().install(base.path(), "counter");
    let m = PluginManager::new(base.path());
    m.load_plugin("counter").unwrap();
    let ctx = Context::background();
    ctx.set("step", &7).unwrap();
    m.get("counter").unwrap().execute(&ctx).unwrap();

    let text = logs_of(|| {
        let _ = m.unload("counter").unwrap();
    });
    let line = text
        .lines()
        .find(|l| l.contains("counter stopping at 7"))
        .unwrap_or_else(|| panic!("on_unload's record is missing from: {text}"));
    assert!(line.contains("plugin=\"counter\""), "{line}");
}

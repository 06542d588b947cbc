//! A server on 127.0.0.1 for each test: a base directory with fixture plugins, a manager
//! that loaded them, and `plugin_http::router` served on a port of its own.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub(crate) use plugin_test_support::fixtures;

use plugin_host::PluginManager;
use plugin_http::{HttpOptions, ServeOptions};

/// The API token of the tests' servers that have one.
pub(crate) const TOKEN: &str = "integration-test-token-5f2a9c";

/// The default options with [`TOKEN`] as the API token.
pub(crate) fn with_token() -> HttpOptions {
    HttpOptions::new().token(TOKEN).unwrap()
}

/// A running server; stops when dropped.
pub(crate) struct TestServer {
    /// The plugin base directory.
    pub(crate) base: tempfile::TempDir,
    /// The manager the server serves.
    pub(crate) manager: Arc<PluginManager>,
    addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl TestServer {
    /// Installs `plugins` from the fixtures, loads them, and serves them with `options`.
    pub(crate) fn start(plugins: &[&str], options: HttpOptions) -> TestServer {
        Self::start_with(plugins, &[], options)
    }

    /// As [`start`](TestServer::start), after replacing the `plugin.json` of each plugin
    /// named in `manifests` with the JSON given.
    pub(crate) fn start_with(
        plugins: &[&str],
        manifests: &[(&str, serde_json::Value)],
        options: HttpOptions,
    ) -> TestServer {
        let base = tempfile::tempdir().unwrap();
        for name in plugins {
            fixtures().install(base.path(), name);
        }
        for (name, manifest) in manifests {
            let path = base.path().join(name).join("plugin.json");
            std::fs::write(path, serde_json::to_string_pretty(manifest).unwrap()).unwrap();
        }
        let manager = Arc::new(PluginManager::new(base.path()));
        let report = manager.load_plugins().unwrap();
        assert!(
            report.all_loaded(),
            "{:?}",
            report.failed().collect::<Vec<_>>()
        );
        Self::serve(base, manager, options)
    }

    /// Serves an existing manager.
    pub(crate) fn serve(
        base: tempfile::TempDir,
        manager: Arc<PluginManager>,
        options: HttpOptions,
    ) -> TestServer {
        Self::serve_with(base, manager, options, ServeOptions::new())
    }

    /// Serves an existing manager with connection limits `limits`.
    pub(crate) fn serve_with(
        base: tempfile::TempDir,
        manager: Arc<PluginManager>,
        options: HttpOptions,
        limits: ServeOptions,
    ) -> TestServer {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let app = plugin_http::router(manager.clone(), options);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        runtime.spawn(async move {
            let shutdown = async {
                let _ = rx.await;
            };
            plugin_http::serve(listener, app, limits, shutdown)
                .await
                .unwrap();
        });
        TestServer {
            base,
            manager,
            addr,
            shutdown: Some(tx),
            runtime: Some(runtime),
        }
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The server's address.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(runtime) = self.runtime.take() {
            // Calls that ignore cancellation keep blocking threads; do not wait for them.
            runtime.shutdown_timeout(Duration::from_secs(2));
        }
    }
}

/// A client that returns every status as a response and gives up after 30 s.
pub(crate) fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

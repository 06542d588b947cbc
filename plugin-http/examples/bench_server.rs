//! The server `cargo xtask bench` loads with `wrk`: the plugins of a base directory served by
//! `plugin_http::router`, plus the baseline, a native axum handler at
//! `/native/sample/{id}` that answers what `http-echo` answers at `/api/plugin/sample/{id}`
//! (the xtask checks the two bodies are the same bytes before measuring).
//!
//! ```text
//! cargo run --release -p plugin-http --example bench_server -- PLUGIN_DIR
//! ```
//!
//! The first line on stdout is `listening on http://ADDR`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, Query};
use axum::routing::get;
use axum::{Json, Router};
use plugin_host::PluginManager;
use plugin_http::HttpOptions;

/// What `http-echo` answers for `GET /api/plugin/sample/{id}`, written as a plain handler.
async fn native(
    Path(id): Path<String>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "id": id, "query": query }))
}

fn main() {
    let dir = std::env::args()
        .nth(1)
        .expect("usage: bench_server PLUGIN_DIR");
    let manager = Arc::new(PluginManager::new(dir));
    let report = manager
        .load_plugins()
        .expect("the plugin directory is readable");
    for (name, err) in report.failed() {
        eprintln!("not loaded: {name}: {}", err.report());
    }
    let app = plugin_http::router(manager, HttpOptions::new())
        .merge(Router::new().route("/native/sample/{id}", get(native)));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a port on 127.0.0.1");
        println!(
            "listening on http://{}",
            listener.local_addr().expect("bound")
        );
        axum::serve(listener, app).await.expect("the server runs");
    });
}

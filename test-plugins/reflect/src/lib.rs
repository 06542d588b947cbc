//! Test fixture: an HTTP plugin with the bugs a web server must survive. By label:
//!
//! - `page`: answers the query parameter `html` as a `text/html` page, unescaped: a
//!   reflected-XSS hole, on purpose. With `csp` in the query, it sends that as its own
//!   `Content-Security-Policy` (the plugin "declares otherwise").
//! - `sleep`: sleeps for the route parameter `ms` milliseconds, ignoring cancellation (a call
//!   that hangs, but ends, so that nothing outlives the test).
//! - `echo`: answers the length of the request body, whatever its type.
//! - `ok`: answers `ok` with the plugin's name.
//!
//! Tests build it under other names too (`plugin-test-support`'s `renamed`), to have several
//! plugins that hang.

use std::time::Duration;

use plugin_sdk::http::{Request, Response};
use plugin_sdk::{export_plugin, Context, PluginError};

fn execute(ctx: &Context<'_>) -> Result<(), PluginError> {
    let request = Request::from_context(ctx)?;
    match request.label.as_str() {
        "page" => {
            let html = request.query.get("html").cloned().unwrap_or_default();
            let mut response = Response::text(html).header("content-type", "text/html");
            if let Some(csp) = request.query.get("csp") {
                response = response.header("content-security-policy", csp.clone());
            }
            response.write(ctx)
        }
        "sleep" => {
            let ms = request
                .param("ms")
                .and_then(|ms| ms.parse::<u64>().ok())
                .ok_or_else(|| PluginError::invalid_input("`ms` is not a number"))?;
            // Not `wait_cancelled`: this plugin ignores cancellation on purpose.
            std::thread::sleep(Duration::from_millis(ms));
            Response::text("slept").write(ctx)
        }
        "echo" => Response::text(request.body.len().to_string()).write(ctx),
        _ => Response::text(format!("ok from {}", env!("CARGO_PKG_NAME"))).write(ctx),
    }
}

export_plugin!(execute);

//! What a request must show before anything else looks at it: a `Host` this server answers
//! to, and, to change state through the management API, that it was not sent by a page of
//! another origin.
//!
//! A server on 127.0.0.1 is reachable from every web page the local user opens: a page can
//! send it requests (it cannot read the answers, but a state change needs no answer), and a
//! page whose host name the attacker re-points at 127.0.0.1 (DNS rebinding) can read them
//! too. So:
//!
//! - **`Host`.** Every request must name, in `Host` (or the request target's authority), an
//!   IP address, `localhost`, or a name in [`HttpOptions::allowed_hosts`]; anything else is
//!   answered 421 `misdirected_request`. A rebinding page always sends its own host name, so
//!   it gets nothing, plugin routes included. A request without a host (HTTP/1.0) passes:
//!   no browser sends one.
//! - **Cross-site writes.** A state-changing request (any method but GET, HEAD and OPTIONS)
//!   under `/api/v1` is refused with 403 `cross_origin` when its `Origin` is not this
//!   server's own (`http://` + its `Host`), `null` included, or when `Sec-Fetch-Site` says
//!   `cross-site` or `same-site`. Command-line clients send neither header and pass; the
//!   management page, on the server's own origin, passes.
//! - **No token, no writes.** Without [`HttpOptions::token`], those requests answer 403
//!   `read_only` unless [`HttpOptions::unauthenticated_writes`] is set.
//!
//! [`HttpOptions::allowed_hosts`]: crate::HttpOptions::allowed_hosts
//! [`HttpOptions::token`]: crate::HttpOptions::token
//! [`HttpOptions::unauthenticated_writes`]: crate::HttpOptions::unauthenticated_writes

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::state::AppState;

/// Refuses requests for another host, and cross-site or token-less writes to the API.
pub(crate) async fn check(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let host = request_host(&request);
    if let Some(host) = &host {
        if !host_allowed(host, &state.options.allowed_hosts) {
            return ApiError::new(
                StatusCode::MISDIRECTED_REQUEST,
                "misdirected_request",
                format!(
                    "this server does not answer for host `{host}`; it answers for IP \
                     addresses, `localhost` and the names it was started with \
                     (`HttpOptions::allow_host`, `plugctl serve --allow-host NAME`)"
                ),
            )
            .into_response();
        }
    }
    if is_write(request.method()) && under_api(request.uri().path()) {
        if let Some(refusal) = cross_site(request.headers(), host.as_deref()) {
            return refusal.into_response();
        }
        if state.options.token.is_none() && !state.options.unauthenticated_writes {
            return ApiError::new(
                StatusCode::FORBIDDEN,
                "read_only",
                "this server has no API token, so its management API is read-only: start it \
                 with a token (`plugctl serve --token-file FILE`, `HttpOptions::token`) and \
                 send it as `Authorization: Bearer <token>`",
            )
            .into_response();
        }
    }
    next.run(request).await
}

/// The host a request names: its target's authority, else its `Host` header; `None` when
/// it names none. A `Host` that is not text is returned as it reads, so that it is refused.
fn request_host(request: &Request) -> Option<String> {
    if let Some(authority) = request.uri().authority() {
        return Some(authority.as_str().to_owned());
    }
    let value = request.headers().get(header::HOST)?;
    Some(String::from_utf8_lossy(value.as_bytes()).into_owned())
}

/// The name part of `host[:port]`, `[v6]:port` or `[v6]`, lowercase.
fn host_name(host: &str) -> String {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(name, port)| {
            if port.bytes().all(|b| b.is_ascii_digit()) {
                name
            } else {
                host
            }
        }),
    };
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// Whether `host` is an IP address, `localhost`, or one of `allowed` (any port).
fn host_allowed(host: &str, allowed: &[String]) -> bool {
    let name = host_name(host);
    name.parse::<IpAddr>().is_ok()
        || name == "localhost"
        || allowed
            .iter()
            .any(|allowed| allowed.eq_ignore_ascii_case(&name))
}

fn is_write(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

fn under_api(path: &str) -> bool {
    path == crate::API_PREFIX
        || path
            .strip_prefix(crate::API_PREFIX)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// The refusal for a write a browser sent on behalf of another site, if it is one.
fn cross_site(headers: &HeaderMap, host: Option<&str>) -> Option<ApiError> {
    let refuse = |why: String| {
        Some(ApiError::new(
            StatusCode::FORBIDDEN,
            "cross_origin",
            format!(
                "{why}: the management API changes state only for requests from its own page \
                 or from clients that are not browsers"
            ),
        ))
    };
    if let Some(site) = headers.get("sec-fetch-site") {
        let site = site.to_str().unwrap_or_default();
        if !matches!(site, "same-origin" | "none") {
            return refuse(format!(
                "the request comes from another site (Sec-Fetch-Site: {site})"
            ));
        }
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or_default();
        let own = host.map(|host| format!("http://{host}"));
        if own
            .as_deref()
            .is_none_or(|own| !origin.eq_ignore_ascii_case(own))
        {
            return refuse(format!(
                "the request comes from the page of origin `{origin}`"
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_are_taken_from_host_and_port() {
        assert_eq!(host_name("127.0.0.1:8080"), "127.0.0.1");
        assert_eq!(host_name("[::1]:8080"), "::1");
        assert_eq!(host_name("[::1]"), "::1");
        assert_eq!(host_name("LocalHost:80"), "localhost");
        assert_eq!(host_name("example.com."), "example.com");
        assert_eq!(host_name("evil.com"), "evil.com");
    }

    #[test]
    fn only_addresses_localhost_and_named_hosts_are_allowed() {
        let named = ["plugins.internal".to_owned()];
        assert!(host_allowed("127.0.0.1:8080", &[]));
        assert!(host_allowed("10.1.2.3", &[]));
        assert!(host_allowed("[::1]:8080", &[]));
        assert!(host_allowed("localhost:8080", &[]));
        assert!(host_allowed("Plugins.Internal:8080", &named));
        assert!(!host_allowed("plugins.internal:8080", &[]));
        assert!(!host_allowed("evil.example:8080", &named));
        assert!(!host_allowed("localhost.evil.example", &[]));
        assert!(!host_allowed("127.0.0.1.evil.example", &[]));
        assert!(!host_allowed("", &[]));
    }

    #[test]
    fn writes_are_methods_that_change_state_under_the_api() {
        assert!(is_write(&Method::POST));
        assert!(is_write(&Method::DELETE));
        assert!(is_write(&Method::PUT));
        assert!(!is_write(&Method::GET));
        assert!(!is_write(&Method::HEAD));
        assert!(!is_write(&Method::OPTIONS));
        assert!(under_api("/api/v1"));
        assert!(under_api("/api/v1/plugins/x/unload"));
        assert!(!under_api("/api/v1x"));
        assert!(!under_api("/api/plugin/sample"));
    }

    #[test]
    fn cross_site_requests_are_told_apart_from_same_origin_ones() {
        let with = |pairs: &[(&'static str, &str)]| {
            let mut headers = HeaderMap::new();
            for (name, value) in pairs {
                headers.insert(*name, value.parse().unwrap());
            }
            cross_site(&headers, Some("127.0.0.1:8080")).is_some()
        };
        assert!(!with(&[]));
        assert!(!with(&[("origin", "http://127.0.0.1:8080")]));
        assert!(!with(&[("sec-fetch-site", "same-origin")]));
        assert!(!with(&[("sec-fetch-site", "none")]));
        assert!(with(&[("origin", "http://127.0.0.1:9999")]));
        assert!(with(&[("origin", "https://127.0.0.1:8080")]));
        assert!(with(&[("origin", "null")]));
        assert!(with(&[("sec-fetch-site", "cross-site")]));
        assert!(with(&[("sec-fetch-site", "same-site")]));
        assert!(with(&[
            ("origin", "http://127.0.0.1:8080"),
            ("sec-fetch-site", "cross-site")
        ]));
        let mut headers = HeaderMap::new();
        headers.insert("origin", "http://127.0.0.1:8080".parse().unwrap());
        assert!(cross_site(&headers, None).is_some());
    }
}

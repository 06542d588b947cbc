//! Downloads over HTTP(S): size cap, bounded redirects, timeout, progress.
//!
//! [`download`] fetches one `http://` or `https://` URL into memory with [`ureq`]. Only that
//! URL is contacted, plus the places its redirects point to (at most
//! [`DownloadOptions::max_redirects`] of them). HTTPS uses rustls with the Mozilla roots
//! compiled in (`webpki-roots`): no certificate store, revocation service or any other
//! address is consulted. The one exception is a proxy the user named in the standard
//! environment variables (`ALL_PROXY`, `HTTPS_PROXY`, `HTTP_PROXY`, honouring `NO_PROXY`), as
//! curl and cargo do; a loopback URL (`localhost`, `127.0.0.0/8`, `::1`) never goes through
//! a proxy.
//!
//! The body is read in chunks of 64 KiB and refused as soon as more than
//! [`DownloadOptions::max_bytes`] arrive, whatever `Content-Length` says (and before reading
//! anything if `Content-Length` already says more). `Accept-Encoding: identity` is sent,
//! so the bytes returned are the bytes the server stores, and a signature made over the file
//! matches them.

use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use ureq::http::{StatusCode, Uri};
use ureq::ResponseExt;

/// Bytes asked for in one read of the body; the progress callback is called after each.
const CHUNK: usize = 64 << 10;

/// Largest buffer reserved up front from a declared `Content-Length`.
const MAX_PREALLOCATION: u64 = 16 << 20;

/// Why a download failed. Each message names the URL, says what failed and how to fix it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DownloadError {
    /// The URL is not an `http://` or `https://` URL.
    #[error(
        "cannot download {url:?}: only http:// and https:// URLs are accepted; \
         for a package on this machine, give its file path instead"
    )]
    UnsupportedScheme {
        /// The URL as given.
        url: String,
    },
    /// The URL starts with `http://` or `https://` but is not a valid URL (or has no host).
    #[error("cannot download {url:?}: it is not a valid URL ({reason}); check the URL")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The server answered with a status other than 2xx (after any redirects).
    #[error(
        "downloading {url} failed: the server answered {status}{}{}; {}",
        reason_phrase(*.status), redirected_note(.redirected_to), status_hint(*.status)
    )]
    Status {
        /// The URL as given.
        url: String,
        /// The HTTP status code, e.g. 404.
        status: u16,
        /// The URL that answered, when redirects led elsewhere.
        redirected_to: Option<String>,
    },
    /// The body is larger than [`DownloadOptions::max_bytes`].
    #[error(
        "downloading {url} was stopped: the body is larger than the limit of {limit} bytes{}; \
         check the URL, or raise the limit (DownloadOptions::max_bytes) if the file really is \
         that large",
        declared_note(.declared)
    )]
    TooLarge {
        /// The URL as given.
        url: String,
        /// The limit, in bytes.
        limit: u64,
        /// The size the server declared in `Content-Length`, if it declared one.
        declared: Option<u64>,
    },
    /// The connection ended before the whole body arrived.
    #[error(
        "downloading {url} failed: the download ended early: got {got}{} bytes; \
         the server closed the connection too soon; retry, and check the server if it \
         happens again",
        expected_note(.expected)
    )]
    Truncated {
        /// The URL as given.
        url: String,
        /// Bytes received.
        got: u64,
        /// Bytes the server declared in `Content-Length`, if it declared them.
        expected: Option<u64>,
        /// What the connection reported.
        #[source]
        source: std::io::Error,
    },
    /// More redirects than [`DownloadOptions::max_redirects`] (a redirect loop, typically).
    #[error(
        "downloading {url} failed: more than {limit} redirects (a redirect loop?); check the \
         URL, or raise the limit (DownloadOptions::max_redirects)"
    )]
    TooManyRedirects {
        /// The URL as given.
        url: String,
        /// The most redirects allowed.
        limit: u32,
    },
    /// The download did not finish within [`DownloadOptions::timeout`].
    #[error(
        "downloading {url} timed out after {timeout:?} (the whole download, redirects \
         included): the server is slow or not answering; retry, check the URL, or raise \
         the time limit (DownloadOptions::timeout)"
    )]
    Timeout {
        /// The URL as given.
        url: String,
        /// The time limit.
        timeout: Duration,
    },
    /// Connecting, TLS, or the HTTP exchange failed in another way.
    #[error("downloading {url} failed: {source}; {hint}")]
    Request {
        /// The URL as given.
        url: String,
        /// How to fix it.
        hint: &'static str,
        /// The HTTP client's error.
        #[source]
        source: ureq::Error,
    },
}

fn reason_phrase(status: u16) -> String {
    StatusCode::from_u16(status)
        .ok()
        .and_then(|code| code.canonical_reason())
        .map(|reason| format!(" {reason}"))
        .unwrap_or_default()
}

fn redirected_note(redirected_to: &Option<String>) -> String {
    match redirected_to {
        Some(to) => format!(" (for {to}, where redirects led)"),
        None => String::new(),
    }
}

fn status_hint(status: u16) -> &'static str {
    match status {
        404 | 410 => "the file is not there: check the URL",
        401 | 403 => "access denied: the file must be reachable without credentials",
        400..=499 => "the server refused the request: check the URL",
        500..=599 => "the server failed: retry later, or check with whoever runs it",
        _ => "only a 2xx answer carries the file: check the URL",
    }
}

fn declared_note(declared: &Option<u64>) -> String {
    match declared {
        Some(n) => format!(" (the server declared {n} bytes)"),
        None => String::new(),
    }
}

fn expected_note(expected: &Option<u64>) -> String {
    match expected {
        Some(n) => format!(" of {n}"),
        None => String::new(),
    }
}

/// The progress callback: (bytes so far, total if the server declared it).
pub type Progress = Arc<dyn Fn(u64, Option<u64>) + Send + Sync>;

/// How a download is bounded and reported.
#[derive(Clone)]
pub struct DownloadOptions {
    /// Largest body accepted, in bytes. Default 256 MiB (the package size cap).
    pub max_bytes: u64,
    /// Time limit for the whole download: connecting, redirects and the body. Default 5
    /// minutes.
    pub timeout: Duration,
    /// Most redirects followed; one more is an error. Default 5.
    pub max_redirects: u32,
    /// Called with (bytes so far, total if the server said): once with 0 bytes when the
    /// answer arrives, then after each chunk of at most 64 KiB.
    pub progress: Option<Progress>,
}

impl std::fmt::Debug for DownloadOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DownloadOptions")
            .field("max_bytes", &self.max_bytes)
            .field("timeout", &self.timeout)
            .field("max_redirects", &self.max_redirects)
            .field("progress", &self.progress.as_ref().map(|_| "Fn"))
            .finish()
    }
}

impl Default for DownloadOptions {
    fn default() -> Self {
        DownloadOptions {
            max_bytes: 256 << 20,
            timeout: Duration::from_secs(300),
            max_redirects: 5,
            progress: None,
        }
    }
}

/// Downloads `url` (http or https) into memory, following at most
/// `options.max_redirects` redirects, within `options.timeout`, refusing more than
/// `options.max_bytes` bytes. Any answer but 2xx is a [`DownloadError::Status`].
pub fn download(url: &str, options: &DownloadOptions) -> Result<Vec<u8>, DownloadError> {
    let host = check_url(url)?;
    let agent = agent(options, is_loopback(&host));
    let mut response = agent
        .get(url)
        .call()
        .map_err(|source| request_error(url, options, source))?;

    let status = response.status().as_u16();
    // With a limit of 0, ureq hands back the redirect itself instead of an error.
    if response.status().is_redirection() && response.headers().contains_key("location") {
        return Err(DownloadError::TooManyRedirects {
            url: url.to_owned(),
            limit: options.max_redirects,
        });
    }
    if !response.status().is_success() {
        let answered = response.get_uri().to_string();
        return Err(DownloadError::Status {
            url: url.to_owned(),
            status,
            redirected_to: (answered != url).then_some(answered),
        });
    }

    let body = response.body_mut();
    let declared = body.content_length();
    if declared.is_some_and(|n| n > options.max_bytes) {
        return Err(DownloadError::TooLarge {
            url: url.to_owned(),
            limit: options.max_bytes,
            declared,
        });
    }
    let report = |so_far: usize| {
        if let Some(progress) = &options.progress {
            progress(so_far as u64, declared);
        }
    };

    let capacity = declared.unwrap_or(0).min(MAX_PREALLOCATION) as usize;
    let mut data = Vec::with_capacity(capacity);
    let mut chunk = vec![0_u8; CHUNK];
    // ureq's own limit: it reads one byte past `max_bytes` to tell "exactly the limit" from
    // "more", and fails with `BodyExceedsLimit` then.
    let mut reader = body.with_config().limit(options.max_bytes).reader();
    report(0);
    loop {
        match reader.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                data.extend_from_slice(&chunk[..n]);
                report(data.len());
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(body_error(url, options, declared, data.len(), e)),
        }
    }
    // ureq reports a short body itself; this guards the contract whatever it does.
    if let Some(expected) = declared.filter(|&n| (data.len() as u64) < n) {
        return Err(DownloadError::Truncated {
            url: url.to_owned(),
            got: data.len() as u64,
            expected: Some(expected),
            source: std::io::ErrorKind::UnexpectedEof.into(),
        });
    }
    Ok(data)
}

/// Like [`download`], but a 404 Not Found gives `Ok(None)` (for an optional `.minisig`).
/// Every other failure, other statuses included, is still an error.
pub fn download_if_present(
    url: &str,
    options: &DownloadOptions,
) -> Result<Option<Vec<u8>>, DownloadError> {
    match download(url, options) {
        Ok(data) => Ok(Some(data)),
        Err(DownloadError::Status { status: 404, .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Checks that `url` is an http(s) URL with a host, and returns the host.
fn check_url(url: &str) -> Result<String, DownloadError> {
    let scheme = url.split_once("://").map(|(scheme, _)| scheme);
    if !scheme.is_some_and(|s| s.eq_ignore_ascii_case("http") || s.eq_ignore_ascii_case("https")) {
        return Err(DownloadError::UnsupportedScheme {
            url: url.to_owned(),
        });
    }
    let invalid = |reason: String| DownloadError::InvalidUrl {
        url: url.to_owned(),
        reason,
    };
    let uri = Uri::try_from(url).map_err(|e| invalid(e.to_string()))?;
    match uri.host() {
        Some(host) if !host.is_empty() => Ok(host.to_owned()),
        _ => Err(invalid("it has no host".to_owned())),
    }
}

/// Whether `host` (as in a URL: IPv6 in brackets) names this machine's loopback interface.
fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn agent(options: &DownloadOptions, loopback: bool) -> ureq::Agent {
    let mut config = ureq::Agent::config_builder()
        .timeout_global(Some(options.timeout))
        .max_redirects(options.max_redirects)
        .max_redirects_will_error(true)
        .http_status_as_error(false)
        .accept_encoding("identity")
        .user_agent(concat!("plugin-package/", env!("CARGO_PKG_VERSION")));
    if loopback {
        config = config.proxy(None);
    }
    config.build().new_agent()
}

/// Maps an error of the request (before the body) to ours.
fn request_error(url: &str, options: &DownloadOptions, source: ureq::Error) -> DownloadError {
    let url = url.to_owned();
    match source {
        ureq::Error::Timeout(_) => DownloadError::Timeout {
            url,
            timeout: options.timeout,
        },
        ureq::Error::TooManyRedirects => DownloadError::TooManyRedirects {
            url,
            limit: options.max_redirects,
        },
        ureq::Error::BodyExceedsLimit(_) => DownloadError::TooLarge {
            url,
            limit: options.max_bytes,
            declared: None,
        },
        source => DownloadError::Request {
            url,
            hint: hint(&source),
            source,
        },
    }
}

/// Maps an error while reading the body to ours.
fn body_error(
    url: &str,
    options: &DownloadOptions,
    declared: Option<u64>,
    got: usize,
    error: std::io::Error,
) -> DownloadError {
    match ureq::Error::from(error) {
        ureq::Error::Io(source)
            if matches!(
                source.kind(),
                std::io::ErrorKind::UnexpectedEof
                    | std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
            ) =>
        {
            DownloadError::Truncated {
                url: url.to_owned(),
                got: got as u64,
                expected: declared,
                source,
            }
        }
        other => request_error(url, options, other),
    }
}

fn hint(error: &ureq::Error) -> &'static str {
    match error {
        ureq::Error::HostNotFound => "check the host name in the URL and the network connection",
        ureq::Error::Io(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            "nothing answers at that address: check the host and port in the URL"
        }
        ureq::Error::Tls(_) | ureq::Error::Rustls(_) | ureq::Error::Pem(_) => {
            "the TLS connection failed: check the URL's host, that the server's certificate \
             is valid for it and signed by a public authority, and this machine's clock"
        }
        ureq::Error::Protocol(_) | ureq::Error::RedirectFailed | ureq::Error::BadUri(_) => {
            "the server's answer (or a redirect's target) is not usable: check the URL"
        }
        _ => "check the URL and the network connection, then retry",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_http_and_https_are_accepted() {
        for url in [
            "file:///tmp/a.plg",
            "ftp://host/a.plg",
            "host/a.plg",
            "/tmp/a.plg",
        ] {
            let err = check_url(url).unwrap_err();
            assert!(
                matches!(err, DownloadError::UnsupportedScheme { .. }),
                "{url}: {err:?}"
            );
            let message = err.to_string();
            assert!(message.contains("http:// and https://"), "{message}");
            assert!(message.contains(url), "{message}");
        }
        assert_eq!(
            check_url("https://example.org/a.plg").unwrap(),
            "example.org"
        );
        assert_eq!(check_url("HTTP://[::1]:8080/a").unwrap(), "[::1]");
    }

    #[test]
    fn a_url_without_a_host_is_invalid() {
        let err = check_url("http:///a.plg").unwrap_err();
        assert!(matches!(err, DownloadError::InvalidUrl { .. }), "{err:?}");
        assert!(err.to_string().contains("http:///a.plg"), "{err}");
    }

    #[test]
    fn loopback_hosts_are_recognised() {
        for host in ["localhost", "LOCALHOST", "127.0.0.1", "127.3.2.1", "[::1]"] {
            assert!(is_loopback(host), "{host}");
        }
        for host in [
            "example.org",
            "10.0.0.1",
            "[2001:db8::1]",
            "localhost.example",
        ] {
            assert!(!is_loopback(host), "{host}");
        }
    }

    #[test]
    fn a_status_error_names_the_status_and_a_fix() {
        let err = DownloadError::Status {
            url: "https://example.org/a.plg".to_owned(),
            status: 404,
            redirected_to: Some("https://cdn.example.org/a.plg".to_owned()),
        };
        let message = err.to_string();
        for part in [
            "https://example.org/a.plg",
            "404 Not Found",
            "cdn.example.org",
            "check the URL",
        ] {
            assert!(message.contains(part), "{part:?} missing in {message}");
        }
    }
}

//! What a host sets: time limits, the caps on calls and on request memory, the API token and
//! who may use the API without one, the host names the server answers to, and the keys
//! uploaded packages must be signed with.

use std::time::Duration;

#[cfg(feature = "uploads")]
use plugin_package::TrustedKeys;

/// The shortest API token accepted, in bytes.
pub const MIN_TOKEN_LEN: usize = 16;

/// The fewest distinct characters an API token must hold.
const MIN_TOKEN_DISTINCT: usize = 6;

/// Settings of [`router`](crate::router).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct HttpOptions {
    /// How long a plugin call may run: its context's deadline. Default 30 s.
    pub request_timeout: Duration,
    /// How long past the deadline the server waits for a call that ignores cancellation
    /// before answering 504 and counting the call as stuck. Default 1 s.
    pub grace: Duration,
    /// Most calls in flight per plugin (stuck ones included); beyond it, 503 with
    /// `Retry-After`. Default 32.
    pub max_in_flight: usize,
    /// Threads plugin calls run on, shared by every plugin; a call that finds none free is
    /// answered 503 at once. The management API, `/metrics` and the page never use them.
    /// Default 512: with every plugin at the default cap, 15 plugins whose calls all hang
    /// still leave 32 threads to the others.
    pub call_threads: usize,
    /// Largest request body, in bytes, for every route but package uploads; beyond it, 413,
    /// answered from `Content-Length` before the body is read, or as soon as a streamed body
    /// passes it. Default 2 MiB.
    pub body_limit: usize,
    /// Largest package upload (`POST /api/v1/packages`), in bytes. Default 64 MiB.
    pub package_limit: usize,
    /// Most memory, in bytes, that the requests in flight may hold together: their bodies as
    /// they arrive, the copy a plugin's context holds, and a JSON body's parsed tree (counted
    /// from its text, before it is parsed). A request that would pass it is answered 503 (or
    /// 413 when it alone is larger). Default 128 MiB.
    pub body_budget: usize,
    /// The bearer token the management API requires; `None` leaves the API's reads open,
    /// and its writes closed unless [`unauthenticated_writes`](Self::unauthenticated_writes)
    /// is set. Set it with [`token`](Self::token), which refuses short and repetitive ones.
    pub token: Option<String>,
    /// Without a token, whether the API's state-changing routes (execute, load, unload,
    /// reload, enable, disable, package uploads) are served anyway. Default `false`: they
    /// answer 403. Unsafe: every local user and process can then change what runs.
    pub unauthenticated_writes: bool,
    /// Host names, besides IP addresses and `localhost`, that requests may name in `Host`.
    /// A request naming any other host is answered 421: that is what a DNS-rebinding page
    /// sends.
    pub allowed_hosts: Vec<String>,
    /// The keys an uploaded package must be signed with. Empty: uploads are refused.
    #[cfg(feature = "uploads")]
    pub trusted_keys: TrustedKeys,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            request_timeout: Duration::from_secs(30),
            grace: Duration::from_secs(1),
            max_in_flight: 32,
            call_threads: 512,
            body_limit: 2 << 20,
            package_limit: 64 << 20,
            body_budget: 128 << 20,
            token: None,
            unauthenticated_writes: false,
            allowed_hosts: Vec::new(),
            #[cfg(feature = "uploads")]
            trusted_keys: TrustedKeys::new(),
        }
    }
}

/// Why [`HttpOptions::token`] refused a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The token is shorter than [`MIN_TOKEN_LEN`] bytes.
    #[error(
        "the API token is {len} bytes long; it must be at least {MIN_TOKEN_LEN}: make one with \
         `openssl rand -hex 32`"
    )]
    TooShort {
        /// Its length.
        len: usize,
    },
    /// The token repeats a few characters (`aaaaaaaaaaaaaaaa`, `abababab...`).
    #[error(
        "the API token uses only {distinct} distinct characters, which is easy to guess; make a \
         random one with `openssl rand -hex 32`"
    )]
    Repetitive {
        /// How many distinct characters it holds.
        distinct: usize,
    },
}

/// Checks that `token` is long and varied enough to be an API token.
///
/// # Errors
///
/// [`TokenError`] for one shorter than [`MIN_TOKEN_LEN`] bytes or made of fewer than six
/// distinct characters.
pub fn check_token(token: &str) -> Result<(), TokenError> {
    if token.len() < MIN_TOKEN_LEN {
        return Err(TokenError::TooShort { len: token.len() });
    }
    let mut seen = [false; 256];
    for byte in token.bytes() {
        seen[usize::from(byte)] = true;
    }
    let distinct = seen.iter().filter(|seen| **seen).count();
    if distinct < MIN_TOKEN_DISTINCT {
        return Err(TokenError::Repetitive { distinct });
    }
    Ok(())
}

impl HttpOptions {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets [`request_timeout`](HttpOptions::request_timeout).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Sets [`grace`](HttpOptions::grace).
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// Sets [`max_in_flight`](HttpOptions::max_in_flight) (at least 1).
    pub fn max_in_flight(mut self, max: usize) -> Self {
        self.max_in_flight = max.max(1);
        self
    }

    /// Sets [`call_threads`](HttpOptions::call_threads) (at least 1).
    pub fn call_threads(mut self, threads: usize) -> Self {
        self.call_threads = threads.max(1);
        self
    }

    /// Sets [`body_limit`](HttpOptions::body_limit).
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = bytes;
        self
    }

    /// Sets [`package_limit`](HttpOptions::package_limit).
    pub fn package_limit(mut self, bytes: usize) -> Self {
        self.package_limit = bytes;
        self
    }

    /// Sets [`body_budget`](HttpOptions::body_budget).
    pub fn body_budget(mut self, bytes: usize) -> Self {
        self.body_budget = bytes;
        self
    }

    /// Sets [`token`](HttpOptions::token).
    ///
    /// # Errors
    ///
    /// [`TokenError`] for a token shorter than [`MIN_TOKEN_LEN`] bytes or made of fewer than
    /// six distinct characters ([`check_token`]).
    ///
    /// ```
    /// use plugin_http::HttpOptions;
    /// assert!(HttpOptions::new().token("s3cret").is_err());
    /// let options = HttpOptions::new().token("9f86d081884c7d659a2feaa0c55ad015").unwrap();
    /// assert!(options.token.is_some());
    /// ```
    pub fn token(mut self, token: impl Into<String>) -> Result<Self, TokenError> {
        let token = token.into();
        check_token(&token)?;
        self.token = Some(token);
        Ok(self)
    }

    /// Sets [`unauthenticated_writes`](HttpOptions::unauthenticated_writes).
    pub fn unauthenticated_writes(mut self, allow: bool) -> Self {
        self.unauthenticated_writes = allow;
        self
    }

    /// Adds a host name to [`allowed_hosts`](HttpOptions::allowed_hosts) (compared without
    /// regard to case, with any port).
    pub fn allow_host(mut self, name: impl Into<String>) -> Self {
        self.allowed_hosts.push(name.into().to_ascii_lowercase());
        self
    }

    /// Sets [`trusted_keys`](HttpOptions::trusted_keys).
    #[cfg(feature = "uploads")]
    pub fn trusted_keys(mut self, keys: TrustedKeys) -> Self {
        self.trusted_keys = keys;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_short_or_repetitive_are_refused() {
        assert_eq!(check_token(""), Err(TokenError::TooShort { len: 0 }));
        assert_eq!(
            check_token("abcdefghijklmno"),
            Err(TokenError::TooShort { len: 15 })
        );
        assert!(check_token("abcdefghijklmnop").is_ok());
        assert_eq!(
            check_token("aaaaaaaaaaaaaaaaaaaaaaaa"),
            Err(TokenError::Repetitive { distinct: 1 })
        );
        assert_eq!(
            check_token("abcdeabcdeabcdeabcde"),
            Err(TokenError::Repetitive { distinct: 5 })
        );
        assert!(check_token("abcdefabcdefabcdef").is_ok());
        let message = TokenError::TooShort { len: 3 }.to_string();
        assert!(message.contains("openssl rand -hex 32"), "{message}");
    }
}

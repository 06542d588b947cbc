//! What a host sets: time limits, the cap on calls in flight, the body limit, the API token,
//! and the keys uploaded packages must be signed with.

use std::time::Duration;

use plugin_package::TrustedKeys;

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
    /// `Retry-After`. Default 64.
    pub max_in_flight: usize,
    /// Largest request body, in bytes, for every route; beyond it, 413. Default 16 MiB.
    pub body_limit: usize,
    /// The bearer token the management API requires; `None` leaves the API open (allowed by
    /// `plugctl serve` on a loopback address only).
    pub token: Option<String>,
    /// The keys an uploaded package must be signed with. Empty: uploads are refused.
    pub trusted_keys: TrustedKeys,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            request_timeout: Duration::from_secs(30),
            grace: Duration::from_secs(1),
            max_in_flight: 64,
            body_limit: 16 << 20,
            token: None,
            trusted_keys: TrustedKeys::new(),
        }
    }
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

    /// Sets [`body_limit`](HttpOptions::body_limit).
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = bytes;
        self
    }

    /// Sets [`token`](HttpOptions::token).
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Sets [`trusted_keys`](HttpOptions::trusted_keys).
    pub fn trusted_keys(mut self, keys: TrustedKeys) -> Self {
        self.trusted_keys = keys;
        self
    }
}

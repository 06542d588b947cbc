//! Downloads over HTTP(S): size cap, bounded redirects, timeout, progress.

use std::sync::Arc;
use std::time::Duration;

/// Why a download failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DownloadError {
    /// Placeholder until the download work lands.
    #[error("not implemented")]
    Unimplemented,
}

/// How a download is bounded and reported.
#[derive(Clone)]
pub struct DownloadOptions {
    /// Largest body accepted, in bytes.
    pub max_bytes: u64,
    /// Time limit for the whole download, redirects included.
    pub timeout: Duration,
    /// Most redirects followed.
    pub max_redirects: u32,
    /// Called as bytes arrive with (bytes so far, total if the server said).
    pub progress: Option<Arc<dyn Fn(u64, Option<u64>) + Send + Sync>>,
}

impl std::fmt::Debug for DownloadOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DownloadOptions")
            .field("max_bytes", &self.max_bytes)
            .field("timeout", &self.timeout)
            .field("max_redirects", &self.max_redirects)
            .finish_non_exhaustive()
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

/// Downloads `url` (http or https) into memory.
pub fn download(url: &str, options: &DownloadOptions) -> Result<Vec<u8>, DownloadError> {
    let _ = (url, options);
    Err(DownloadError::Unimplemented)
}

/// Like [`download`], but a 404 gives `Ok(None)` (for an optional `.minisig`).
pub fn download_if_present(
    url: &str,
    options: &DownloadOptions,
) -> Result<Option<Vec<u8>>, DownloadError> {
    let _ = (url, options);
    Err(DownloadError::Unimplemented)
}

//! Serving a [`router`](crate::router) on a listener with every connection-level resource
//! bounded: open connections, the time a client takes to send a request's head, and the
//! time shutdown takes.
//!
//! - **Connections.** At most [`ServeOptions::max_connections`] are served at once. A
//!   connection beyond it is still accepted, answered `503` with `Retry-After: 1` at once
//!   and closed (after 100 ms at most), so the listener never stops accepting and no
//!   client is left hanging. Up to half the cap are answered so at a time; connections
//!   beyond those are closed at once.
//! - **Header reads.** A client has [`ServeOptions::header_timeout`] to send each request's
//!   head, from the moment the server waits for it: a connection that sends nothing, or one
//!   byte at a time (slowloris), or stays idle between requests, is closed then.
//! - **Shutdown.** When `shutdown` resolves, the listener closes, connections are asked to
//!   finish (an idle one closes at once, one with a request in flight after its answer), and
//!   after [`ServeOptions::shutdown_grace`] whatever is left is dropped. [`serve`] returns
//!   within the grace however many clients or calls hang.
//!
//! - **Closing.** A connection the server closes with part of a request unread (a body
//!   refused with 413 before it was read, say) is shut down for writing first, and what the
//!   client still sends is read and dropped for a second at most
//!   before it is closed: otherwise the client's kernel would get a reset for data it sent,
//!   and the client could lose the answer (the "lingering close" of Apache and nginx).
//!
//! HTTP/1.1 only (with keep-alive): what browsers, curl and load balancers speak to a
//! plain-HTTP backend.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// Connection-level limits of [`serve`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServeOptions {
    /// Most connections served at once; beyond it, 503. Default 512. Keep it well below the
    /// process's descriptor limit (`ulimit -n`), which `plugctl serve` checks.
    pub max_connections: usize,
    /// How long a client may take to send a request's head (and how long a kept-alive
    /// connection may stay idle). Default 10 s.
    pub header_timeout: Duration,
    /// How long shutdown waits for connections to finish before dropping them. Default 5 s.
    pub shutdown_grace: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            max_connections: 512,
            header_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

impl ServeOptions {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets [`max_connections`](ServeOptions::max_connections) (at least 1).
    pub fn max_connections(mut self, max: usize) -> Self {
        self.max_connections = max.max(1);
        self
    }

    /// Sets [`header_timeout`](ServeOptions::header_timeout).
    pub fn header_timeout(mut self, timeout: Duration) -> Self {
        self.header_timeout = timeout;
        self
    }

    /// Sets [`shutdown_grace`](ServeOptions::shutdown_grace).
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace;
        self
    }
}

/// How [`serve`] ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Served {
    /// Connections still open when the shutdown grace ran out, dropped unfinished.
    pub dropped_connections: usize,
}

/// How long a connection answered 503 is read from (and what it sends dropped) before it is
/// closed, so that a client that sent its request gets the answer rather than a reset.
const BUSY_LINGER: Duration = Duration::from_millis(100);

const BUSY: &str = "{\"error\":{\"kind\":\"overloaded\",\"message\":\"this server has as many \
     connections open as it serves at once; retry later\"}}";

/// Serves `app` on `listener` until `shutdown` resolves, then shuts down within
/// [`ServeOptions::shutdown_grace`] (module docs).
///
/// # Errors
///
/// None yet: failures to accept a connection (such as running out of descriptors) are logged
/// and retried after a short pause, never returned; the `Result` leaves room for errors of
/// the listener itself.
///
/// # Examples
///
/// ```no_run
/// use std::sync::Arc;
/// use plugin_host::PluginManager;
/// use plugin_http::{HttpOptions, ServeOptions};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let manager = Arc::new(PluginManager::new("plugins"));
/// manager.load_plugins()?;
/// let app = plugin_http::router(manager, HttpOptions::new());
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
/// let shutdown = async {
///     let _ = tokio::signal::ctrl_c().await;
/// };
/// plugin_http::serve(listener, app, ServeOptions::new(), shutdown).await?;
/// # Ok(())
/// # }
/// ```
pub async fn serve(
    listener: TcpListener,
    app: Router,
    options: ServeOptions,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<Served> {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(options.header_timeout)
        .keep_alive(true);
    let http = Arc::new(http);
    let slots = Arc::new(Semaphore::new(options.max_connections));
    let busy_writers = Arc::new(Semaphore::new((options.max_connections / 2).max(1)));
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    let service = TowerToHyperService::new(app);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _peer)) => stream,
                    Err(err) => {
                        // Out of descriptors (or memory): wait for connections to close
                        // rather than spin on the error.
                        tracing::warn!("cannot accept a connection: {err}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                match slots.clone().try_acquire_owned() {
                    Ok(slot) => {
                        let _ = stream.set_nodelay(true);
                        let connection = graceful.watch(http.serve_connection(
                            TokioIo::new(Lingering::new(stream)),
                            service.clone(),
                        ));
                        connections.spawn(async move {
                            let _ = connection.await;
                            drop(slot);
                        });
                    }
                    Err(_) => match busy_writers.clone().try_acquire_owned() {
                        Ok(writer) => {
                            connections.spawn(async move {
                                answer_busy(stream).await;
                                drop(writer);
                            });
                        }
                        Err(_) => drop(stream),
                    },
                }
            }
        }
    }
    drop(listener);
    let grace = tokio::time::timeout(options.shutdown_grace, async {
        graceful.shutdown().await;
        while connections.join_next().await.is_some() {}
    })
    .await;
    while connections.try_join_next().is_some() {}
    let dropped = if grace.is_err() { connections.len() } else { 0 };
    connections.abort_all();
    if dropped > 0 {
        tracing::warn!(
            connections = dropped,
            grace = ?options.shutdown_grace,
            "connections still open after the shutdown grace were dropped"
        );
    }
    Ok(Served {
        dropped_connections: dropped,
    })
}

/// Answers 503 to a connection beyond the cap, and closes it after a short linger.
async fn answer_busy(mut stream: TcpStream) {
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         retry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{BUSY}",
        BUSY.len()
    );
    let _ = tokio::time::timeout(BUSY_LINGER, async {
        stream.write_all(response.as_bytes()).await?;
        stream.shutdown().await?;
        let mut scratch = [0u8; 4096];
        while stream.read(&mut scratch).await? > 0 {}
        Ok::<(), std::io::Error>(())
    })
    .await;
}

/// How long a closing connection reads and drops what its client still sends.
const LINGER: Duration = Duration::from_secs(1);

/// A connection whose shutdown is a lingering close (module docs).
struct Lingering {
    stream: TcpStream,
    /// Set once the write side is shut down: until when to read.
    linger: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Lingering {
    fn new(stream: TcpStream) -> Lingering {
        Lingering {
            stream,
            linger: None,
        }
    }
}

impl AsyncRead for Lingering {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Lingering {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if this.linger.is_none() {
            std::task::ready!(Pin::new(&mut this.stream).poll_shutdown(cx))?;
            this.linger = Some(Box::pin(tokio::time::sleep(LINGER)));
        }
        let Some(deadline) = &mut this.linger else {
            return Poll::Ready(Ok(()));
        };
        let mut scratch = [0u8; 8192];
        loop {
            if deadline.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Ok(()));
            }
            let mut buf = ReadBuf::new(&mut scratch);
            match Pin::new(&mut this.stream).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) if buf.filled().is_empty() => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(_)) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

//! A small HTTP/1.1 server for the tests, std only, on 127.0.0.1: serves a fixed route table.
//!
//! One request per connection (`Connection: close`), one thread per connection. Dropping the
//! [`Server`] releases stalled connections and joins every thread.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Longest a stalled connection is held if the server is never dropped.
const STALL_BOUND: Duration = Duration::from_secs(60);
/// Longest wait for a client's request headers.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

/// What the server answers on a path.
#[derive(Debug, Clone)]
pub(crate) enum Response {
    /// 200 with these bytes and their `Content-Length`.
    Bytes(Vec<u8>),
    /// 200 with these bytes, no `Content-Length`: the body ends when the connection closes.
    Unsized(Vec<u8>),
    /// This status with a short text body (for 404, 500...).
    Status(u16),
    /// 302 to this location (a path on this server, or a full URL).
    Redirect(String),
    /// 200 declaring these bytes' length but sending only the first half, then closing.
    Truncated(Vec<u8>),
    /// Reads the request and never answers, until the server is dropped.
    Stall,
}

/// A running server; stops when dropped.
pub(crate) struct Server {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

struct Shared {
    routes: HashMap<String, Response>,
    /// Set when the server is dropped; stalled connections wait on `wake` for it.
    stopped: Mutex<bool>,
    wake: Condvar,
    /// The paths requested, in order.
    requests: Mutex<Vec<String>>,
    connections: Mutex<Vec<JoinHandle<()>>>,
}

impl Server {
    /// Starts serving `routes` (path → answer) on `127.0.0.1`, on a free port. Any other path
    /// gets a 404.
    pub(crate) fn start(routes: Vec<(&str, Response)>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        let shared = Arc::new(Shared {
            routes: routes
                .into_iter()
                .map(|(path, response)| (path.to_owned(), response))
                .collect(),
            stopped: Mutex::new(false),
            wake: Condvar::new(),
            requests: Mutex::new(Vec::new()),
            connections: Mutex::new(Vec::new()),
        });
        let accept_shared = Arc::clone(&shared);
        let accept = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if *accept_shared.stopped.lock().unwrap() {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let conn_shared = Arc::clone(&accept_shared);
                let handle = std::thread::spawn(move || serve(stream, &conn_shared));
                accept_shared.connections.lock().unwrap().push(handle);
            }
        });
        Server {
            addr,
            shared,
            accept: Some(accept),
        }
    }

    /// The full URL of `path` (which starts with `/`) on this server.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The paths requested so far, in order.
    pub(crate) fn requests(&self) -> Vec<String> {
        self.shared.requests.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        *self.shared.stopped.lock().unwrap() = true;
        self.shared.wake.notify_all();
        // Wake the accept loop, which then sees `stopped` and ends.
        let _ = TcpStream::connect(self.addr);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
        let connections = std::mem::take(&mut *self.shared.connections.lock().unwrap());
        for connection in connections {
            let _ = connection.join();
        }
    }
}

fn serve(mut stream: TcpStream, shared: &Shared) {
    let Some(path) = read_request(&mut stream) else {
        return;
    };
    shared.requests.lock().unwrap().push(path.clone());
    let response = shared.routes.get(&path).cloned();
    let _ = match response {
        Some(Response::Bytes(body)) => answer(&mut stream, 200, &[], Some(body.len()), &body),
        Some(Response::Unsized(body)) => answer(&mut stream, 200, &[], None, &body),
        Some(Response::Status(status)) => {
            let body = format!("status {status}\n");
            answer(&mut stream, status, &[], Some(body.len()), body.as_bytes())
        }
        Some(Response::Redirect(location)) => {
            answer(&mut stream, 302, &[("Location", &location)], Some(0), b"")
        }
        Some(Response::Truncated(body)) => answer(
            &mut stream,
            200,
            &[],
            Some(body.len()),
            &body[..body.len() / 2],
        ),
        Some(Response::Stall) => {
            let stopped = shared.stopped.lock().unwrap();
            let _ = shared
                .wake
                .wait_timeout_while(stopped, STALL_BOUND, |stopped| !*stopped);
            Ok(())
        }
        None => answer(&mut stream, 404, &[], Some(10), b"not found\n"),
    };
    let _ = stream.shutdown(Shutdown::Both);
}

/// Reads the request head and returns the path of its request line.
fn read_request(stream: &mut TcpStream) -> Option<String> {
    stream.set_read_timeout(Some(REQUEST_TIMEOUT)).ok()?;
    let mut head = Vec::new();
    let mut buf = [0_u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).ok()?;
        if n == 0 || head.len() > 16 << 10 {
            return None;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&head);
    let mut request_line = head.lines().next()?.split(' ');
    let (_method, path) = (request_line.next()?, request_line.next()?);
    Some(path.to_owned())
}

/// Writes a status line, headers and `body`; `length` is the `Content-Length` declared.
fn answer(
    stream: &mut TcpStream,
    status: u16,
    headers: &[(&str, &str)],
    length: Option<usize>,
    body: &[u8],
) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {status} {}\r\nConnection: close\r\n",
        reason(status)
    );
    if let Some(length) = length {
        head.push_str(&format!("Content-Length: {length}\r\n"));
    }
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    stream.flush()
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        302 => "Found",
        404 => "Not Found",
        500 => "Internal Server Error",
        _ => "Status",
    }
}

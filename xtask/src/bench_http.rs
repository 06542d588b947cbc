//! `cargo xtask bench-http` (also the last step of `bench`): requests per second and p99
//! latency through a plugin route, against a native axum handler answering the same bytes,
//! measured in one run on loopback with `wrk`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context as _, Result};

use crate::{build_samples, cargo, verdict};

/// How long each `wrk` run lasts, and its load: one thread and 32 connections leave the
/// other core to the server.
const WRK_ARGS: [&str; 6] = ["-t1", "-c32", "-d10s", "--latency", "--timeout", "5s"];

/// Kills the server when the bench ends, however it ends.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One `wrk` measurement.
struct Measured {
    requests_per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
}

pub(crate) fn bench_http() -> Result<()> {
    if Command::new("wrk").arg("--version").output().is_err() {
        bail!("wrk is not installed; install it (Debian: `apt-get install wrk`) and run again");
    }
    let plugins = std::env::temp_dir().join(format!("plugin-bench-http-{}", std::process::id()));
    build_samples(true, &plugins)?;
    let server_bin = build_example()?;
    let mut child = Command::new(&server_bin)
        .arg(&plugins)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("cannot start {}", server_bin.display()))?;
    let stdout = child.stdout.take().context("the server's stdout")?;
    let server = Server(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let addr = line
        .trim()
        .strip_prefix("listening on http://")
        .with_context(|| format!("the server printed {line:?}"))?
        .to_owned();

    let plugin_path = "/api/plugin/sample/7";
    let native_path = "/native/sample/7";
    let plugin_body = get(&addr, plugin_path)?;
    let native_body = get(&addr, native_path)?;
    if plugin_body != native_body {
        bail!(
            "the baseline does not answer the same bytes: plugin {plugin_body:?}, native \
             {native_body:?}"
        );
    }
    // Native first and last, so a machine that warms up or slows down shows in the spread.
    let native_a = wrk(&addr, native_path)?;
    let plugin = wrk(&addr, plugin_path)?;
    let native_b = wrk(&addr, native_path)?;
    drop(server);
    let _ = std::fs::remove_dir_all(&plugins);

    let native_rps = (native_a.requests_per_second + native_b.requests_per_second) / 2.0;
    let ratio = plugin.requests_per_second / native_rps;
    println!(
        "\nHTTP on loopback, wrk {} ({} bytes a response)",
        WRK_ARGS.join(" "),
        plugin_body.len()
    );
    for (name, m) in [
        ("native axum handler (before)", &native_a),
        ("plugin route, http-echo", &plugin),
        ("native axum handler (after)", &native_b),
    ] {
        println!(
            "{name:<32} {:>10.0} req/s   p50 {:>7.3} ms   p99 {:>7.3} ms",
            m.requests_per_second, m.p50_ms, m.p99_ms
        );
    }
    println!(
        "{:<32} {:>10.2}x  of native  >= 0.8x -> {}",
        "plugin route req/s",
        ratio,
        verdict(ratio >= 0.8)
    );
    Ok(())
}

/// Builds the bench server in release mode and returns its path, as cargo reports it.
fn build_example() -> Result<PathBuf> {
    let output = cargo()
        .args([
            "build",
            "--quiet",
            "--release",
            "-p",
            "plugin-http",
            "--example",
            "bench_server",
            "--message-format=json",
        ])
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run cargo build")?;
    if !output.status.success() {
        bail!("building the bench server failed: {}", output.status);
    }
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if message["target"]["name"] == "bench_server" {
            if let Some(path) = message["executable"].as_str() {
                return Ok(PathBuf::from(path));
            }
        }
    }
    bail!("cargo reported no bench_server executable")
}

/// The body of `GET path`, over a plain HTTP/1.0 connection.
fn get(addr: &str, path: &str) -> Result<Vec<u8>> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no end of headers")?;
    let head = String::from_utf8_lossy(&response[..split]);
    if !head.starts_with("HTTP/1.0 200") && !head.starts_with("HTTP/1.1 200") {
        bail!(
            "GET {path} answered {}",
            head.lines().next().unwrap_or_default()
        );
    }
    Ok(response[split + 4..].to_vec())
}

/// Runs wrk against `path` and reads requests per second and the latency percentiles.
fn wrk(addr: &str, path: &str) -> Result<Measured> {
    let output = Command::new("wrk")
        .args(WRK_ARGS)
        .arg(format!("http://{addr}{path}"))
        .output()
        .context("cannot run wrk")?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!("wrk failed: {text}");
    }
    if text.contains("Non-2xx") {
        bail!("wrk saw error responses from {path}:\n{text}");
    }
    let field = |prefix: &str| -> Result<&str> {
        text.lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix(prefix))
            .map(str::trim)
            .with_context(|| format!("no `{prefix}` in wrk's output:\n{text}"))
    };
    Ok(Measured {
        requests_per_second: field("Requests/sec:")?.parse()?,
        p50_ms: millis(field("50%")?)?,
        p99_ms: millis(field("99%")?)?,
    })
}

/// wrk's latency (`812.00us`, `1.20ms`, `2.01s`) in milliseconds.
fn millis(text: &str) -> Result<f64> {
    let (number, scale) = if let Some(n) = text.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = text.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1000.0)
    } else {
        bail!("unexpected latency `{text}`")
    };
    Ok(number.parse::<f64>()? * scale)
}

#[cfg(test)]
mod tests {
    use super::millis;

    #[test]
    fn wrk_latencies_read_in_milliseconds() {
        let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
        assert!(close(millis("812.00us").unwrap(), 0.812));
        assert!(close(millis("1.20ms").unwrap(), 1.2));
        assert!(close(millis("2.01s").unwrap(), 2010.0));
        assert!(millis("3m").is_err());
    }
}

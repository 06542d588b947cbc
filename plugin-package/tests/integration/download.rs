//! Tests of the download area.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use plugin_package::download::{download, download_if_present, DownloadError, DownloadOptions};

use crate::server::{Response, Server};

/// Distinct bytes, so a reordered or shifted body would not compare equal.
fn body(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

fn options() -> DownloadOptions {
    DownloadOptions {
        timeout: Duration::from_secs(30),
        ..DownloadOptions::default()
    }
}

#[test]
fn a_good_download_returns_the_bytes_and_reports_progress() {
    // Several 64 KiB chunks, and a partial one.
    let expected = body(200_000);
    let server = Server::start(vec![("/hello.plg", Response::Bytes(expected.clone()))]);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    let options = DownloadOptions {
        progress: Some(Arc::new(move |so_far, total| {
            sink.lock().unwrap().push((so_far, total))
        })),
        ..options()
    };

    let data = download(&server.url("/hello.plg"), &options).unwrap();

    assert_eq!(data, expected);
    let seen = seen.lock().unwrap();
    let total = expected.len() as u64;
    assert!(seen.len() >= 3, "progress called only {} times", seen.len());
    assert_eq!(seen.first(), Some(&(0, Some(total))));
    assert_eq!(seen.last(), Some(&(total, Some(total))));
    assert!(seen.windows(2).all(|w| w[0].0 <= w[1].0), "{seen:?}");
    assert!(seen.iter().all(|&(n, t)| n <= total && t == Some(total)));
}

#[test]
fn a_body_of_exactly_the_limit_is_accepted() {
    let expected = body(1000);
    let server = Server::start(vec![
        ("/sized", Response::Bytes(expected.clone())),
        ("/unsized", Response::Unsized(expected.clone())),
    ]);
    let options = DownloadOptions {
        max_bytes: 1000,
        ..options()
    };
    assert_eq!(download(&server.url("/sized"), &options).unwrap(), expected);
    assert_eq!(
        download(&server.url("/unsized"), &options).unwrap(),
        expected
    );
}

#[test]
fn not_found_is_an_error_and_absent_for_download_if_present() {
    let server = Server::start(vec![("/present", Response::Bytes(b"sig".to_vec()))]);
    let url = server.url("/missing.plg.minisig");

    let err = download(&url, &options()).unwrap_err();
    assert!(
        matches!(&err, DownloadError::Status { status: 404, url: u, .. } if *u == url),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(message.contains(&url), "{message}");
    assert!(message.contains("404 Not Found"), "{message}");
    assert!(message.contains("check the URL"), "{message}");

    assert!(download_if_present(&url, &options()).unwrap().is_none());
    assert_eq!(
        download_if_present(&server.url("/present"), &options()).unwrap(),
        Some(b"sig".to_vec())
    );
}

#[test]
fn a_server_error_is_an_error_even_for_download_if_present() {
    let server = Server::start(vec![("/broken", Response::Status(500))]);
    let err = download_if_present(&server.url("/broken"), &options()).unwrap_err();
    assert!(
        matches!(err, DownloadError::Status { status: 500, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("500"), "{err}");
}

#[test]
fn a_truncated_body_is_an_error() {
    let server = Server::start(vec![("/cut.plg", Response::Truncated(body(10_000)))]);
    let url = server.url("/cut.plg");

    let err = download(&url, &options()).unwrap_err();

    match &err {
        DownloadError::Truncated {
            got,
            expected,
            url: u,
            ..
        } => {
            assert_eq!(*expected, Some(10_000));
            assert_eq!(*got, 5_000);
            assert_eq!(*u, url);
        }
        other => panic!("expected Truncated, got {other:?}"),
    }
    let message = err.to_string();
    assert!(
        message.contains("the download ended early: got 5000 of 10000 bytes"),
        "{message}"
    );
}

#[test]
fn an_oversize_body_is_refused_with_or_without_content_length() {
    let server = Server::start(vec![
        ("/sized", Response::Bytes(body(300_000))),
        ("/unsized", Response::Unsized(body(300_000))),
    ]);
    let seen = Arc::new(Mutex::new(0_u64));
    let sink = Arc::clone(&seen);
    let options = DownloadOptions {
        max_bytes: 100_000,
        progress: Some(Arc::new(move |so_far, _| {
            let mut most = sink.lock().unwrap();
            *most = (*most).max(so_far);
        })),
        ..options()
    };

    for (path, declared) in [("/sized", Some(300_000)), ("/unsized", None)] {
        let url = server.url(path);
        let err = download(&url, &options).unwrap_err();
        match &err {
            DownloadError::TooLarge {
                url: u,
                limit,
                declared: d,
            } => {
                assert_eq!(*u, url);
                assert_eq!(*limit, 100_000);
                assert_eq!(*d, declared, "{path}");
            }
            other => panic!("{path}: expected TooLarge, got {other:?}"),
        }
        let message = err.to_string();
        assert!(message.contains("100000 bytes"), "{message}");
        assert!(message.contains("max_bytes"), "{message}");
        assert!(message.contains(&url), "{message}");
    }
    // Nothing past the limit was ever handed on.
    assert!(*seen.lock().unwrap() <= 100_000);
}

#[test]
fn a_redirect_is_followed() {
    let expected = body(5000);
    let server = Server::start(vec![
        (
            "/latest.plg",
            Response::Redirect("/v2/hello.plg".to_owned()),
        ),
        ("/v2/hello.plg", Response::Bytes(expected.clone())),
    ]);

    let data = download(&server.url("/latest.plg"), &options()).unwrap();

    assert_eq!(data, expected);
    assert_eq!(server.requests(), ["/latest.plg", "/v2/hello.plg"]);
}

#[test]
fn a_status_after_a_redirect_names_where_it_led() {
    let server = Server::start(vec![(
        "/latest.plg",
        Response::Redirect("/gone.plg".to_owned()),
    )]);
    let url = server.url("/latest.plg");

    let err = download(&url, &options()).unwrap_err();

    let gone = server.url("/gone.plg");
    assert!(
        matches!(&err, DownloadError::Status { status: 404, url: u, redirected_to: Some(to) }
            if *u == url && *to == gone),
        "{err:?}"
    );
    assert!(err.to_string().contains(&gone), "{err}");
}

#[test]
fn no_redirect_is_followed_with_a_limit_of_zero() {
    let server = Server::start(vec![
        (
            "/latest.plg",
            Response::Redirect("/v2/hello.plg".to_owned()),
        ),
        ("/v2/hello.plg", Response::Bytes(body(10))),
    ]);
    let options = DownloadOptions {
        max_redirects: 0,
        ..options()
    };
    let err = download(&server.url("/latest.plg"), &options).unwrap_err();
    assert!(
        matches!(err, DownloadError::TooManyRedirects { limit: 0, .. }),
        "{err:?}"
    );
    assert_eq!(server.requests(), ["/latest.plg"]);
}

#[test]
fn a_redirect_loop_is_an_error_naming_the_url_and_the_limit() {
    let server = Server::start(vec![
        ("/a", Response::Redirect("/b".to_owned())),
        ("/b", Response::Redirect("/a".to_owned())),
    ]);
    let url = server.url("/a");
    let options = DownloadOptions {
        max_redirects: 3,
        ..options()
    };

    let err = download(&url, &options).unwrap_err();

    assert!(
        matches!(&err, DownloadError::TooManyRedirects { limit: 3, url: u } if *u == url),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(message.contains(&url), "{message}");
    assert!(message.contains("more than 3 redirects"), "{message}");
    // The first request and three redirects followed, then refused.
    assert_eq!(server.requests(), ["/a", "/b", "/a", "/b"]);
}

#[test]
fn a_stalled_server_times_out() {
    let server = Server::start(vec![("/slow.plg", Response::Stall)]);
    let url = server.url("/slow.plg");
    let options = DownloadOptions {
        timeout: Duration::from_secs(1),
        ..DownloadOptions::default()
    };

    let start = Instant::now();
    let err = download(&url, &options).unwrap_err();
    let elapsed = start.elapsed();

    assert!(elapsed < Duration::from_secs(10), "took {elapsed:?}");
    assert!(
        matches!(&err, DownloadError::Timeout { timeout, url: u } if *timeout == options.timeout && *u == url),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(message.contains("timed out after 1s"), "{message}");
    assert!(message.contains(&url), "{message}");
}

#[test]
fn a_non_http_url_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hello.plg");
    std::fs::write(&file, b"not fetched").unwrap();
    let file_url = format!("file://{}", file.display());

    for url in [
        file_url.as_str(),
        "ftp://127.0.0.1/hello.plg",
        "127.0.0.1/hello.plg",
    ] {
        let err = download(url, &options()).unwrap_err();
        assert!(
            matches!(&err, DownloadError::UnsupportedScheme { url: u } if u == url),
            "{url}: {err:?}"
        );
        let message = err.to_string();
        assert!(message.contains("only http:// and https://"), "{message}");
    }
}

#[test]
fn a_refused_connection_names_the_url() {
    // A port that was free a moment ago: nothing listens there any more.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/hello.plg");
    let err = download(&url, &options()).unwrap_err();
    assert!(matches!(err, DownloadError::Request { .. }), "{err:?}");
    assert!(err.to_string().contains(&url), "{err}");
}

//! Reload and shutdown: atomic swaps under load, sockets kept, in-flight requests on their snapshot, bad configs
//! refused, file watching, draining.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use turnpike_gateway::{ReloadError, StartOptions};
use turnpike_test::{Client, MockReply, MockUpstream, TestGateway, eventually};

fn config(listen: &str, upstream: SocketAddr, extra: &str) -> String {
    format!(
        r#"
server:
  shutdown_timeout: 2s
listeners:
  - name: public
    address: {listen}
upstreams:
  app:
    endpoints: ["{upstream}"]
routes:
  - id: api
    match: {{ prefix: /api }}
    upstream: app
{extra}"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_reloads_under_load_fail_no_request() {
    let a = MockUpstream::echo().await;
    let b = MockUpstream::echo().await;
    let gw = TestGateway::start(&config("127.0.0.1:0", a.addr(), "")).await;
    let addr = gw.addr().to_string();
    // Both configs keep the listener's configured address (`127.0.0.1:0`), so its socket stays.
    let config_a = config("127.0.0.1:0", a.addr(), "");
    let config_b = config("127.0.0.1:0", b.addr(), "  - id: extra\n    match: { path: /extra }\n    upstream: app\n");
    let invalid = config("127.0.0.1:0", b.addr(), "  - id: broken\n    upstream: nowhere\n");

    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut clients = Vec::new();
    for i in 0..6 {
        let (stop, ok, failures, addr) = (stop.clone(), ok.clone(), failures.clone(), addr.clone());
        // Half the clients keep their connection alive across reloads, half reconnect for every request.
        let client = if i % 2 == 0 { Client::h1() } else { Client::h2() };
        clients.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let url = format!("http://{addr}/api/item");
                let req = http::Request::get(&url).body(turnpike_test::client::empty()).expect("request");
                match client.try_send(req).await {
                    Ok(reply) if reply.status == 200 => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(reply) => failures.lock().unwrap().push(format!("status {}: {}", reply.status, reply.text())),
                    Err(err) => failures.lock().unwrap().push(format!("error: {err}")),
                }
            }
        }));
    }

    for i in 0..50 {
        let before = ok.load(Ordering::Relaxed);
        // Let traffic flow between reloads (a condition, not a sleep).
        assert!(eventually(Duration::from_secs(5), || ok.load(Ordering::Relaxed) >= before + 20).await);
        let next = if i % 2 == 0 { &config_b } else { &config_a };
        gw.reload(next).unwrap_or_else(|e| panic!("reload {i} failed: {e}"));
        if i == 25 {
            let err = gw.reload(&invalid).expect_err("an invalid config must be refused");
            assert!(matches!(err, ReloadError::Config(_)), "{err}");
        }
    }
    let before = ok.load(Ordering::Relaxed);
    assert!(eventually(Duration::from_secs(5), || ok.load(Ordering::Relaxed) >= before + 20).await);
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }

    let failures = failures.lock().unwrap().clone();
    assert!(failures.is_empty(), "{} failed requests, e.g. {:?}", failures.len(), &failures[..failures.len().min(3)]);
    assert!(ok.load(Ordering::Relaxed) > 1000, "only {} requests", ok.load(Ordering::Relaxed));
    assert!(a.count() > 0 && b.count() > 0, "both configurations served traffic");
    let status = gw.handle.reload_status();
    assert_eq!((status.succeeded, status.failed), (50, 1));
    assert_eq!(gw.handle.generation(), 51);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_keeps_listener_sockets_and_open_connections() {
    let a = MockUpstream::echo().await;
    let b = MockUpstream::echo().await;
    let gw = TestGateway::start(&config("127.0.0.1:0", a.addr(), "")).await;
    let addr = gw.addr();

    // One keep-alive connection opened before the reload...
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    let first = raw_get(&mut conn, "/api/one").await;
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");

    gw.reload(&config("127.0.0.1:0", b.addr(), "")).unwrap();
    // ...keeps working after it, on the same socket, and its next request sees the new configuration.
    let second = raw_get(&mut conn, "/api/two").await;
    assert!(second.starts_with("HTTP/1.1 200"), "{second}");
    assert_eq!(gw.addr(), addr, "the listener kept its socket (same port)");
    assert_eq!(b.count(), 1);

    // A listener added by a reload is bound; removed by the next, it is closed.
    let with_admin =
        format!("{}  - id: b\n    match: {{ prefix: /b }}\n    upstream: app\n", config("127.0.0.1:0", b.addr(), ""))
            .replace("listeners:\n", "listeners:\n  - name: second\n    address: 127.0.0.1:0\n");
    gw.reload(&with_admin).unwrap();
    let second_addr = gw.addr_of("second");
    assert_eq!(Client::h1().get(&format!("http://{second_addr}/api/x")).await.status, 200);
    assert_eq!(gw.addr(), addr);
    gw.reload(&config("127.0.0.1:0", b.addr(), "")).unwrap();
    assert!(
        eventually(Duration::from_secs(2), || std::net::TcpStream::connect(second_addr).is_err()).await,
        "the removed listener's socket is closed"
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_request_finishes_on_the_snapshot_it_started_with() {
    let slow = MockUpstream::start(|_| MockReply::text(200, "old").delay(Duration::from_millis(300))).await;
    let fresh = MockUpstream::start(|_| MockReply::text(200, "new")).await;
    let gw = TestGateway::start(&config("127.0.0.1:0", slow.addr(), "")).await;
    let url = gw.url("/api/x");
    let pending = tokio::spawn({
        let url = url.clone();
        async move { Client::h1().get(&url).await }
    });
    // Wait until the slow upstream really has the request before swapping.
    assert!(eventually(Duration::from_secs(2), || slow.requests().len() == 1).await);
    gw.reload(&config("127.0.0.1:0", fresh.addr(), "")).unwrap();
    assert_eq!(Client::h1().get(&url).await.text(), "new");
    let old = pending.await.unwrap();
    assert_eq!((old.status.as_u16(), old.text().as_str()), (200, "old"));
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_reload_is_refused_and_the_old_config_keeps_serving() {
    let a = MockUpstream::echo().await;
    let gw = TestGateway::start(&config("127.0.0.1:0", a.addr(), "")).await;
    let broken = "listeners:\n  - name: public\n    address: 127.0.0.1:0\n    bogus: 1\nroutes:\n  - id: r\n    upstream: missing\n";
    let Err(ReloadError::Config(report)) = gw.reload(broken) else { panic!("must be refused") };
    assert!(report.len() >= 2, "every error is reported: {report}");
    let text = report.to_string();
    assert!(text.contains("unknown field `bogus`") && text.contains("unknown upstream `missing`"), "{text}");
    let status = gw.handle.reload_status();
    assert_eq!((status.generation, status.failed), (1, 1));
    assert!(status.last_error.is_some());
    assert_eq!(Client::h1().get(&gw.url("/api/still")).await.status, 200);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_that_cannot_bind_changes_nothing() {
    let a = MockUpstream::echo().await;
    let b = MockUpstream::echo().await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let gw = TestGateway::start(&config("127.0.0.1:0", a.addr(), "")).await;
    let clash = config("127.0.0.1:0", b.addr(), "").replace(
        "listeners:\n",
        &format!("listeners:\n  - name: clash\n    address: {}\n", taken.local_addr().unwrap()),
    );
    let err = gw.reload(&clash).expect_err("address in use");
    assert!(matches!(err, ReloadError::Bind(_)), "{err}");
    assert_eq!(gw.handle.generation(), 1);
    Client::h1().get(&gw.url("/api/x")).await;
    assert_eq!((a.count(), b.count()), (1, 0), "the old snapshot still routes");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_keeps_pooled_upstream_connections() {
    let a = MockUpstream::echo().await;
    let gw = TestGateway::start(&config("127.0.0.1:0", a.addr(), "")).await;
    let client = Client::h1();
    for _ in 0..5 {
        client.get(&gw.url("/api/x")).await;
    }
    gw.reload(&config("127.0.0.1:0", a.addr(), "  - id: more\n    match: { path: /more }\n    upstream: app\n"))
        .unwrap();
    for _ in 0..5 {
        client.get(&gw.url("/api/x")).await;
    }
    assert_eq!(a.count(), 10);
    assert_eq!(a.connections(), 1, "the upstream connection pool survived the reload");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_file_change_triggers_a_reload() {
    let a = MockUpstream::start(|_| MockReply::text(200, "a")).await;
    let b = MockUpstream::start(|_| MockReply::text(200, "b")).await;
    let dir = std::env::temp_dir().join(format!("turnpike-watch-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("gateway.yaml");
    std::fs::write(&file, config("127.0.0.1:0", a.addr(), "")).unwrap();
    let mut options = StartOptions::file(&file);
    options.workers = Some(1);
    options.access_log = turnpike_gateway::AccessLogSink::Writer(Box::new(|| Box::new(std::io::sink())));
    let handle = turnpike_gateway::GatewayHandle::start(options).await.unwrap();
    let url = format!("http://{}/api/x", handle.listener_addr("public").unwrap());
    assert_eq!(Client::h1().get(&url).await.text(), "a");

    // Editors often save by writing a new file and renaming it over the old one.
    let tmp = dir.join(".gateway.yaml.tmp");
    std::fs::write(&tmp, config("127.0.0.1:0", b.addr(), "")).unwrap();
    std::fs::rename(&tmp, &file).unwrap();
    assert!(eventually(Duration::from_secs(5), || handle.generation() == 2).await, "the change was picked up");
    assert_eq!(Client::h1().get(&url).await.text(), "b");

    // A broken edit is refused; the running config stays.
    std::fs::write(&file, "listeners: [").unwrap();
    assert!(eventually(Duration::from_secs(5), || handle.reload_status().failed == 1).await);
    assert_eq!(Client::h1().get(&url).await.text(), "b");
    handle.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_in_flight_requests_and_stops_accepting() {
    let slow = MockUpstream::start(|_| MockReply::text(200, "done").delay(Duration::from_millis(300))).await;
    let gw = TestGateway::start(&config("127.0.0.1:0", slow.addr(), "")).await;
    let addr = gw.addr();
    let pending = tokio::spawn({
        let url = gw.url("/api/x");
        async move { Client::h1().get(&url).await }
    });
    assert!(eventually(Duration::from_secs(2), || slow.requests().len() == 1).await);
    let cut = gw.shutdown().await;
    assert_eq!(cut, 0, "the in-flight request finished within the drain deadline");
    let reply = pending.await.unwrap();
    assert_eq!((reply.status.as_u16(), reply.text().as_str()), (200, "done"));
    assert!(std::net::TcpStream::connect(addr).is_err(), "no longer accepting");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_cuts_what_is_left_at_the_deadline() {
    let hang = MockUpstream::start(|_| MockReply::Hang).await;
    let gw = TestGateway::start(
        &config("127.0.0.1:0", hang.addr(), "").replace("shutdown_timeout: 2s", "shutdown_timeout: 200ms"),
    )
    .await;
    let pending = tokio::spawn({
        let url = gw.url("/api/x");
        async move {
            let req = http::Request::get(&url).body(turnpike_test::client::empty()).unwrap();
            Client::h1().try_send(req).await
        }
    });
    // The upstream has the request: it is in flight, not merely connected.
    assert!(eventually(Duration::from_secs(2), || hang.requests().len() == 1).await);
    let started = tokio::time::Instant::now();
    let cut = gw.shutdown().await;
    assert_eq!(cut, 1);
    assert!(started.elapsed() < Duration::from_secs(2), "shutdown waited only for the drain deadline");
    assert!(pending.await.unwrap().is_err(), "the hanging request was cut");
}

/// Sends `GET path` on an open keep-alive connection and returns the response text.
async fn raw_get(conn: &mut tokio::net::TcpStream, path: &str) -> String {
    conn.write_all(format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 16 * 1024];
    let mut text = String::new();
    loop {
        let n = conn.read(&mut buf).await.unwrap();
        assert!(n > 0, "connection closed: {text}");
        text.push_str(&String::from_utf8_lossy(&buf[..n]));
        if let Some(head_end) = text.find("\r\n\r\n") {
            let len = text[..head_end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap())
                })
                .unwrap_or(0);
            if text.len() >= head_end + 4 + len {
                return text;
            }
        }
    }
}

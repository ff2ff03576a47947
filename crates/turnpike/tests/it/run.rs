//! `turnpike run`: reload by SIGHUP and by `turnpike reload`, refused reloads, graceful drain on SIGTERM, logs.

use std::time::Duration;

use turnpike_test::{Client, MockReply, MockUpstream};

use turnpike_test::eventually;

use crate::process::{Gateway, TempDir, free_port, run, wait_listening};

fn config(port: u16, upstream: std::net::SocketAddr, slow: std::net::SocketAddr) -> String {
    format!(
        r#"
server:
  watch: false
  shutdown_timeout: 5s
listeners:
  - name: public
    address: 127.0.0.1:{port}
upstreams:
  app: {{ endpoints: ["{upstream}"] }}
  slow: {{ endpoints: ["{slow}"] }}
routes:
  - id: app
    match: {{ prefix: /api }}
    upstream: app
  - id: slow
    match: {{ prefix: /slow }}
    upstream: slow
"#
    )
}

async fn body(client: &Client, url: &str) -> String {
    client.get(url).await.text()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_on_sighup_and_control_socket_and_drains_on_sigterm() {
    let a = MockUpstream::start(|_| MockReply::text(200, "a")).await;
    let b = MockUpstream::start(|_| MockReply::text(200, "b")).await;
    let slow = MockUpstream::start(|_| MockReply::text(200, "slow done").delay(Duration::from_millis(700))).await;
    let dir = TempDir::new("run");
    let port = free_port();
    let file = dir.write("gateway.yaml", &config(port, a.addr(), slow.addr()));
    let socket = dir.path().join("control.sock");
    let mut gw = Gateway::spawn(
        &dir,
        &["run", "-c", file.to_str().unwrap(), "--workers", "2", "--control-socket", socket.to_str().unwrap()],
    );
    let addr = format!("127.0.0.1:{port}");
    assert!(wait_listening(&addr, Duration::from_secs(10)).await, "gateway did not start: {}", gw.output());
    let url = format!("http://{addr}/api/x");
    let client = Client::h1();
    assert_eq!(body(&client, &url).await, "a");

    // SIGHUP reloads the file.
    std::fs::write(&file, config(port, b.addr(), slow.addr())).unwrap();
    gw.signal("HUP");
    let mut seen = String::new();
    for _ in 0..250 {
        seen = body(&client, &url).await;
        if seen == "b" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(seen, "b", "SIGHUP reloaded the configuration");

    // `turnpike reload` reloads through the control socket and says how it went.
    std::fs::write(&file, config(port, a.addr(), slow.addr())).unwrap();
    let out = run(&["reload", "--control-socket", socket.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("reloaded: generation 3"));
    assert_eq!(body(&client, &url).await, "a");

    // A bad config is refused with its errors; the running one keeps serving.
    std::fs::write(&file, "listeners:\n  - name: public\n    address: nowhere\n").unwrap();
    let out = run(&["reload", "--control-socket", socket.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("gateway.yaml:") && err.contains("is not an `ip:port` address"), "{err}");
    assert_eq!(body(&client, &url).await, "a");

    // SIGTERM: the request in flight finishes, then the process exits 0.
    let pending = tokio::spawn({
        let url = format!("http://{addr}/slow");
        async move { Client::h1().get(&url).await }
    });
    assert!(eventually(Duration::from_secs(5), || slow.count() == 1).await);
    gw.signal("TERM");
    let reply = pending.await.unwrap();
    assert_eq!((reply.status.as_u16(), reply.text().as_str()), (200, "slow done"));
    assert_eq!(gw.wait(Duration::from_secs(10)), Some(0), "exit 0 after draining");
    assert!(std::net::TcpStream::connect(&addr).is_err());

    // Every stdout line is one JSON object: process logs and access-log records alike.
    let output = gw.output();
    let mut access = 0;
    for line in output.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        if v.get("http.response.status_code").is_some() {
            access += 1;
            assert!(v["request_id"].as_str().is_some_and(|id| id.len() == 36));
        }
    }
    assert!(access >= 5, "access log lines on stdout: {access}\n{output}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_finds_the_gateway_by_its_config_path() {
    let a = MockUpstream::start(|_| MockReply::text(200, "a")).await;
    let dir = TempDir::new("reload-by-path");
    let port = free_port();
    let file = dir.write("gateway.yaml", &config(port, a.addr(), a.addr()));
    let mut gw = Gateway::spawn(&dir, &["run", "-c", file.to_str().unwrap(), "--workers", "1"]);
    assert!(wait_listening(&format!("127.0.0.1:{port}"), Duration::from_secs(10)).await, "{}", gw.output());
    let out = run(&["reload", "-c", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    gw.signal("TERM");
    assert_eq!(gw.wait(Duration::from_secs(10)), Some(0));
    let out = run(&["reload", "-c", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3), "no gateway to reach any more");
}

#[test]
fn run_exits_1_on_an_invalid_config_and_3_when_the_port_is_taken() {
    let dir = TempDir::new("run-fail");
    let bad = dir.write("bad.yaml", "listeners: []\n");
    let out = run(&["run", "-c", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least one listener"));

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let good = dir.write("good.yaml", &format!("listeners:\n  - name: public\n    address: 127.0.0.1:{port}\n"));
    let out = run(&["run", "-c", good.to_str().unwrap(), "--no-control-socket"]);
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stdout));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_log_file_is_reopened_on_sigusr1() {
    let a = MockUpstream::start(|_| MockReply::text(200, "a")).await;
    let dir = TempDir::new("access-log-file");
    let port = free_port();
    let log = dir.path().join("access.log");
    let yaml = format!(
        "server: {{ watch: false, access_log: {{ path: \"{}\" }} }}\nlisteners: [{{ name: public, address: \
         127.0.0.1:{port} }}]\nupstreams: {{ app: {{ endpoints: [\"{}\"] }} }}\nroutes: [{{ id: app, match: {{ \
         prefix: /api }}, upstream: app }}]\n",
        log.display(),
        a.addr()
    );
    let file = dir.write("gateway.yaml", &yaml);
    let mut gw = Gateway::spawn(&dir, &["run", "-c", file.to_str().unwrap(), "--workers", "1", "--no-control-socket"]);
    let addr = format!("127.0.0.1:{port}");
    assert!(wait_listening(&addr, Duration::from_secs(10)).await, "{}", gw.output());
    let client = Client::h1();
    let lines = |path: &std::path::Path| std::fs::read_to_string(path).map(|s| s.lines().count()).unwrap_or(0);
    assert_eq!(body(&client, &format!("http://{addr}/api/one")).await, "a");
    assert!(eventually(Duration::from_secs(5), || lines(&log) == 1).await, "the line went to the file");
    assert!(!gw.output().contains("/api/one"), "and not to stdout");

    // logrotate: move the file away, then SIGUSR1; the next line starts the new file.
    let rotated = dir.path().join("access.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    gw.signal("USR1");
    assert!(eventually(Duration::from_secs(5), || gw.output().contains("SIGUSR1")).await, "{}", gw.output());
    assert_eq!(body(&client, &format!("http://{addr}/api/two")).await, "a");
    assert!(eventually(Duration::from_secs(5), || lines(&log) == 1).await, "a new file at the same path");
    assert!(std::fs::read_to_string(&log).unwrap().contains("/api/two"));
    assert_eq!(lines(&rotated), 1, "the rotated file keeps its line");
    gw.signal("TERM");
    assert_eq!(gw.wait(Duration::from_secs(10)), Some(0));
}

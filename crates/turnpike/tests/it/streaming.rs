//! Bodies stream both ways with bounded memory: 1 GiB up and 1 GiB down through the real process, whose resident
//! memory must grow by less than 50 MB.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use turnpike_test::mock::MockBody;
use turnpike_test::{Client, MockReply, MockUpstream};

use crate::process::{Gateway, TempDir, free_port, rss_of, wait_listening};

const GIB: u64 = 1 << 30;
const LIMIT: u64 = 50 * 1000 * 1000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_gib_up_and_down_with_bounded_gateway_memory() {
    let sink = MockUpstream::sink().await;
    let source = MockUpstream::start(|_| MockReply::Stream { bytes: GIB }).await;
    let dir = TempDir::new("streaming");
    let port = free_port();
    let file = dir.write(
        "gateway.yaml",
        &format!(
            r#"
server:
  access_log: {{ enabled: false }}
listeners:
  - name: public
    address: 127.0.0.1:{port}
upstreams:
  sink: {{ endpoints: ["{}"] }}
  source: {{ endpoints: ["{}"] }}
routes:
  - id: upload
    match: {{ path: /upload, methods: [POST] }}
    upstream: sink
    max_body_size: 2GiB
  - id: download
    match: {{ path: /download }}
    upstream: source
"#,
            sink.addr(),
            source.addr()
        ),
    );
    let gw = Gateway::spawn(&dir, &["run", "-c", file.to_str().unwrap(), "--workers", "2", "--no-control-socket"]);
    let addr = format!("127.0.0.1:{port}");
    assert!(wait_listening(&addr, Duration::from_secs(10)).await, "{}", gw.output());
    let client = Client::h1();
    // Warm up (pools, buffers, allocator) before taking the baseline.
    let small = http::Request::post(format!("http://{addr}/upload")).body(turnpike_test::client::full("x")).unwrap();
    assert_eq!(client.send(small).await.status, 200);
    let baseline = gw.rss();

    let peak = Arc::new(AtomicU64::new(baseline));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done, pid) = (peak.clone(), done.clone(), gw.pid());
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                let rss = rss_of(pid);
                peak.fetch_max(rss, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };

    // Upload 1 GiB (generated on the fly: the client holds one 64 KiB chunk).
    let body = MockBody::Generated { remaining: GIB, chunk: Bytes::from(vec![b'u'; 64 * 1024]) };
    let upload = http::Request::post(format!("http://{addr}/upload"))
        .header("content-length", GIB.to_string())
        .body(body.map_err(|never| match never {}).boxed())
        .unwrap();
    let reply = client.send(upload).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["received"], GIB);

    // Download 1 GiB, counting without keeping it.
    let req = http::Request::get(format!("http://{addr}/download")).body(turnpike_test::client::empty()).unwrap();
    let resp = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<turnpike_test::client::Body>()
        .request(req)
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let mut received = 0u64;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            received += data.len() as u64;
        }
    }
    assert_eq!(received, GIB);

    done.store(true, Ordering::Relaxed);
    sampler.await.unwrap();
    let growth = peak.load(Ordering::Relaxed).saturating_sub(baseline);
    eprintln!(
        "gateway RSS: baseline {} KiB, peak {} KiB, growth {} KiB",
        baseline / 1024,
        peak.load(Ordering::Relaxed) / 1024,
        growth / 1024
    );
    assert!(growth < LIMIT, "gateway RSS grew by {growth} bytes moving 2 GiB");
}

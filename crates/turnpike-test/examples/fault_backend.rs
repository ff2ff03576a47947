//! A benchmark backend that fails on cue: `200` with a 100-byte JSON body, except between `--fail-from` and
//! `--fail-until` (seconds after start), when it answers `503`. Loopback only; used by `bench/resilience.sh`.
//!
//!     cargo run --release -p turnpike-test --example fault_backend -- --listen 127.0.0.1:9003 \
//!         --fail-from 5 --fail-until 15

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Response, StatusCode, header};
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::time::Instant;

const OK: &[u8] =
    br#"{"id":47110,"service":"bench-backend","status":"ok","items":[1,2,3,4,5],"ts":"2024-01-01T00:00:00Z"}"#;
const FAIL: &[u8] = br#"{"status":"unavailable","reason":"fault injected by bench/resilience.sh"}"#;

struct Args {
    listen: SocketAddr,
    fail: (Duration, Duration),
}

fn args() -> Result<Args, String> {
    let mut out = Args { listen: SocketAddr::from(([127, 0, 0, 1], 9003)), fail: (Duration::MAX, Duration::MAX) };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let secs = || value.parse::<f64>().map(Duration::from_secs_f64).map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--listen" => out.listen = value.parse().map_err(|e| format!("--listen: {e}"))?,
            "--fail-from" => out.fail.0 = secs()?,
            "--fail-until" => out.fail.1 = secs()?,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if !out.listen.ip().is_loopback() {
        return Err("--listen must be a loopback address".into());
    }
    Ok(out)
}

fn main() {
    let args = match args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("fault_backend: {e}");
            std::process::exit(2);
        }
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    rt.block_on(serve(args));
}

async fn serve(args: Args) {
    let listener = TcpListener::bind(args.listen).await.expect("bind the listen address");
    let start = Instant::now();
    let fail = Arc::new(args.fail);
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let _ = stream.set_nodelay(true);
        let fail = fail.clone();
        tokio::spawn(async move {
            let service = service_fn(move |_req| {
                let elapsed = start.elapsed();
                let failing = elapsed >= fail.0 && elapsed < fail.1;
                let (status, body) =
                    if failing { (StatusCode::SERVICE_UNAVAILABLE, FAIL) } else { (StatusCode::OK, OK) };
                let mut resp = Response::new(Full::new(Bytes::from_static(body)));
                *resp.status_mut() = status;
                resp.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
                async move { Ok::<_, Infallible>(resp) }
            });
            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

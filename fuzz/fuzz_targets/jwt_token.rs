//! Fuzzes the JWT token parser: arbitrary bytes as a token, to `inspect` (decode without verifying) and through the
//! whole request path of a JWT policy with a static key (`presented`, then `verify`). Neither may panic, and no
//! input may verify: the fuzzer cannot produce a valid HMAC.
#![no_main]

use std::future::Future;
use std::path::Path;
use std::pin::pin;
use std::sync::OnceLock;
use std::task::{Context, Poll, Waker};

use libfuzzer_sys::fuzz_target;
use turnpike_policy::auth::jwt::{JwtAlgorithm, JwtAuth, JwtConfig, JwtStates, SecretString, inspect};
use turnpike_policy::auth::token::TokenSourceConfig;
use turnpike_policy::auth::{AuthInput, Presented};

fn policy() -> &'static JwtAuth {
    static POLICY: OnceLock<JwtAuth> = OnceLock::new();
    POLICY.get_or_init(|| {
        let mut config = JwtConfig::new(vec![JwtAlgorithm::Hs256, JwtAlgorithm::Hs384, JwtAlgorithm::Hs512]);
        config.secret = Some(SecretString::new("fuzzing-secret-fuzzing-secret-fuzzing-secret"));
        config.issuer = Some("https://idp.test".into());
        config.require_exp = false;
        config.from = vec![
            TokenSourceConfig::bearer(),
            TokenSourceConfig { cookie: Some("session".into()), ..TokenSourceConfig::default() },
            TokenSourceConfig { query: Some("access_token".into()), ..TokenSourceConfig::default() },
        ];
        JwtAuth::compile("fuzz", &config, &JwtStates::default(), Path::new(".")).expect("fuzz policy compiles")
    })
}

/// Runs a future that never waits on I/O (static keys: nothing to fetch) to completion on this thread.
fn run<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(parts) = inspect(&text) {
        assert!(parts.signing_input.len() < text.len());
    }
    // The first byte picks where the token travels: a header, a cookie or a query parameter.
    let Some((&place, token)) = data.split_first() else { return };
    let mut headers = http::HeaderMap::new();
    let mut uri: http::Uri = http::Uri::from_static("/orders");
    match place % 3 {
        0 => match http::HeaderValue::from_bytes(&[b"Bearer ", token].concat()) {
            Ok(value) => drop(headers.insert(http::header::AUTHORIZATION, value)),
            Err(_) => return,
        },
        1 => match http::HeaderValue::from_bytes(&[b"a=1; session=", token].concat()) {
            Ok(value) => drop(headers.insert(http::header::COOKIE, value)),
            Err(_) => return,
        },
        _ => match http::Uri::try_from([b"/orders?access_token=", token].concat()) {
            Ok(parsed) => uri = parsed,
            Err(_) => return,
        },
    }
    let auth = policy();
    let input = AuthInput { method: &http::Method::GET, uri: &uri, headers: &headers, client_cert: None };
    if let Presented::Present(found) = auth.presented(&input) {
        assert!(run(auth.verify(&found)).is_err(), "a fuzzed token verified");
        let (mut parts, ()) = http::Request::new(()).into_parts();
        parts.headers = headers.clone();
        parts.uri = uri.clone();
        auth.strip(&found, &mut parts);
        assert!(parts.headers.get(http::header::AUTHORIZATION).is_none());
    }
});

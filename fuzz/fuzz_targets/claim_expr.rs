//! Fuzzes the claim-rule parser of `authorize.rules`: arbitrary UTF-8 as a rule. Parsing may fail but never panic,
//! an error's column lies within the text, and a rule that parses is evaluated against a fixed request, with and
//! without an identity. Where `!(rule)` parses too, it must evaluate to the opposite.
#![no_main]

use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use turnpike_core::{Consumer, Identity, IdentitySource};
use turnpike_policy::authz::{AuthzInput, parse_rule};

struct Fixture {
    method: http::Method,
    uri: http::Uri,
    headers: http::HeaderMap,
    identity: Identity,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let claims = serde_json::json!({
            "sub": "u-1", "tenant": "t-42", "plan": "gold", "email": "ann@example.com", "age": 42, "ratio": 0.5,
            "big": 18_446_744_073_709_551_615_u64, "neg": -9_223_372_036_854_775_808_i64, "tiny": 1e-300,
            "admin": true, "nothing": null, "groups": ["eng", "ops", 3, null, [1], {"k": "v"}],
            "realm_access": {"roles": ["admin"]}, "a.b": "dotted", "a": {"b": "nested"}, "é": "ü"
        });
        let mut identity = Identity::new(IdentitySource::Jwt, Some(Arc::from("u-1")));
        identity.roles = vec![Arc::from("reader"), Arc::from("ops")];
        identity.scopes = vec![Arc::from("orders:read")];
        identity.plan = Some(Arc::from("gold"));
        identity.consumer = Some(Arc::new(Consumer {
            id: Arc::from("acme"),
            name: Arc::from("Acme"),
            plan: None,
            roles: Vec::new(),
            metadata: Default::default(),
        }));
        identity.claims = claims.as_object().cloned().map(Arc::new);
        let mut headers = http::HeaderMap::new();
        headers.insert("x-tenant", http::HeaderValue::from_static("t-42"));
        headers.append("x-tenant", http::HeaderValue::from_static("t-43"));
        headers.insert("x-num", http::HeaderValue::from_static("42"));
        headers.insert("x-bin", http::HeaderValue::from_bytes(b"\xff\xfe").expect("opaque header value"));
        Fixture {
            method: http::Method::GET,
            uri: http::Uri::from_static("/orders/7?q=a+b&e=%C3%A9&bad=%zz&bin=%FF&q=2&flag"),
            headers,
            identity,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let rule = match parse_rule(text) {
        Ok(rule) => rule,
        Err(e) => {
            assert!(e.column >= 1 && e.column <= text.chars().count() + 1, "column {} out of range", e.column);
            return;
        }
    };
    let f = fixture();
    let mut input = AuthzInput {
        method: &f.method,
        uri: &f.uri,
        headers: &f.headers,
        identity: Some(&f.identity),
        client_ip: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)),
        route: "fuzz",
    };
    let with_identity = rule.evaluate(&input);
    input.identity = None;
    let anonymous = rule.evaluate(&input);
    if let Ok(negated) = parse_rule(&format!("!({text})")) {
        assert_eq!(negated.evaluate(&input), !anonymous, "!(rule) is not the negation without identity");
        input.identity = Some(&f.identity);
        assert_eq!(negated.evaluate(&input), !with_identity, "!(rule) is not the negation");
    }
});

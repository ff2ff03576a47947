//! Trace context: W3C Trace Context (`traceparent`, `tracestate`) and B3, read from a request and written to the
//! requests the gateway sends upstream, so the gateway's spans join the caller's trace and the upstream's join
//! the gateway's.

use http::{HeaderMap, HeaderName, HeaderValue};

// Consts, as `http`'s own names are: each use is a value built in place, where a static's was a clone through
// its bytes' vtable, a call per request.
/// `traceparent` (W3C Trace Context).
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
/// `tracestate` (W3C Trace Context).
pub const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");
/// `b3` (B3 single header).
pub const B3: HeaderName = HeaderName::from_static("b3");
/// `x-b3-traceid` (B3 multiple headers).
pub const X_B3_TRACEID: HeaderName = HeaderName::from_static("x-b3-traceid");
/// `x-b3-spanid`.
pub const X_B3_SPANID: HeaderName = HeaderName::from_static("x-b3-spanid");
/// `x-b3-parentspanid`.
pub const X_B3_PARENTSPANID: HeaderName = HeaderName::from_static("x-b3-parentspanid");
/// `x-b3-sampled`.
pub const X_B3_SAMPLED: HeaderName = HeaderName::from_static("x-b3-sampled");
/// `x-b3-flags` (debug).
pub const X_B3_FLAGS: HeaderName = HeaderName::from_static("x-b3-flags");

/// Longest `tracestate` carried on (the W3C limit is 32 members; longer values are dropped, not cut).
const MAX_TRACESTATE: usize = 512;

/// A 16-byte trace id (never all zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceId(pub [u8; 16]);

/// An 8-byte span id (never all zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SpanId(pub [u8; 8]);

impl TraceId {
    /// A fresh random id.
    pub fn random() -> Self {
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&crate::request_id::random_u64().to_be_bytes());
        id[8..].copy_from_slice(&(crate::request_id::random_u64() | 1).to_be_bytes());
        Self(id)
    }

    /// Lower-case hex, 32 characters.
    pub fn to_hex(self) -> String {
        hex(&self.0)
    }

    /// Lower-case hex, 32 digits, on the stack.
    pub fn hex_digits(self) -> [u8; 32] {
        let mut out = [0; 32];
        write_hex(&mut out, &self.0);
        out
    }
}

impl SpanId {
    /// A fresh random id.
    pub fn random() -> Self {
        Self((crate::request_id::random_u64() | 1).to_be_bytes())
    }

    /// Lower-case hex, 16 characters.
    pub fn to_hex(self) -> String {
        hex(&self.0)
    }

    /// Lower-case hex, 16 digits, on the stack.
    pub fn hex_digits(self) -> [u8; 16] {
        let mut out = [0; 16];
        write_hex(&mut out, &self.0);
        out
    }
}

/// Which header formats are read and written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Propagation {
    /// W3C `traceparent` / `tracestate`.
    pub w3c: bool,
    /// B3 (`b3`, or `X-B3-*`; written as the single `b3` header).
    pub b3: bool,
}

/// A span's place in a trace, as it travels between services.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpanContext {
    /// The trace.
    pub trace_id: TraceId,
    /// The span.
    pub span_id: SpanId,
    /// Whether the trace is recorded.
    pub sampled: bool,
    /// Vendor data carried along unchanged (W3C `tracestate`).
    pub trace_state: Option<HeaderValue>,
}

impl SpanContext {
    /// Writes this context into a request going upstream, replacing the trace headers of the formats
    /// `propagation` speaks (headers of a format it does not speak pass through, like any other header).
    pub fn inject(&self, headers: &mut HeaderMap, propagation: Propagation) {
        self.write(headers, propagation, true);
    }

    /// [`inject`](Self::inject), with `stale`: whether the request may carry trace headers this context does not
    /// overwrite (a `tracestate` with no usable `traceparent`, `X-B3-*`). When it does not, nothing is removed.
    fn write(&self, headers: &mut HeaderMap, propagation: Propagation, stale: bool) {
        if propagation.b3 && stale {
            for name in [X_B3_TRACEID, X_B3_SPANID, X_B3_PARENTSPANID, X_B3_SAMPLED, X_B3_FLAGS] {
                headers.remove(name);
            }
        }
        if propagation.w3c {
            let value = traceparent(&self.trace_id.0, &self.span_id.0, self.sampled);
            if let Ok(value) = HeaderValue::from_bytes(&value) {
                headers.insert(TRACEPARENT, value);
            }
            match &self.trace_state {
                Some(state) => {
                    headers.insert(TRACESTATE, state.clone());
                }
                // A `tracestate` the caller sent without a usable `traceparent` belongs to no trace of ours.
                None if stale => {
                    headers.remove(TRACESTATE);
                }
                None => {}
            }
        }
        if propagation.b3 {
            let mut value = *b"00000000000000000000000000000000-0000000000000000-0";
            write_hex(&mut value[..32], &self.trace_id.0);
            write_hex(&mut value[33..49], &self.span_id.0);
            value[50] = if self.sampled { b'1' } else { b'0' };
            if let Ok(value) = HeaderValue::from_bytes(&value) {
                headers.insert(B3, value);
            }
        }
    }
}

/// What a request carries of the trace formats the gateway reads, found in one pass over its headers (a lookup
/// by name hashes the name; a pass over a request's few headers compares lengths).
#[derive(Debug, Clone, Default)]
pub struct Incoming {
    /// The caller's span, from the headers `propagation` reads (W3C first); `None` when absent or malformed (a
    /// malformed context starts a new trace, as the W3C spec asks).
    pub caller: Option<SpanContext>,
    /// Whether the request carries trace headers that writing a new context does not overwrite: a `tracestate`
    /// that is not the caller's (no usable `traceparent`, or over the size limit), `X-B3-*` when B3 is read.
    pub stale: bool,
}

impl Incoming {
    /// Reads the headers `propagation` speaks (W3C first).
    pub fn scan(headers: &HeaderMap, propagation: Propagation) -> Self {
        let (mut parent, mut state, mut single, mut multi) = (None, None, None, false);
        if propagation.w3c || propagation.b3 {
            for (name, value) in headers {
                // The first value of each, as `HeaderMap::get` reads it.
                if propagation.w3c && *name == TRACEPARENT {
                    parent = parent.or(Some(value));
                } else if propagation.w3c && *name == TRACESTATE {
                    state = state.or(Some(value));
                } else if propagation.b3 && *name == B3 {
                    single = single.or(Some(value));
                } else if propagation.b3 && name.as_str().starts_with("x-b3-") {
                    multi = true;
                }
            }
        }
        let mut caller = parent.and_then(|v| parse_traceparent(v.as_bytes()));
        if let Some(ctx) = &mut caller {
            ctx.trace_state = state.filter(|v| !v.is_empty() && v.len() <= MAX_TRACESTATE).cloned();
        } else if let Some(single) = single {
            caller = parse_b3_single(single.as_bytes());
        } else if multi {
            caller = parse_b3_multi(headers);
        }
        let stale_state = state.is_some() && caller.as_ref().is_none_or(|c| c.trace_state.is_none());
        Self { caller, stale: stale_state || multi }
    }
}

/// A request's trace as the gateway records it: the server span's context, the caller's span it continues, and
/// when it started.
#[derive(Debug, Clone)]
pub struct RequestTrace {
    /// The gateway's server span (trace id, span id, sampled, `tracestate`).
    pub context: SpanContext,
    /// The caller's span, when the request continued a trace.
    pub parent: Option<SpanId>,
    /// When the request arrived, ns since the Unix epoch (spans are timed from here with the monotonic clock).
    pub start_unix_nanos: u64,
    /// The request carries trace headers that [`inject`](Self::inject) must remove ([`Incoming::stale`]).
    pub stale_headers: bool,
}

impl RequestTrace {
    /// The context to send upstream for a new child span `span_id` of the server span.
    pub fn child(&self, span_id: SpanId) -> SpanContext {
        SpanContext { span_id, ..self.context.clone() }
    }

    /// Writes the context of child span `span_id` into the request going upstream (see [`SpanContext::inject`]).
    pub fn inject(&self, span_id: SpanId, headers: &mut HeaderMap, propagation: Propagation) {
        self.child(span_id).write(headers, propagation, self.stale_headers);
    }

    /// The trace id, when the trace is recorded (for exemplars and the access log).
    pub fn sampled_trace_id(&self) -> Option<[u8; 16]> {
        self.context.sampled.then_some(self.context.trace_id.0)
    }
}

/// `version-traceid-parentid-flags`. Version 00 must be exactly 55 characters; a later version may append
/// fields (read as version 00 says); version ff is invalid.
fn parse_traceparent(v: &[u8]) -> Option<SpanContext> {
    if v.len() < 55 || v[2] != b'-' || v[35] != b'-' || v[52] != b'-' {
        return None;
    }
    let version = unhex::<1>(&v[..2])?[0];
    if version == 0xff || (version == 0 && v.len() != 55) || (version != 0 && v.len() > 55 && v[55] != b'-') {
        return None;
    }
    let trace_id = TraceId(unhex::<16>(&v[3..35])?);
    let span_id = SpanId(unhex::<8>(&v[36..52])?);
    let flags = unhex::<1>(&v[53..55])?[0];
    valid(trace_id, span_id).then_some(SpanContext { trace_id, span_id, sampled: flags & 1 == 1, trace_state: None })
}

/// `traceid-spanid[-sampled[-parentspanid]]`; a lone `0`/`1`/`d` (sampling only) carries no ids.
fn parse_b3_single(v: &[u8]) -> Option<SpanContext> {
    let mut parts = v.split(|b| *b == b'-');
    let trace = parts.next()?;
    let span = parts.next()?;
    let sampled = match parts.next() {
        None => true,
        Some(b"1" | b"d") => true,
        Some(b"0") => false,
        Some(_) => return None,
    };
    let trace_id = b3_trace_id(trace)?;
    let span_id = SpanId(unhex::<8>(span)?);
    valid(trace_id, span_id).then_some(SpanContext { trace_id, span_id, sampled, trace_state: None })
}

fn parse_b3_multi(headers: &HeaderMap) -> Option<SpanContext> {
    let trace_id = b3_trace_id(headers.get(X_B3_TRACEID)?.as_bytes())?;
    let span_id = SpanId(unhex::<8>(headers.get(X_B3_SPANID)?.as_bytes())?);
    let debug = headers.get(X_B3_FLAGS).is_some_and(|v| v.as_bytes() == b"1");
    let sampled = debug || headers.get(X_B3_SAMPLED).is_none_or(|v| matches!(v.as_bytes(), b"1" | b"true"));
    valid(trace_id, span_id).then_some(SpanContext { trace_id, span_id, sampled, trace_state: None })
}

/// B3 trace ids are 16 or 32 hex digits; a 64-bit one is zero-padded on the left.
fn b3_trace_id(v: &[u8]) -> Option<TraceId> {
    match v.len() {
        32 => Some(TraceId(unhex::<16>(v)?)),
        16 => {
            let low = unhex::<8>(v)?;
            let mut id = [0u8; 16];
            id[8..].copy_from_slice(&low);
            Some(TraceId(id))
        }
        _ => None,
    }
}

fn valid(trace_id: TraceId, span_id: SpanId) -> bool {
    trace_id.0 != [0; 16] && span_id.0 != [0; 8]
}

/// Exactly `2 * N` lower-case hex digits (the W3C spec allows no upper case).
fn unhex<const N: usize>(v: &[u8]) -> Option<[u8; N]> {
    if v.len() != 2 * N {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; N];
    for (i, pair) in v.chunks_exact(2).enumerate() {
        out[i] = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

/// `00-<trace id>-<span id>-<flags>`, put together in registers and stored sixteen bytes at a time, at the
/// offsets the header value's validation then reads sixteen bytes at a time: each of its reads comes from one
/// store. (Written two hex digits at a time, its reads spanned many small stores, could not be forwarded from
/// them and waited for every store before to reach the cache: ~45 ns of every traced request on an Intel Xeon.)
fn traceparent(trace_id: &[u8; 16], span_id: &[u8; 8], sampled: bool) -> [u8; 55] {
    let [t0, t1] = [0, 8].map(|at| {
        let mut eight = [0; 8];
        eight.copy_from_slice(&trace_id[at..at + 8]);
        hex8(eight)
    });
    let s = hex8(*span_id);
    // Bytes 0..16: `00-` and the trace id's first 13 digits; 16..32: its next 16; 32..48: its last 3, `-` and
    // the span id's first 12 digits; 48..55: its last 4, `-` and the flags.
    let lane0 = u128::from(u32::from_le_bytes(*b"00-\0")) | t0 << 24;
    let lane1 = t0 >> 104 | t1 << 24;
    let lane2 = t1 >> 104 | u128::from(b'-') << 24 | s << 32;
    let flag = if sampled { b'1' } else { b'0' };
    let tail = (s >> 96) as u64 | u64::from(b'-') << 32 | u64::from(b'0') << 40 | u64::from(flag) << 48;
    let mut out = [0u8; 55];
    for (at, lane) in [(0, lane0), (16, lane1), (32, lane2)] {
        out[at..at + 16].copy_from_slice(&lane.to_le_bytes());
    }
    out[48..].copy_from_slice(&tail.to_le_bytes()[..7]);
    out
}

/// Eight bytes as sixteen lower-case hex digits in a register, the first byte's lowest (as they are stored,
/// little-endian). Arithmetic only: each byte is spread into a 16-bit lane, its nibbles into the lane's two
/// bytes, and each nibble becomes its digit by adding `'0'`, and 39 more past 9 (a table of digit pairs was 512
/// bytes to keep in cache, for a few ids per request).
#[inline(always)]
fn hex8(bytes: [u8; 8]) -> u128 {
    const LOW_32: u128 = 0x0000_0000_ffff_ffff_0000_0000_ffff_ffff;
    const LOW_16: u128 = 0x0000_ffff_0000_ffff_0000_ffff_0000_ffff;
    const LOW_8: u128 = 0x00ff_00ff_00ff_00ff_00ff_00ff_00ff_00ff;
    const NIBBLE: u128 = 0x000f_000f_000f_000f_000f_000f_000f_000f;
    const EACH: u128 = u128::MAX / 0xff; // 0x0101...01: one in every byte
    let x = u128::from(u64::from_le_bytes(bytes));
    let x = (x | x << 32) & LOW_32;
    let x = (x | x << 16) & LOW_16;
    let x = (x | x << 8) & LOW_8;
    // Byte i in lane i: its high nibble first (the lane's low byte), then its low one.
    let nibbles = (x >> 4 & NIBBLE) | (x & NIBBLE) << 8;
    // 1 in every byte whose nibble is 10 or more (adding 6 carries it into the byte's high half).
    let letters = (nibbles + 6 * EACH) >> 4 & EACH;
    nibbles + u128::from(b'0') * EACH + letters * u128::from(b'a' - b'0' - 10)
}

/// Writes two hex digits per byte of `bytes` (a multiple of eight long) into `out` (twice as long).
fn write_hex(out: &mut [u8], bytes: &[u8]) {
    for (digits, chunk) in out.chunks_exact_mut(16).zip(bytes.chunks_exact(8)) {
        let mut eight = [0; 8];
        eight.copy_from_slice(chunk);
        digits.copy_from_slice(&hex8(eight).to_le_bytes());
    }
}

fn hex(bytes: &[u8]) -> String {
    let mut out = vec![0; bytes.len() * 2];
    write_hex(&mut out, bytes);
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const W3C: Propagation = Propagation { w3c: true, b3: false };
    const BOTH: Propagation = Propagation { w3c: true, b3: true };

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn reads_and_writes_traceparent() {
        let h = headers(&[
            ("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            ("tracestate", "congo=t61rcWkgMzE"),
        ]);
        let ctx = Incoming::scan(&h, W3C).caller.unwrap();
        assert_eq!(ctx.trace_id.to_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(ctx.span_id.to_hex(), "00f067aa0ba902b7");
        assert!(ctx.sampled);
        let mut out = headers(&[("traceparent", "junk"), ("x-b3-traceid", "1")]);
        ctx.inject(&mut out, W3C);
        assert_eq!(out["traceparent"], "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        assert_eq!(out["tracestate"], "congo=t61rcWkgMzE");
        assert_eq!(out["x-b3-traceid"], "1", "B3 is not spoken here: its headers pass through");
        ctx.inject(&mut out, BOTH);
        assert!(out.get("x-b3-traceid").is_none(), "B3 spoken: the multi-header form is replaced by `b3`");
        let mut without_state = ctx.clone();
        without_state.trace_state = None;
        without_state.inject(&mut out, W3C);
        assert!(out.get("tracestate").is_none(), "a tracestate without its traceparent is not passed on");
    }

    #[test]
    fn one_pass_finds_what_must_be_removed_upstream_and_only_that() {
        let trace = |h: &HeaderMap, p: Propagation| {
            let incoming = Incoming::scan(h, p);
            let context = incoming.caller.clone().unwrap_or(SpanContext {
                trace_id: TraceId::random(),
                span_id: SpanId::random(),
                sampled: false,
                trace_state: None,
            });
            let stale_headers = incoming.stale;
            (incoming, RequestTrace { context, parent: None, start_unix_nanos: 0, stale_headers })
        };
        let parent = ("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        // Nothing to remove: no trace headers, or a caller's context with its state.
        for h in [headers(&[("host", "a"), ("accept", "*/*")]), headers(&[parent, ("tracestate", "k=v")])] {
            let (incoming, t) = trace(&h, BOTH);
            assert!(!incoming.stale, "{h:?}");
            let mut out = h.clone();
            t.inject(SpanId::random(), &mut out, BOTH);
            assert_eq!(out.get("tracestate"), h.get("tracestate"));
        }
        // A tracestate with no usable traceparent, or one over the limit, is not the caller's: removed.
        let long = "k=".to_string() + &"v".repeat(MAX_TRACESTATE);
        for h in [
            headers(&[("tracestate", "k=v")]),
            headers(&[("traceparent", "junk"), ("tracestate", "k=v")]),
            headers(&[parent, ("tracestate", long.as_str())]),
        ] {
            let (incoming, t) = trace(&h, W3C);
            assert!(incoming.stale, "{h:?}");
            let mut out = h.clone();
            t.inject(SpanId::random(), &mut out, W3C);
            assert!(out.get("tracestate").is_none(), "{out:?}");
            assert!(out.get("traceparent").is_some_and(|v| v.len() == 55));
        }
        // X-B3-* headers: read and replaced when B3 is spoken, passed through when not.
        let h = headers(&[("x-b3-traceid", "4bf92f3577b34da6a3ce929d0e0e4736"), ("x-b3-spanid", "00f067aa0ba902b7")]);
        let (incoming, t) = trace(&h, BOTH);
        assert!(incoming.stale && incoming.caller.is_some());
        let mut out = h.clone();
        t.inject(SpanId::random(), &mut out, BOTH);
        assert!(out.get("x-b3-traceid").is_none() && out.get("b3").is_some());
        let (incoming, t) = trace(&h, W3C);
        assert!(!incoming.stale && incoming.caller.is_none());
        let mut out = h.clone();
        t.inject(SpanId::random(), &mut out, W3C);
        assert_eq!(out["x-b3-traceid"], "4bf92f3577b34da6a3ce929d0e0e4736");
        // Of two traceparents, the first is read, as a lookup by name would.
        let mut two = headers(&[parent]);
        two.append("traceparent", HeaderValue::from_static("junk"));
        assert_eq!(Incoming::scan(&two, W3C).caller.unwrap().span_id.to_hex(), "00f067aa0ba902b7");
    }

    #[test]
    fn traceparent_values_are_put_together_digit_for_digit() {
        // Every byte value, in every position.
        for b in 0..=255u8 {
            for at in 0..8 {
                let mut eight = [0x5a; 8];
                eight[at] = b;
                let expected: String = eight.iter().map(|b| format!("{b:02x}")).collect();
                assert_eq!(std::str::from_utf8(&hex8(eight).to_le_bytes()).unwrap(), expected);
            }
        }
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..1000 {
            let mut next = || {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed
            };
            let (hi, lo, span) = (next(), next(), next());
            let mut trace = [0u8; 16];
            trace[..8].copy_from_slice(&hi.to_be_bytes());
            trace[8..].copy_from_slice(&lo.to_be_bytes());
            let expected = format!("{hi:016x}{lo:016x}");
            assert_eq!(std::str::from_utf8(&TraceId(trace).hex_digits()).unwrap(), expected);
            assert_eq!(TraceId(trace).to_hex(), expected);
            assert_eq!(std::str::from_utf8(&SpanId(span.to_be_bytes()).hex_digits()).unwrap(), format!("{span:016x}"));
            for sampled in [false, true] {
                let value = traceparent(&trace, &span.to_be_bytes(), sampled);
                let expected = format!("00-{hi:016x}{lo:016x}-{span:016x}-0{}", u8::from(sampled));
                assert_eq!(std::str::from_utf8(&value).unwrap(), expected);
            }
        }
    }

    #[test]
    fn refuses_malformed_traceparents() {
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01", // zero trace id
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", // zero span id
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", // version ff
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", // upper case
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x", // extra on version 00
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",  // short
        ] {
            assert!(Incoming::scan(&headers(&[("traceparent", bad)]), W3C).caller.is_none(), "{bad}");
        }
        // A later version may add fields.
        let future = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-extra";
        let ctx = Incoming::scan(&headers(&[("traceparent", future)]), W3C).caller.unwrap();
        assert!(!ctx.sampled);
    }

    #[test]
    fn reads_b3_single_and_multiple_headers_when_enabled() {
        let single = headers(&[("b3", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90")]);
        assert!(Incoming::scan(&single, W3C).caller.is_none(), "b3 is off");
        let ctx = Incoming::scan(&single, BOTH).caller.unwrap();
        assert_eq!(ctx.trace_id.to_hex(), "80f198ee56343ba864fe8b2a57d3eff7");
        assert_eq!(ctx.span_id.to_hex(), "e457b5a2e4d86bd1");
        let multi = headers(&[
            ("x-b3-traceid", "64fe8b2a57d3eff7"),
            ("x-b3-spanid", "e457b5a2e4d86bd1"),
            ("x-b3-sampled", "0"),
        ]);
        let ctx = Incoming::scan(&multi, BOTH).caller.unwrap();
        assert_eq!(ctx.trace_id.to_hex(), "000000000000000064fe8b2a57d3eff7");
        assert!(!ctx.sampled);
        let mut out = HeaderMap::new();
        ctx.inject(&mut out, BOTH);
        assert_eq!(out["b3"], "000000000000000064fe8b2a57d3eff7-e457b5a2e4d86bd1-0");
        assert_eq!(out["traceparent"], "00-000000000000000064fe8b2a57d3eff7-e457b5a2e4d86bd1-00");
    }

    #[test]
    fn random_ids_are_valid_and_distinct() {
        let (a, b) = (TraceId::random(), TraceId::random());
        assert_ne!(a, b);
        assert!(valid(a, SpanId::random()));
    }
}

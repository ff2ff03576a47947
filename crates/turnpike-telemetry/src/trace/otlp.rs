//! The OTLP trace messages the exporter sends (`opentelemetry/proto/collector/trace/v1` `ExportTraceServiceRequest`
//! and the `trace/v1`, `common/v1` and `resource/v1` messages in it, OTLP 1.x), written straight into bytes: a span
//! is encoded once, when it ends, from borrowed values (no message structs, no strings of its own), into the buffer
//! its batch is sent from; a batch is those bytes behind a resource and a scope encoded once for the exporter's
//! life, written into room left before the spans. (Encoding message structs, each nested level computed the lengths
//! of everything below it again and each attribute allocated its key and value: at 100 % sampling that added 60 % to
//! a proxied request's instructions, 20 % after. Each span in a buffer of its own, queued and then copied into the
//! request, cost ~1 % of the CPU at 1 % sampling: a sampled request is rare enough to run on cold caches.) The
//! tests decode what is written here with prost message types, and the gateway's tests with the official generated
//! ones.

use std::net::IpAddr;

use prost::encoding::encoded_len_varint;

/// A span's attributes (`repeated KeyValue attributes = 9`), encoded as they are added.
#[derive(Debug, Default)]
pub struct Attributes(Vec<u8>);

impl Attributes {
    /// Room for a few attributes.
    pub fn new() -> Self {
        Self(Vec::with_capacity(256))
    }

    /// A string attribute.
    pub fn string(&mut self, key: &str, value: &str) -> &mut Self {
        key_value(&mut self.0, SPAN_ATTRIBUTES, key, Value::String(value.as_bytes()));
        self
    }

    /// An integer attribute.
    pub fn int(&mut self, key: &str, value: i64) -> &mut Self {
        key_value(&mut self.0, SPAN_ATTRIBUTES, key, Value::Int(value));
        self
    }

    /// An address, as a string attribute (formatted on the stack; IPv4 without `fmt`).
    pub fn ip(&mut self, key: &str, ip: IpAddr) -> &mut Self {
        match ip {
            IpAddr::V4(v4) => {
                let (text, len) = crate::access_log::ipv4_text(v4);
                key_value(&mut self.0, SPAN_ATTRIBUTES, key, Value::String(text.get(..len).unwrap_or_default()));
            }
            IpAddr::V6(v6) => {
                self.string(key, &v6.to_string());
            }
        }
        self
    }
}

/// An attribute value (the `AnyValue` members Turnpike writes).
#[derive(Debug, Clone, Copy)]
enum Value<'a> {
    /// `string_value = 1` (UTF-8).
    String(&'a [u8]),
    /// `int_value = 3`.
    Int(i64),
}

/// A finished span, borrowed from where it was timed.
#[derive(Debug, Clone, Copy)]
pub struct SpanData<'a> {
    /// The trace (16 bytes).
    pub trace_id: [u8; 16],
    /// The span (8 bytes).
    pub span_id: [u8; 8],
    /// The parent span; `None` for a root span.
    pub parent_span_id: Option<[u8; 8]>,
    /// W3C `tracestate` carried with the trace (empty when none).
    pub trace_state: &'a str,
    /// The span's name.
    pub name: &'a str,
    /// `SpanKind` ([`kind`]).
    pub kind: i32,
    /// Start, in nanoseconds since the Unix epoch.
    pub start_time_unix_nano: u64,
    /// End, in nanoseconds since the Unix epoch.
    pub end_time_unix_nano: u64,
    /// The error that makes the span's status `ERROR`; the status is left unset without one.
    pub error: Option<&'a str>,
}

impl SpanData<'_> {
    /// Bytes of the `Span` message's fields with `attributes` (what [`Batch::push`] writes after the span's tag and
    /// length).
    fn encoded_len(&self, attributes: &Attributes) -> usize {
        let mut len = field_len(self.trace_id.len()) + field_len(self.span_id.len());
        if !self.trace_state.is_empty() {
            len += field_len(self.trace_state.len());
        }
        if let Some(parent) = &self.parent_span_id {
            len += field_len(parent.len());
        }
        if !self.name.is_empty() {
            len += field_len(self.name.len());
        }
        if self.kind != 0 {
            len += 1 + encoded_len_varint(self.kind as u64);
        }
        // Start and end (fixed64 each), the attributes, the status, the flags (a two-byte tag and a fixed32).
        len += 2 * 9 + attributes.0.len();
        if let Some(message) = self.error {
            len += field_len(status_len(message));
        }
        len + 2 + 4
    }

    /// The `Span` message's fields with `attributes` (in field-number order, as protobuf encoders write them).
    fn encode_fields(&self, attributes: &Attributes, out: &mut Vec<u8>) {
        bytes_field(out, 1, &self.trace_id);
        bytes_field(out, 2, &self.span_id);
        if !self.trace_state.is_empty() {
            bytes_field(out, 3, self.trace_state.as_bytes());
        }
        if let Some(parent) = &self.parent_span_id {
            bytes_field(out, 4, parent);
        }
        if !self.name.is_empty() {
            bytes_field(out, 5, self.name.as_bytes());
        }
        if self.kind != 0 {
            out.push(tag(6, VARINT));
            encode_varint(self.kind as u64, out);
        }
        out.push(tag(7, FIXED64));
        out.extend_from_slice(&self.start_time_unix_nano.to_le_bytes());
        out.push(tag(8, FIXED64));
        out.extend_from_slice(&self.end_time_unix_nano.to_le_bytes());
        out.extend_from_slice(&attributes.0);
        if let Some(message) = self.error {
            // `Status { string message = 2; StatusCode code = 3; }`
            out.push(tag(15, LEN));
            encode_varint(status_len(message) as u64, out);
            bytes_field(out, 2, message.as_bytes());
            out.push(tag(3, VARINT));
            encode_varint(status::ERROR as u64, out);
        }
        // `fixed32 flags = 16`: the W3C trace flags (sampled). Field 16's tag takes two bytes.
        encode_varint(u64::from(16u32 << 3 | FIXED32), out);
        out.extend_from_slice(&1u32.to_le_bytes());
    }
}

/// Bytes of an error `Status` message's fields: its message and the one-byte code.
fn status_len(message: &str) -> usize {
    field_len(message.len()) + 2
}

/// Spans encoded one after another as the `spans` fields of a `ScopeSpans`, straight into the buffer the export
/// request is sent from: behind room left for the request's header ([`Envelope::room`]), which is written in
/// place when the batch is sent. A span costs its bytes, no allocation of its own, and is never copied again.
#[derive(Debug)]
pub struct Batch {
    buf: Vec<u8>,
    /// Where the spans begin (the room before is the header's).
    room: usize,
    spans: usize,
}

impl Batch {
    /// An empty batch with `room` bytes kept for the header and space for `capacity` bytes of spans.
    pub fn new(room: usize, capacity: usize) -> Self {
        let mut buf = Vec::with_capacity(room + capacity);
        buf.resize(room, 0);
        Self { buf, room, spans: 0 }
    }

    /// Adds the span with `attributes`.
    pub fn push(&mut self, span: &SpanData<'_>, attributes: &Attributes) {
        let len = span.encoded_len(attributes);
        self.buf.reserve(field_len(len));
        self.buf.push(tag(2, LEN));
        encode_varint(len as u64, &mut self.buf);
        let start = self.buf.len();
        span.encode_fields(attributes, &mut self.buf);
        debug_assert_eq!(self.buf.len() - start, len, "a span's length is computed as it is written");
        self.spans += 1;
    }

    /// Spans in the batch.
    pub fn spans(&self) -> usize {
        self.spans
    }

    /// Bytes of the spans.
    pub fn bytes(&self) -> usize {
        self.buf.len() - self.room
    }
}

/// What every batch of one exporter carries around its spans: its resource and its instrumentation scope, encoded
/// once.
#[derive(Debug, Clone)]
pub struct Envelope {
    /// `Resource` (its fields).
    resource: Vec<u8>,
    /// `InstrumentationScope` (its fields).
    scope: Vec<u8>,
}

impl Envelope {
    /// The resource's attributes (string values) and the scope's name and version.
    pub fn new(resource: &[(String, String)], scope_name: &str, scope_version: &str) -> Self {
        let mut encoded = Vec::new();
        for (key, value) in resource {
            // `Resource { repeated KeyValue attributes = 1; }`
            key_value(&mut encoded, tag(1, LEN), key, Value::String(value.as_bytes()));
        }
        let mut scope = Vec::new();
        if !scope_name.is_empty() {
            bytes_field(&mut scope, 1, scope_name.as_bytes());
        }
        if !scope_version.is_empty() {
            bytes_field(&mut scope, 2, scope_version.as_bytes());
        }
        Self { resource: encoded, scope }
    }

    /// The room a [`Batch`] keeps for the request's header: `reserve` bytes (a gRPC message's frame header) and the
    /// most the header can take, its two lengths at their longest (a batch is below 4 GiB: 5-byte varints).
    pub fn room(&self, reserve: usize) -> usize {
        reserve + 1 + 5 + field_len(self.resource.len()) + 1 + 5 + field_len(self.scope.len())
    }

    /// The `ExportTraceServiceRequest` of `batch` (made with [`Envelope::room`]`(reserve)`): one `ResourceSpans`
    /// holding one `ScopeSpans`, the header written just before the spans. Returns the buffer and where the message
    /// begins, `reserve` bytes (left zero) before its first byte.
    pub fn finish(&self, batch: Batch) -> (Vec<u8>, usize) {
        let Batch { mut buf, room, .. } = batch;
        // `ScopeSpans { InstrumentationScope scope = 1; repeated Span spans = 2; }`
        let scope_spans = field_len(self.scope.len()) + (buf.len() - room);
        // `ResourceSpans { Resource resource = 1; repeated ScopeSpans scope_spans = 2; }`
        let resource_spans = field_len(self.resource.len()) + field_len(scope_spans);
        // `ExportTraceServiceRequest { repeated ResourceSpans resource_spans = 1; }`
        let mut header = Vec::with_capacity(room);
        header.push(tag(1, LEN));
        encode_varint(resource_spans as u64, &mut header);
        bytes_field(&mut header, 1, &self.resource);
        header.push(tag(2, LEN));
        encode_varint(scope_spans as u64, &mut header);
        bytes_field(&mut header, 1, &self.scope);
        let start = room.saturating_sub(header.len());
        if let Some(place) = buf.get_mut(start..room) {
            place.copy_from_slice(&header);
        }
        let reserve = room - self.room(0);
        (buf, start.saturating_sub(reserve))
    }
}

/// `Span.attributes`: field 9, length-delimited.
const SPAN_ATTRIBUTES: u8 = tag(9, LEN);

/// Wire types.
const VARINT: u32 = 0;
const FIXED64: u32 = 1;
const LEN: u32 = 2;
const FIXED32: u32 = 5;

/// The one-byte tag of a field numbered below 16.
const fn tag(field: u32, wire: u32) -> u8 {
    (field << 3 | wire) as u8
}

/// Bytes a length-delimited field of `len` bytes takes, with its (one-byte) tag and its length.
fn field_len(len: usize) -> usize {
    1 + encoded_len_varint(len as u64) + len
}

/// `value` as a varint: seven bits a byte, low bits first, the high bit set on every byte but the last.
#[inline]
fn encode_varint(mut value: u64, out: &mut Vec<u8>) {
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// A length-delimited field (bytes, string or message) numbered below 16.
#[inline]
fn bytes_field(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    out.push(tag(field, LEN));
    encode_varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

/// A `KeyValue { string key = 1; AnyValue value = 2; }` as the field tagged `tag`.
fn key_value(out: &mut Vec<u8>, tag_byte: u8, key: &str, value: Value<'_>) {
    // `AnyValue { oneof value { string string_value = 1; int64 int_value = 3; } }`: a oneof member is written even
    // when it is empty or zero.
    let any = match value {
        Value::String(s) => field_len(s.len()),
        Value::Int(i) => 1 + encoded_len_varint(i as u64),
    };
    let len = field_len(key.len()) + field_len(any);
    out.reserve(field_len(len));
    out.push(tag_byte);
    encode_varint(len as u64, out);
    bytes_field(out, 1, key.as_bytes());
    out.push(tag(2, LEN));
    encode_varint(any as u64, out);
    match value {
        Value::String(s) => bytes_field(out, 1, s),
        Value::Int(i) => {
            out.push(tag(3, VARINT));
            encode_varint(i as u64, out);
        }
    }
}

/// `SpanKind` values.
pub mod kind {
    /// `SPAN_KIND_INTERNAL`.
    pub const INTERNAL: i32 = 1;
    /// `SPAN_KIND_SERVER`.
    pub const SERVER: i32 = 2;
    /// `SPAN_KIND_CLIENT`.
    pub const CLIENT: i32 = 3;
}

/// `Status.StatusCode` values.
pub mod status {
    /// `STATUS_CODE_OK`.
    pub const OK: i32 = 1;
    /// `STATUS_CODE_ERROR`.
    pub const ERROR: i32 = 2;
}

#[cfg(test)]
mod tests {
    //! What the encoder writes, decoded with prost message types declared from the OTLP definitions.

    use prost::Message as _;

    use super::*;

    /// `ExportTraceServiceRequest`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ExportTraceServiceRequest {
        /// `resource_spans = 1`.
        #[prost(message, repeated, tag = "1")]
        pub resource_spans: Vec<ResourceSpans>,
    }

    /// `ResourceSpans`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ResourceSpans {
        /// `resource = 1`.
        #[prost(message, optional, tag = "1")]
        pub resource: Option<Resource>,
        /// `scope_spans = 2`.
        #[prost(message, repeated, tag = "2")]
        pub scope_spans: Vec<ScopeSpans>,
    }

    /// `Resource`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Resource {
        /// `attributes = 1`.
        #[prost(message, repeated, tag = "1")]
        pub attributes: Vec<KeyValue>,
    }

    /// `ScopeSpans`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ScopeSpans {
        /// `scope = 1`.
        #[prost(message, optional, tag = "1")]
        pub scope: Option<InstrumentationScope>,
        /// `spans = 2`.
        #[prost(message, repeated, tag = "2")]
        pub spans: Vec<Span>,
    }

    /// `InstrumentationScope`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct InstrumentationScope {
        /// `name = 1`.
        #[prost(string, tag = "1")]
        pub name: String,
        /// `version = 2`.
        #[prost(string, tag = "2")]
        pub version: String,
    }

    /// `Span`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Span {
        /// `trace_id = 1` (16 bytes).
        #[prost(bytes = "vec", tag = "1")]
        pub trace_id: Vec<u8>,
        /// `span_id = 2` (8 bytes).
        #[prost(bytes = "vec", tag = "2")]
        pub span_id: Vec<u8>,
        /// `trace_state = 3`.
        #[prost(string, tag = "3")]
        pub trace_state: String,
        /// `parent_span_id = 4` (empty for a root span).
        #[prost(bytes = "vec", tag = "4")]
        pub parent_span_id: Vec<u8>,
        /// `name = 5`.
        #[prost(string, tag = "5")]
        pub name: String,
        /// `kind = 6` (`SpanKind`).
        #[prost(int32, tag = "6")]
        pub kind: i32,
        /// `start_time_unix_nano = 7`.
        #[prost(fixed64, tag = "7")]
        pub start_time_unix_nano: u64,
        /// `end_time_unix_nano = 8`.
        #[prost(fixed64, tag = "8")]
        pub end_time_unix_nano: u64,
        /// `attributes = 9`.
        #[prost(message, repeated, tag = "9")]
        pub attributes: Vec<KeyValue>,
        /// `status = 15`.
        #[prost(message, optional, tag = "15")]
        pub status: Option<Status>,
        /// `flags = 16` (W3C trace flags in the low 8 bits).
        #[prost(fixed32, tag = "16")]
        pub flags: u32,
    }

    /// `Status`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Status {
        /// `message = 2`.
        #[prost(string, tag = "2")]
        pub message: String,
        /// `code = 3` (0 unset, 1 ok, 2 error).
        #[prost(int32, tag = "3")]
        pub code: i32,
    }

    /// `KeyValue`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct KeyValue {
        /// `key = 1`.
        #[prost(string, tag = "1")]
        pub key: String,
        /// `value = 2`.
        #[prost(message, optional, tag = "2")]
        pub value: Option<AnyValue>,
    }

    /// `AnyValue` (the scalar members Turnpike uses).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct AnyValue {
        /// The `value` oneof.
        #[prost(oneof = "Value", tags = "1, 2, 3, 4")]
        pub value: Option<Value>,
    }

    /// `AnyValue.value`.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Value {
        /// `string_value = 1`.
        #[prost(string, tag = "1")]
        String(String),
        /// `bool_value = 2`.
        #[prost(bool, tag = "2")]
        Bool(bool),
        /// `int_value = 3`.
        #[prost(int64, tag = "3")]
        Int(i64),
        /// `double_value = 4`.
        #[prost(double, tag = "4")]
        Double(f64),
    }

    fn any(value: &AnyValue) -> String {
        match &value.value {
            Some(Value::String(s)) => format!("{s:?}"),
            Some(Value::Int(i)) => i.to_string(),
            other => format!("{other:?}"),
        }
    }

    fn attributes(list: &[KeyValue]) -> Vec<(String, String)> {
        list.iter().map(|kv| (kv.key.clone(), kv.value.as_ref().map(any).unwrap_or_default())).collect()
    }

    fn span<'a>(name: &'a str, error: Option<&'a str>) -> SpanData<'a> {
        SpanData {
            trace_id: [7; 16],
            span_id: [1, 2, 3, 4, 5, 6, 7, 8],
            parent_span_id: None,
            trace_state: "",
            name,
            kind: kind::SERVER,
            start_time_unix_nano: 1_700_000_000_000_000_000,
            end_time_unix_nano: 1_700_000_000_001_000_000,
            error,
        }
    }

    /// The export request of `spans`, from its frame's first byte (`reserve` bytes before the message).
    fn export_request(envelope: &Envelope, reserve: usize, spans: &[(SpanData<'_>, &Attributes)]) -> Vec<u8> {
        let mut batch = Batch::new(envelope.room(reserve), 0);
        for (span, attributes) in spans {
            batch.push(span, attributes);
        }
        assert_eq!(batch.spans(), spans.len());
        let (buf, start) = envelope.finish(batch);
        buf[start..].to_vec()
    }

    #[test]
    fn a_batch_decodes_as_an_export_request() {
        let envelope = Envelope::new(
            &[("service.name".into(), "turnpike".into()), ("deployment.environment".into(), "test".into())],
            "turnpike",
            "1.2.3",
        );
        let mut attrs = Attributes::new();
        attrs
            .string("http.request.method", "GET")
            .string("url.path", &"/a".repeat(100))
            .int("http.response.status_code", 503)
            .int("negative", -5)
            .string("empty", "")
            .ip("client.address", "::1".parse().unwrap())
            .ip("server.address", "10.0.0.1".parse().unwrap());
        let server = span("GET items", Some("upstream failed"));
        let child = SpanData {
            span_id: [9; 8],
            parent_span_id: Some([1, 2, 3, 4, 5, 6, 7, 8]),
            trace_state: "vendor=x",
            kind: kind::CLIENT,
            ..span("GET", None)
        };
        let bytes = export_request(&envelope, 5, &[(server, &attrs), (child, &Attributes::new())]);
        assert_eq!(&bytes[..5], &[0; 5]);
        let request = ExportTraceServiceRequest::decode(&bytes[5..]).unwrap();
        assert_eq!(request.resource_spans.len(), 1);
        let rs = &request.resource_spans[0];
        assert_eq!(
            attributes(&rs.resource.as_ref().unwrap().attributes),
            [
                ("service.name".to_string(), "\"turnpike\"".to_string()),
                ("deployment.environment".to_string(), "\"test\"".to_string())
            ]
        );
        let ss = &rs.scope_spans[0];
        assert_eq!(ss.scope, Some(InstrumentationScope { name: "turnpike".into(), version: "1.2.3".into() }));
        let [server, child] = &ss.spans[..] else { panic!("two spans: {:?}", ss.spans) };
        assert_eq!(server.trace_id, [7; 16]);
        assert_eq!(server.span_id, [1, 2, 3, 4, 5, 6, 7, 8]);
        assert!(server.parent_span_id.is_empty());
        assert_eq!(server.trace_state, "");
        assert_eq!(server.name, "GET items");
        assert_eq!(server.kind, kind::SERVER);
        assert_eq!(server.start_time_unix_nano, 1_700_000_000_000_000_000);
        assert_eq!(server.end_time_unix_nano, 1_700_000_000_001_000_000);
        assert_eq!(server.flags, 1);
        assert_eq!(server.status, Some(Status { message: "upstream failed".into(), code: status::ERROR }));
        let path = format!("{:?}", "/a".repeat(100));
        assert_eq!(
            attributes(&server.attributes),
            [
                ("http.request.method", "\"GET\""),
                ("url.path", path.as_str()),
                ("http.response.status_code", "503"),
                ("negative", "-5"),
                ("empty", "\"\""),
                ("client.address", "\"::1\""),
                ("server.address", "\"10.0.0.1\""),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string()))
        );
        assert_eq!(child.parent_span_id, [1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(child.trace_state, "vendor=x");
        assert_eq!(child.kind, kind::CLIENT);
        assert_eq!(child.status, None, "no error: the status is left unset");
        assert!(child.attributes.is_empty());
        // An empty batch is still a well-formed request.
        let empty = ExportTraceServiceRequest::decode(&export_request(&envelope, 0, &[])[..]).unwrap();
        assert!(empty.resource_spans[0].scope_spans[0].spans.is_empty());
    }

    #[test]
    fn varints_are_written_as_prost_writes_them() {
        for value in [0, 1, 127, 128, 300, 16_383, 16_384, u64::from(u32::MAX), (-5i64) as u64, u64::MAX] {
            let (mut ours, mut theirs) = (Vec::new(), Vec::new());
            encode_varint(value, &mut ours);
            prost::encoding::encode_varint(value, &mut theirs);
            assert_eq!(ours, theirs, "{value}");
            assert_eq!(ours.len(), encoded_len_varint(value), "{value}");
        }
    }

    #[test]
    fn long_values_take_multi_byte_lengths() {
        let long = "x".repeat(20_000);
        let mut attrs = Attributes::new();
        attrs.string(&long, &long);
        let envelope = Envelope::new(&[], "", "");
        let bytes = export_request(&envelope, 0, &[(span(&long, Some(&long)), &attrs)]);
        let request = ExportTraceServiceRequest::decode(&bytes[..]).unwrap();
        let span = &request.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(span.name, long);
        assert_eq!(span.status.as_ref().unwrap().message, long);
        assert_eq!(attributes(&span.attributes)[0].0, long);
    }
}

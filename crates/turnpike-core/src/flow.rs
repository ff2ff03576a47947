//! `Flow`: what a phase that may answer early returns.

use http::Response;

use crate::Body;

/// The result of a phase that may answer the request itself (a CORS preflight, a cache hit, a redirect).
#[derive(Debug)]
pub enum Flow {
    /// Go on to the next phase.
    Continue,
    /// Answer with this response; later phases up to `finish` are skipped. Boxed: answering early is the rare case.
    Respond(Box<Response<Body>>),
}

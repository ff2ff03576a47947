//! Turnpike's shared vocabulary: the request context, the one error type, bodies, identity and the state registry.
//!
//! This crate does no I/O of its own. Every other crate speaks in these types, so that a policy never needs to know the
//! gateway and the gateway composes policies without adapters.

pub mod body;
pub mod cx;
pub mod error;
pub mod flow;
pub mod identity;
pub mod registry;
pub mod request_id;
pub mod time;
pub mod trace;

pub use body::{Body, BodyError, BoxError};
pub use cx::{Cx, Peer, Scheme};
pub use error::{ErrorSide, ForbiddenKind, GatewayError};
pub use flow::Flow;
pub use identity::{ClientCert, Consumer, Identity, IdentitySource, UpstreamHeaders};
pub use registry::Registry;
pub use request_id::RequestId;

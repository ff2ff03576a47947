//! The `dispatch` phase: where a request goes once it has been admitted. Forwarding to an upstream today;
//! aggregation, queue publishing and static responses join here as siblings of [`forward`].

mod forward;

pub(crate) use forward::forward;

//! Unit tests of the route table, grouped by concern.

mod build_errors;
mod hosts;
mod listing;
mod methods;
mod normalize;
mod paths;
mod precedence;
mod property;
mod rewrite;
mod rules;
mod support;

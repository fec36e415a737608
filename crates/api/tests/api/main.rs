//! Black-box tests of bff: the real application on a random port, against wiremock
//! Open WebUI, LiteLLM, Langfuse and Helicone (and raw TCP fakes for streaming timing).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // a panic is a failed test

mod chat;
mod descriptors;
mod errors;
mod groups;
mod helpers;
mod langfuse;
mod observability;
mod operations;
mod policy;
mod quota;
mod rbac;
mod reporting;
mod streaming;

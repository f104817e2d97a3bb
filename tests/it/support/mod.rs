//! Test harness: an in-process server, the binary run as a child process, and a small raw
//! HTTP/1.1 client.

pub mod client;
pub mod process;
pub mod server;

pub use client::{get, post_json, send, Response};
pub use server::TestServer;

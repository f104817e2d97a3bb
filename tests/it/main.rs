//! Integration tests: each starts the real service on 127.0.0.1:0 and talks HTTP to it.

mod support;

mod config_cli;
mod http_contract;
mod ingest_single;
mod processing;
mod shutdown;
mod stats_metrics;

//! Integration tests: each starts the real service on 127.0.0.1:0 and talks HTTP to it.

mod support;

mod batches;
mod compression;
mod config_cli;
mod config_docs;
mod custom_plugins;
mod dashboard;
mod flood;
mod http_contract;
mod ingest_single;
mod processing;
mod prometheus;
mod readers;
mod shutdown;
mod slow_clients;
mod stats_metrics;

//! Plugins from outside the crate: `examples/custom_plugins.rs` registers a validator and a
//! processor with `inventory::submit!` and starts the service through
//! `telemetron::cli::main`. This runs that binary and checks both plugins take part.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::client::event;
use crate::support::process::WorkDir;
use crate::support::{get, post_json};

/// Builds the example (a no-op when `cargo test` already built it) and returns its path.
/// Building here keeps `cargo test --test it`, which skips examples, from running a stale
/// binary.
fn example_binary() -> PathBuf {
    let test_binary = std::env::current_exe().expect("path of the test binary");
    let profile_dir = test_binary
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test binaries live in target/<profile>/deps");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut build = Command::new(cargo);
    build.args(["build", "--quiet", "--example", "custom_plugins"]);
    if profile_dir.ends_with("release") {
        build.arg("--release");
    }
    let status = build.status().expect("run cargo build --example custom_plugins");
    assert!(status.success(), "building the custom_plugins example failed");
    profile_dir.join("examples").join("custom_plugins")
}

#[test]
fn example_plugins_validate_and_process() {
    let binary = example_binary();
    let dir = WorkDir::new();
    let batch_log = dir.path().join("batches.log");
    dir.write(
        "config.toml",
        &format!(
            "[http]\nport = 0\n[log]\nformat = \"json\"\n[processor]\nworkers = 1\npin_workers = false\nbatch_timeout = 10\n\
             [validation.plugins.MaxFutureSkew]\nmax_skew_secs = 60\n\
             [processing.plugins.StorageProcessor]\n\
             [processing.plugins.BatchLog]\npath = {:?}\n",
            batch_log.display().to_string()
        ),
    );
    let mut service = dir.spawn_program(&binary, &[], &[]);
    let listening = service.wait_for_log("telemetron listening");
    assert!(listening.to_string().contains("MaxFutureSkew"), "validator enabled: {listening}");
    assert!(listening.to_string().contains("BatchLog"), "processor enabled: {listening}");

    let future = post_json(service.addr, &event(1, "Heartbeat", "2999-01-01T00:00:00Z"));
    assert_eq!(future.status, 400, "{}", future.text());
    assert!(future.text().contains("MaxFutureSkew"), "{}", future.text());

    let now = post_json(service.addr, &event(7, "Heartbeat", "2024-01-01T00:00:00Z"));
    assert_eq!(now.status, 202, "{}", now.text());

    let deadline = Instant::now() + Duration::from_secs(10);
    let logged = loop {
        let text = std::fs::read_to_string(&batch_log).unwrap_or_default();
        if !text.is_empty() || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(logged, "events=1 first_source=7\n", "BatchLog processed the accepted event");

    // Processors run in name order, so StorageProcessor may still be recording the batch
    // that BatchLog has already written.
    let events_count = loop {
        let count = get(service.addr, "/stats").json()["events_count"].clone();
        if count == 1 || Instant::now() > deadline {
            break count;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(events_count, 1, "StorageProcessor recorded the accepted event");

    service.signal(libc::SIGTERM);
    assert!(service.wait_for_exit().success());
}

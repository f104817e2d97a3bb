//! The binary's command line and configuration loading: `--help`, `--version`, `--config`,
//! `check-config`, `TELEMETRON_` overrides, start-up errors, and a configuration written for
//! the previous release.

use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant};

use crate::support::process::{Finished, WorkDir};

/// A file that starts the service on a free port with parseable log lines.
const MINIMAL_CONFIG: &str = r#"
[http]
port = 0

[log]
format = "json"
"#;

/// User and group id of `nobody` on Debian.
const NOBODY: u32 = 65534;

/// Runs the binary with `config` as `telemetron.toml`, expects start-up to fail, and
/// returns the one stderr line meant for a person (log lines aside).
fn start_up_error(config: &str) -> String {
    let dir = WorkDir::new();
    dir.write("telemetron.toml", config);
    let finished = dir.run(&["--config", "telemetron.toml"], &[]);

    assert!(
        !finished.status.success(),
        "start-up succeeded with an invalid configuration; stderr:\n{}",
        finished.stderr
    );
    let lines = finished.error_lines();
    assert_eq!(lines.len(), 1, "expected one error line on stderr, got:\n{}", finished.stderr);
    lines[0].to_owned()
}

/// Parses `check-config` output, whose `#` lines are TOML comments.
fn effective_settings(finished: &Finished) -> toml::Table {
    assert!(
        finished.status.success(),
        "check-config failed ({}); stderr:\n{}",
        finished.status,
        finished.stderr
    );
    finished
        .stdout
        .parse()
        .unwrap_or_else(|error| panic!("check-config output is not TOML ({error}):\n{}", finished.stdout))
}

fn batch_size(settings: &toml::Table) -> Option<i64> {
    settings.get("processor")?.get("batch_size")?.as_integer()
}

#[test]
fn help_prints_usage() {
    let dir = WorkDir::new();
    let finished = dir.run(&["--help"], &[]);

    assert!(finished.status.success(), "--help exited with {}", finished.status);
    assert!(
        finished.stdout.contains("Usage: telemetron"),
        "no usage line in --help output:\n{}",
        finished.stdout
    );
    assert!(
        finished.stdout.contains("--config <PATH>"),
        "--config is not described in --help output:\n{}",
        finished.stdout
    );
    assert!(
        finished.stdout.contains("check-config"),
        "check-config is not listed in --help output:\n{}",
        finished.stdout
    );
}

#[test]
fn version_prints_version() {
    let dir = WorkDir::new();
    let finished = dir.run(&["--version"], &[]);

    assert!(finished.status.success(), "--version exited with {}", finished.status);
    assert_eq!(
        finished.stdout.trim(),
        format!("telemetron {}", env!("CARGO_PKG_VERSION")),
        "--version output"
    );
}

#[test]
fn starts_on_defaults_without_config_file() {
    let dir = WorkDir::new();
    let mut service = dir.spawn(&[], &[("TELEMETRON_HTTP__PORT", "0"), ("TELEMETRON_LOG__FORMAT", "json")]);

    service.wait_for_log("no config.toml in the working directory and no --config given");
    assert_eq!(
        service.addr.ip(),
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        "default host; stderr:\n{}",
        service.stderr_text()
    );
}

#[test]
fn reads_config_toml_in_working_directory() {
    let dir = WorkDir::new();
    dir.write("config.toml", "[processor]\nbatch_size = 7\n");
    let settings = effective_settings(&dir.run(&["check-config"], &[]));

    assert_eq!(batch_size(&settings), Some(7), "settings: {settings:#?}");
}

#[test]
fn config_flag_uses_given_file() {
    let dir = WorkDir::new();
    // Read instead of the --config file, this decoy would show as batch_size 3.
    dir.write("config.toml", "[processor]\nbatch_size = 3\n");
    dir.write("conf/custom.toml", &format!("{MINIMAL_CONFIG}\n[processor]\nbatch_size = 7\n"));
    let mut service = dir.spawn(&["--config", "conf/custom.toml"], &[]);

    let loaded = service.wait_for_log("configuration loaded");
    assert_eq!(loaded["path"], "conf/custom.toml", "configuration loaded line: {loaded}");
    let listening = service.wait_for_log("telemetron listening");
    assert_eq!(listening["batch_size"], 7, "telemetron listening line: {listening}");
}

#[test]
fn config_flag_reads_any_file_name() {
    let dir = WorkDir::new();
    dir.write("telemetron.conf", "[processor]\nbatch_size = 7\n");
    let finished = dir.run(&["--config", "telemetron.conf", "check-config"], &[]);
    let settings = effective_settings(&finished);

    assert_eq!(batch_size(&settings), Some(7), "settings: {settings:#?}");
}

#[test]
fn missing_config_file_fails() {
    let dir = WorkDir::new();
    let finished = dir.run(&["--config", "absent.toml"], &[]);

    assert!(
        !finished.status.success(),
        "started without its config file; stderr:\n{}",
        finished.stderr
    );
    let lines = finished.error_lines();
    assert_eq!(lines.len(), 1, "expected one error line on stderr, got:\n{}", finished.stderr);
    assert!(lines[0].contains("absent.toml"), "error does not name the file: {}", lines[0]);
    assert!(lines[0].contains("not found"), "error does not say what is wrong: {}", lines[0]);
}

#[test]
fn env_port_overrides_file() {
    // The file names a port in use, so the service starts only if the override wins.
    let occupied = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let occupied_port = occupied.local_addr().expect("local addr").port();
    let dir = WorkDir::new();
    dir.write(
        "telemetron.toml",
        &format!("[http]\nport = {occupied_port}\n\n[log]\nformat = \"json\"\n"),
    );
    let service = dir.spawn(&["--config", "telemetron.toml"], &[("TELEMETRON_HTTP__PORT", "0")]);

    assert_ne!(
        service.addr.port(),
        occupied_port,
        "bound to the file's port; stderr:\n{}",
        service.stderr_text()
    );
}

#[test]
fn env_overrides_batch_size() {
    let dir = WorkDir::new();
    let finished = dir.run(&["check-config"], &[("TELEMETRON_PROCESSOR__BATCH_SIZE", "50")]);
    let settings = effective_settings(&finished);

    assert_eq!(batch_size(&settings), Some(50), "check-config output:\n{}", finished.stdout);
    assert!(
        finished
            .stdout
            .contains("# overridden by environment variable TELEMETRON_PROCESSOR__BATCH_SIZE"),
        "the override is not listed:\n{}",
        finished.stdout
    );
}

#[test]
fn check_config_exits_1_when_invalid() {
    let dir = WorkDir::new();
    dir.write("config.toml", "[processor]\nbatch_size = 0\n");
    let finished = dir.run(&["check-config"], &[]);

    assert_eq!(finished.status.code(), Some(1), "stderr:\n{}", finished.stderr);
}

#[test]
fn unknown_plugin_lists_known_ones() {
    let line = start_up_error(&format!("{MINIMAL_CONFIG}\n[validation.plugins.Nope]\n"));

    assert!(line.contains("Nope"), "error does not name the plugin: {line}");
    assert!(
        line.contains("EventTypeValidator, SourceIdValidator"),
        "error does not list the known validators: {line}"
    );
}

#[test]
fn unknown_processor_lists_known_ones() {
    let line = start_up_error(&format!("{MINIMAL_CONFIG}\n[processing.plugins.Nope]\n"));

    assert!(line.contains("Nope"), "error does not name the plugin: {line}");
    assert!(
        line.contains("StorageProcessor"),
        "error does not list the known processors: {line}"
    );
}

#[test]
fn mistyped_port_is_rejected() {
    let line = start_up_error("[http]\nport = \"abc\"\n");

    assert!(line.contains("http.port"), "error does not name the key: {line}");
}

#[test]
fn unknown_key_is_rejected() {
    let line = start_up_error("[http]\nport = 0\nprot = 1\n");

    assert!(line.contains("prot"), "error does not name the key: {line}");
}

#[test]
fn zero_batch_size_is_rejected() {
    let line = start_up_error(&format!("{MINIMAL_CONFIG}\n[processor]\nbatch_size = 0\n"));

    assert!(line.contains("processor.batch_size"), "error does not name the key: {line}");
}

#[test]
fn worker_nice_outside_range_is_rejected() {
    let line = start_up_error(&format!("{MINIMAL_CONFIG}\n[processor]\nworker_nice = -21\n"));

    assert!(line.contains("processor.worker_nice"), "error does not name the key: {line}");
}

#[test]
fn worker_nice_failure_is_logged_once() {
    let dir = WorkDir::new();
    // An unprivileged user cannot raise a thread's priority. As root, the binary runs as
    // `nobody` from a copy in a directory that user may enter and write.
    let binary = dir.path().join("telemetron");
    std::fs::copy(WorkDir::binary(), &binary).expect("copy the binary");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).expect("open the directory");
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let env = [
        ("TELEMETRON_HTTP__PORT", "0"),
        ("TELEMETRON_LOG__FORMAT", "json"),
        ("TELEMETRON_PROCESSOR__WORKERS", "3"),
        ("TELEMETRON_PROCESSOR__WORKER_NICE", "-5"),
    ];
    let mut service = dir.spawn_adjusted(&binary, &[], &env, |command| {
        if root {
            command.uid(NOBODY).gid(NOBODY);
        }
    });

    // Each worker requests a 0.1 ms time slice instead, which needs no privilege.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut slices = worker_slices(service.pid());
    while slices.iter().filter(|&&slice| slice == 100_000).count() < 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        slices = worker_slices(service.pid());
    }
    assert_eq!(slices, vec![100_000; 3], "se.slice of the workers in nanoseconds");

    service.signal(libc::SIGTERM);
    service.wait_for_log("shutdown complete");
    let warnings = service
        .stderr_text()
        .lines()
        .filter(|line| line.contains("\"WARN\"") && line.contains("nice value"))
        .count();
    assert_eq!(warnings, 1, "stderr:\n{}", service.stderr_text());
}

/// Reads `se.slice` from `/proc/PID/task/TID/sched` for each batch worker thread of `pid`.
fn worker_slices(pid: u32) -> Vec<u64> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("the service's threads are listed");
    let mut slices = Vec::new();
    for task in tasks {
        let task = task.expect("a thread entry").path();
        let name = std::fs::read_to_string(task.join("comm")).unwrap_or_default();
        if !name.starts_with("telemetron-work") {
            continue;
        }
        let sched = std::fs::read_to_string(task.join("sched")).expect("the thread's sched file is readable");
        let slice = sched
            .lines()
            .find(|line| line.starts_with("se.slice"))
            .and_then(|line| line.split(':').nth(1))
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or_else(|| panic!("no se.slice line in:\n{sched}"));
        slices.push(slice);
    }
    slices
}

#[test]
fn port_in_use_is_reported() {
    let occupied = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let occupied_port = occupied.local_addr().expect("local addr").port();
    let line = start_up_error(&format!("[http]\nport = {occupied_port}\n\n[log]\nformat = \"json\"\n"));

    assert!(
        line.contains(&format!("127.0.0.1:{occupied_port}")),
        "error does not name the address: {line}"
    );
    assert!(line.contains("http.port"), "error does not name the key: {line}");
}

#[test]
fn previous_release_config_runs() {
    // The keys a config file for the previous release used, in its layout. The log format
    // comes from the environment, so the file stays as the previous release read it.
    let dir = WorkDir::new();
    dir.write(
        "config.toml",
        r#"
[http]
host = "127.0.0.1"
port = 0

[processor]
channel_capacity = 5000
batch_size = 25
batch_timeout = 50
retry_attempts = 2
retry_delay = 10

[validation.plugins.SourceIdValidator]
allowed = [1, 2]

[validation.plugins.EventTypeValidator]
allowed = []

[processing.plugins.StorageProcessor]
"#,
    );
    let settings = effective_settings(&dir.run(&["check-config"], &[]));
    let processor = settings.get("processor");
    assert_eq!(
        processor.and_then(|table| table.get("retry_attempts")?.as_integer()),
        Some(2),
        "settings: {settings:#?}"
    );
    assert_eq!(
        processor.and_then(|table| table.get("retry_delay")?.as_integer()),
        Some(10),
        "settings: {settings:#?}"
    );

    let mut service = dir.spawn(&[], &[("TELEMETRON_LOG__FORMAT", "json")]);
    let listening = service.wait_for_log("telemetron listening");
    assert_eq!(listening["channel_capacity"], 5000, "telemetron listening line: {listening}");
    assert_eq!(listening["batch_size"], 25, "telemetron listening line: {listening}");
    assert_eq!(listening["batch_timeout_ms"], 50, "telemetron listening line: {listening}");
    assert_eq!(
        listening["validators"], r#"["EventTypeValidator", "SourceIdValidator"]"#,
        "telemetron listening line: {listening}"
    );
    assert_eq!(
        listening["processors"], r#"["StorageProcessor"]"#,
        "telemetron listening line: {listening}"
    );
}

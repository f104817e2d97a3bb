//! The reader thread: connections that open with `GET` or `HEAD` are served there, every
//! other connection on the runtime threads, and requests on either kind of connection get
//! their responses.

use std::io::{BufReader, Write};
use std::time::{Duration, Instant};

use crate::support::client::{closed_by_server, connect, encode, event, read_response};
use crate::support::{get, post_json, TestServer};

const TS: &str = "2024-06-01T00:00:00Z";

/// Value of `telemetron_http_connections_total` for `thread`, read on a new connection, which
/// the count includes.
fn connections_served_on(server: &TestServer, thread: &str) -> u64 {
    let text = get(server.addr, "/metrics").text();
    let prefix = format!("telemetron_http_connections_total{{thread=\"{thread}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {prefix}line in /metrics:\n{text}"))
        .parse()
        .expect("a counter value")
}

#[test]
fn connections_are_served_by_their_first_method() {
    let server = TestServer::start();
    assert_eq!(get(server.addr, "/healthz").status, 200);
    assert_eq!(get(server.addr, "/stats").status, 200);
    assert_eq!(post_json(server.addr, &event(1, "A", TS)).status, 202);

    // Two reads above and the /metrics request itself.
    assert_eq!(connections_served_on(&server, "reader"), 3);
    assert_eq!(connections_served_on(&server, "runtime"), 1);
}

#[test]
fn reader_connection_can_post_events() {
    let server = TestServer::start();
    let mut stream = connect(server.addr);
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));

    stream.write_all(&encode("GET", "/healthz", &[], b"")).expect("send");
    assert_eq!(read_response(&mut reader).expect("answer").status, 200);
    let body = event(77, "Heartbeat", TS);
    stream
        .write_all(&encode("POST", "/ingest", &[("Content-Type", "application/json")], body.as_bytes()))
        .expect("send");
    assert_eq!(read_response(&mut reader).expect("answer").status, 202);

    server.wait_for_events(1);
    stream.write_all(&encode("GET", "/stats/77", &[], b"")).expect("send");
    let stats = read_response(&mut reader).expect("answer");
    assert_eq!(stats.status, 200, "{}", stats.text());
    assert_eq!(stats.json()["total_events"], 1, "{}", stats.text());
}

#[test]
fn method_split_across_writes_is_answered() {
    let server = TestServer::start();
    let mut stream = connect(server.addr);
    stream.write_all(b"G").expect("send the first byte");
    stream.flush().expect("flush");
    std::thread::sleep(Duration::from_millis(50));
    stream.write_all(&encode("GET", "/healthz", &[], b"")[1..]).expect("send the rest");

    let mut reader = BufReader::new(stream);
    assert_eq!(read_response(&mut reader).expect("answer").status, 200);
    assert_eq!(connections_served_on(&server, "runtime"), 1, "a split method stays on the runtime threads");
}

#[test]
fn silent_connection_is_closed_after_header_timeout() {
    let server = TestServer::with_config(|config| config.http.header_read_timeout_ms = 300);
    let stream = connect(server.addr);
    let started = Instant::now();

    let mut reader = BufReader::new(stream);
    assert!(closed_by_server(&mut reader), "a connection that sends nothing is closed");
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(250), "closed after {waited:?}, before the timeout");
    assert!(waited < Duration::from_secs(5), "closed after {waited:?}");
}

#[test]
fn shutdown_does_not_wait_for_silent_connections() {
    // The default header read timeout is 10 s; shutdown must not wait for it.
    let server = TestServer::start();
    let _silent = connect(server.addr);
    assert_eq!(get(server.addr, "/healthz").status, 200, "the silent connection was accepted first");

    let started = Instant::now();
    let summary = server.stop();
    assert!(started.elapsed() < Duration::from_secs(5), "shutdown took {:?}", started.elapsed());
    assert_eq!(summary.accepted, 0);
}

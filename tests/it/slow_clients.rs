//! Slow and numerous clients: a body that trickles in gets 408 after
//! `http.body_read_timeout_ms`, an idle keep-alive connection is closed after
//! `http.header_read_timeout_ms`, and connections past `http.max_connections` wait in the
//! backlog while the established ones keep working.

use std::io::{BufReader, Write};
use std::time::{Duration, Instant};

use crate::support::client::{closed_by_server, connect, encode, event, read_response};
use crate::support::TestServer;

const TS: &str = "2024-06-01T00:00:00Z";

#[test]
fn slow_body_gets_408() {
    let server = TestServer::with_config(|config| config.http.body_read_timeout_ms = 300);
    let mut stream = connect(server.addr);
    stream
        .write_all(b"POST /ingest HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"sourceId\":")
        .expect("send headers and part of the body");
    let started = Instant::now();
    let mut reader = BufReader::new(stream);
    let response = read_response(&mut reader).expect("an answer before the client finishes");
    assert_eq!(response.status, 408, "{}", response.text());
    assert!(response.json()["error"].as_str().unwrap_or("").contains("body_read_timeout_ms"));
    assert!(started.elapsed() < Duration::from_secs(5), "answered after {:?}", started.elapsed());
    assert!(closed_by_server(&mut reader), "the connection closes after 408");
}

#[test]
fn idle_keep_alive_connection_is_closed() {
    let server = TestServer::with_config(|config| config.http.header_read_timeout_ms = 300);
    let mut stream = connect(server.addr);
    stream
        .write_all(&encode("GET", "/healthz", &[], b""))
        .expect("send request");
    let mut reader = BufReader::new(stream);
    assert_eq!(read_response(&mut reader).expect("answer").status, 200);

    let started = Instant::now();
    assert!(closed_by_server(&mut reader), "an idle connection is closed");
    assert!(started.elapsed() < Duration::from_secs(5), "closed after {:?}", started.elapsed());
}

#[test]
fn connections_past_cap_wait_in_backlog() {
    let server = TestServer::with_config(|config| config.http.max_connections = 2);
    let request = encode("POST", "/ingest", &[("Content-Type", "application/json")], event(1, "A", TS).as_bytes());

    // Two established connections, each proven accepted by one answered request.
    let mut established: Vec<_> = (0..2)
        .map(|_| {
            let mut stream = connect(server.addr);
            stream.write_all(&request).expect("send");
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            assert_eq!(read_response(&mut reader).expect("answer").status, 202);
            (stream, reader)
        })
        .collect();

    // A third connection completes the TCP handshake in the kernel backlog but is not
    // served while both slots are taken.
    let mut waiting = connect(server.addr);
    waiting
        .set_read_timeout(Some(Duration::from_millis(500)))
        .expect("set timeout");
    waiting.write_all(&request).expect("send on the waiting connection");
    let mut waiting_reader = BufReader::new(waiting.try_clone().expect("clone"));
    let mut probe = [0u8; 1];
    let unanswered = matches!(
        std::io::Read::read(waiting_reader.get_mut(), &mut probe),
        Err(ref error) if matches!(error.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)
    );
    assert!(unanswered, "the third connection is not served while the cap is reached");

    // The established connections are unaffected.
    for (stream, reader) in &mut established {
        stream.write_all(&request).expect("send again");
        assert_eq!(read_response(reader).expect("answer").status, 202);
    }

    // Closing one frees a slot, and the waiting connection is served.
    drop(established.pop());
    waiting
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("set timeout");
    let response = read_response(&mut waiting_reader).expect("served once a slot frees");
    assert_eq!(response.status, 202, "{}", response.text());

    // `/stats` needs a slot of its own.
    drop((established, waiting, waiting_reader));
    server.wait_for_events(5);
}

//! The HTTP contract at the byte level: keep-alive, pipelining, HTTP/1.0, `Expect:
//! 100-continue`, body limits, the connection state after early rejections, media types,
//! methods and paths, health, metrics, slow headers and malformed input.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::support::client::{self, connect, encode, event, read_response};
use crate::support::{get, post_json, send, Response, TestServer};

/// `http.max_body_bytes` in the body limit tests, small enough to cross cheaply.
const BODY_LIMIT: usize = 1024;

/// Maximum wait for the server to drop a connection whose headers never finish.
const HEADER_TIMEOUT_BOUND: Duration = Duration::from_secs(5);

const JSON: (&str, &str) = ("Content-Type", "application/json");

/// Source id of the event hidden in rejected bodies. It is counted only if the server
/// takes body bytes for a request.
const SMUGGLED_SOURCE: u64 = 666;

fn valid_event(source_id: u64) -> String {
    event(source_id, "Heartbeat", "2024-05-01T12:00:00Z")
}

fn small_limit_server() -> TestServer {
    TestServer::with_config(|config| config.http.max_body_bytes = BODY_LIMIT)
}

/// Outcome of reading the next response from a connection.
enum Next {
    Response(Response),
    Closed,
}

/// Reads the next response, or notices that the server closed the connection. A reset
/// counts as closed, because closing a socket with unread input sends RST on Linux. Fails
/// the test if the server does neither within the client read timeout, so a server waiting
/// for bytes that never come is not mistaken for one that closed.
fn next_response(reader: &mut BufReader<TcpStream>, context: &str) -> Next {
    match reader.fill_buf() {
        Ok([]) => return Next::Closed,
        Ok(_) => {}
        Err(error) if error.kind() == ErrorKind::ConnectionReset => return Next::Closed,
        Err(error) => panic!(
            "{context}: the server neither sent a response nor closed the connection within {:?} ({error})",
            client::READ_TIMEOUT
        ),
    }
    match read_response(reader) {
        Some(response) => Next::Response(response),
        None => Next::Closed,
    }
}

/// Reads the next response, failing the test if the server closed the connection instead.
fn expect_response(reader: &mut BufReader<TcpStream>, context: &str) -> Response {
    match next_response(reader, context) {
        Next::Response(response) => response,
        Next::Closed => panic!("{context}: the server closed the connection without a response"),
    }
}

fn describe(response: &Response) -> String {
    format!("{} {:?} {}", response.status, response.headers, response.text())
}

/// Returns the `error` string of a JSON error body, failing the test if there is none.
fn error_message(response: &Response) -> String {
    let body = response.json();
    body["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no string `error` field in the {} body: {body}", response.status))
        .to_owned()
}

/// Returns the bytes of a complete `POST /ingest` request for one valid event, padded with
/// whitespace inside the JSON body so the request is at least `min_len` bytes long. Sent as
/// the body of a rejected request, it is accepted only if the server parses body bytes as
/// the next request.
fn smuggled_request(min_len: usize) -> Vec<u8> {
    let mut body = valid_event(SMUGGLED_SOURCE);
    loop {
        let request = encode("POST", "/ingest", &[JSON], body.as_bytes());
        if request.len() >= min_len {
            return request;
        }
        body.push_str(&" ".repeat(min_len - request.len()));
    }
}

/// Encodes `body` as chunks of `chunk_len` bytes, with the final empty chunk.
fn chunked(body: &[u8], chunk_len: usize) -> Vec<u8> {
    let mut encoded = Vec::new();
    for chunk in body.chunks(chunk_len) {
        encoded.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        encoded.extend_from_slice(chunk);
        encoded.extend_from_slice(b"\r\n");
    }
    encoded.extend_from_slice(b"0\r\n\r\n");
    encoded
}

/// Sends `rejected` and a `GET /stats` in one write on one connection. Checks that the
/// first gets a `status` response with a JSON error, and that the server then either closes
/// the connection or returns the correct `GET /stats` response, never one for the unread
/// body bytes. Then checks that no event from the rejected body was counted.
fn assert_rejection_leaves_connection_clean(server: TestServer, rejected: &[u8], status: u16) {
    let mut bytes = rejected.to_vec();
    bytes.extend_from_slice(&encode("GET", "/stats", &[], b""));
    let mut stream = connect(server.addr);
    stream.write_all(&bytes).expect("write the rejected request and GET /stats");
    let mut reader = BufReader::new(stream);

    let rejection = expect_response(&mut reader, "rejected request");
    assert_eq!(rejection.status, status, "rejected request: {}", describe(&rejection));
    error_message(&rejection);

    match next_response(&mut reader, "GET /stats after the rejection") {
        Next::Closed => {}
        Next::Response(follow_up) => {
            assert_ne!(
                follow_up.status,
                400,
                "body bytes of the rejected request were parsed as a request: {}",
                describe(&follow_up)
            );
            assert_eq!(follow_up.status, 200, "GET /stats after the rejection: {}", describe(&follow_up));
            assert_eq!(
                follow_up.json()["events_count"],
                0,
                "GET /stats after the rejection: {}",
                describe(&follow_up)
            );
        }
    }

    // A later event proves processing runs, so a smuggled event would have been counted
    // beside it. The drain summary then counts every event queued, processed or not.
    let sentinel = post_json(server.addr, &valid_event(1));
    assert_eq!(sentinel.status, 202, "sentinel event: {}", describe(&sentinel));
    server.wait_for_events(1);
    let summary = server.stop();
    assert_eq!(summary.accepted, 1, "events accepted, counting the sentinel: {summary:?}");
}

#[test]
fn keep_alive_serves_every_request() {
    let server = TestServer::start();
    let mut stream = connect(server.addr);
    let mut reader = BufReader::new(stream.try_clone().expect("clone the stream"));

    let requests = [
        encode("GET", "/healthz", &[], b""),
        encode("POST", "/ingest", &[JSON], valid_event(1).as_bytes()),
        encode("GET", "/stats", &[], b""),
    ];
    let expected_statuses = [200, 202, 200];
    for (index, (request, expected)) in requests.iter().zip(expected_statuses).enumerate() {
        stream.write_all(request).expect("write a request");
        let response = expect_response(&mut reader, &format!("request {index} on a kept-alive connection"));
        assert_eq!(response.status, expected, "request {index}: {}", describe(&response));
        assert_ne!(
            response.header("connection").map(str::to_ascii_lowercase).as_deref(),
            Some("close"),
            "request {index} closed the connection: {}",
            describe(&response)
        );
    }
}

#[test]
fn pipelined_requests_answer_in_order() {
    let server = TestServer::start();
    let mut pipeline = Vec::new();
    pipeline.extend(encode("POST", "/ingest", &[JSON], valid_event(1).as_bytes()));
    pipeline.extend(encode("GET", "/stats", &[], b""));
    pipeline.extend(encode("POST", "/ingest", &[JSON], valid_event(2).as_bytes()));
    pipeline.extend(encode("GET", "/healthz", &[], b""));
    pipeline.extend(encode("GET", "/stats", &[], b""));

    let mut stream = connect(server.addr);
    stream.write_all(&pipeline).expect("write the pipelined requests");
    let mut reader = BufReader::new(stream);
    let responses: Vec<Response> = (0..5)
        .map(|index| expect_response(&mut reader, &format!("pipelined request {index}")))
        .collect();

    for index in [0, 2] {
        let response = &responses[index];
        assert_eq!(response.status, 202, "pipelined POST /ingest {index}: {}", describe(response));
        assert_eq!(response.json()["accepted"], 1, "pipelined POST /ingest {index}: {}", describe(response));
    }
    for index in [1, 4] {
        let response = &responses[index];
        assert_eq!(response.status, 200, "pipelined GET /stats {index}: {}", describe(response));
        assert!(
            response.json()["events_count"].is_u64(),
            "pipelined GET /stats {index}: {}",
            describe(response)
        );
    }
    assert_eq!(responses[3].status, 200, "pipelined GET /healthz: {}", describe(&responses[3]));
    assert_eq!(
        responses[3].json()["status"],
        "ok",
        "pipelined GET /healthz: {}",
        describe(&responses[3])
    );
    server.wait_for_events(2);
}

#[test]
fn http_1_0_get_returns_200() {
    let server = TestServer::start();
    let mut stream = connect(server.addr);
    stream
        .write_all(b"GET /healthz HTTP/1.0\r\n\r\n")
        .expect("write the HTTP/1.0 request");
    let mut reader = BufReader::new(stream);

    let response = expect_response(&mut reader, "GET /healthz HTTP/1.0");
    assert_eq!(response.status, 200, "GET /healthz HTTP/1.0: {}", describe(&response));
    assert!(
        matches!(next_response(&mut reader, "after the HTTP/1.0 response"), Next::Closed),
        "an HTTP/1.0 connection without keep-alive stayed open after its response"
    );
}

#[test]
fn http_1_0_post_is_accepted() {
    let server = TestServer::start();
    let body = valid_event(1);
    let request = format!(
        "POST /ingest HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut stream = connect(server.addr);
    stream.write_all(request.as_bytes()).expect("write the HTTP/1.0 request");
    let mut reader = BufReader::new(stream);

    let response = expect_response(&mut reader, "POST /ingest HTTP/1.0");
    assert_eq!(response.status, 202, "POST /ingest HTTP/1.0: {}", describe(&response));
    server.wait_for_events(1);
}

#[test]
fn expect_continue_sends_100_before_body() {
    let server = TestServer::start();
    let body = valid_event(1);
    let length = body.len().to_string();
    let head = encode(
        "POST",
        "/ingest",
        &[JSON, ("Content-Length", &length), ("Expect", "100-continue")],
        b"",
    );
    let mut stream = connect(server.addr);
    let mut reader = BufReader::new(stream.try_clone().expect("clone the stream"));

    stream.write_all(&head).expect("write the request head");
    let interim = expect_response(&mut reader, "request head with Expect: 100-continue");
    assert_eq!(interim.status, 100, "answer to the request head: {}", describe(&interim));

    stream.write_all(body.as_bytes()).expect("write the body");
    let response = expect_response(&mut reader, "body after 100 Continue");
    assert_eq!(response.status, 202, "answer to the body: {}", describe(&response));
    server.wait_for_events(1);
}

#[test]
fn expect_continue_over_limit_is_413_before_body() {
    let server = small_limit_server();
    let length = (BODY_LIMIT + 1).to_string();
    let head = encode(
        "POST",
        "/ingest",
        &[JSON, ("Content-Length", &length), ("Expect", "100-continue")],
        b"",
    );
    let mut stream = connect(server.addr);
    stream.write_all(&head).expect("write the request head");
    let mut reader = BufReader::new(stream);

    let response = expect_response(&mut reader, "request head over the limit with Expect: 100-continue");
    assert_ne!(response.status, 100, "100 Continue for a body over the limit: {}", describe(&response));
    assert_eq!(response.status, 413, "request head over the limit: {}", describe(&response));
    error_message(&response);
}

#[test]
fn body_over_limit_is_413() {
    let server = small_limit_server();
    let body = format!("{}{}", valid_event(1), " ".repeat(BODY_LIMIT));

    let response = send(server.addr, "POST", "/ingest", &[JSON], body.as_bytes());
    assert_eq!(response.status, 413, "body of {} bytes: {}", body.len(), describe(&response));
    error_message(&response);
}

#[test]
fn chunked_body_over_limit_is_413() {
    let server = small_limit_server();
    let body = format!("{}{}", valid_event(1), " ".repeat(2 * BODY_LIMIT));

    // Many small chunks leave several unread behind the one that crosses the limit.
    let request = encode(
        "POST",
        "/ingest",
        &[JSON, ("Transfer-Encoding", "chunked")],
        &chunked(body.as_bytes(), 128),
    );
    let mut stream = connect(server.addr);
    stream.write_all(&request).expect("write the chunked request");
    let mut reader = BufReader::new(stream);

    let response = expect_response(&mut reader, "chunked body over the limit");
    assert_eq!(response.status, 413, "chunked body of {} bytes: {}", body.len(), describe(&response));
    error_message(&response);
}

#[test]
fn chunked_body_within_limit_is_accepted() {
    let server = small_limit_server();
    let body = valid_event(1);

    let response = send(
        server.addr,
        "POST",
        "/ingest",
        &[JSON, ("Transfer-Encoding", "chunked")],
        &chunked(body.as_bytes(), 16),
    );
    assert_eq!(response.status, 202, "chunked body of {} bytes: {}", body.len(), describe(&response));
    server.wait_for_events(1);
}

#[test]
fn body_at_limit_is_accepted() {
    let server = small_limit_server();
    let event = valid_event(1);
    let body = format!("{event}{}", " ".repeat(BODY_LIMIT - event.len()));
    assert_eq!(body.len(), BODY_LIMIT);

    let response = send(server.addr, "POST", "/ingest", &[JSON], body.as_bytes());
    assert_eq!(response.status, 202, "body of exactly {BODY_LIMIT} bytes: {}", describe(&response));
    server.wait_for_events(1);
}

#[test]
fn connection_clean_after_415() {
    let server = TestServer::start();
    let rejected = encode(
        "POST",
        "/ingest",
        &[("Content-Type", "text/plain")],
        &smuggled_request(0),
    );
    assert_rejection_leaves_connection_clean(server, &rejected, 415);
}

#[test]
fn connection_clean_after_413_by_length() {
    let server = small_limit_server();
    let rejected = encode("POST", "/ingest", &[JSON], &smuggled_request(BODY_LIMIT + 100));
    assert_rejection_leaves_connection_clean(server, &rejected, 413);
}

#[test]
fn connection_clean_after_405_with_body() {
    let server = TestServer::start();
    let rejected = encode("PUT", "/ingest", &[JSON], &smuggled_request(0));
    assert_rejection_leaves_connection_clean(server, &rejected, 405);
}

#[test]
fn connection_clean_after_413_chunked() {
    let server = small_limit_server();
    let body = chunked(&smuggled_request(BODY_LIMIT * 2), 400);
    let rejected = encode("POST", "/ingest", &[JSON, ("Transfer-Encoding", "chunked")], &body);
    assert_rejection_leaves_connection_clean(server, &rejected, 413);
}

#[test]
fn missing_content_type_is_json() {
    let server = TestServer::start();
    let response = send(server.addr, "POST", "/ingest", &[], valid_event(1).as_bytes());
    assert_eq!(response.status, 202, "POST /ingest without Content-Type: {}", describe(&response));
}

#[test]
fn json_content_type_ignores_case_and_charset() {
    let server = TestServer::start();
    for content_type in ["application/json; charset=utf-8", "APPLICATION/JSON"] {
        let response = send(
            server.addr,
            "POST",
            "/ingest",
            &[("Content-Type", content_type)],
            valid_event(1).as_bytes(),
        );
        assert_eq!(response.status, 202, "Content-Type {content_type:?}: {}", describe(&response));
    }
}

#[test]
fn text_plain_is_415() {
    let server = TestServer::start();
    let response = send(
        server.addr,
        "POST",
        "/ingest",
        &[("Content-Type", "text/plain")],
        valid_event(1).as_bytes(),
    );
    assert_eq!(response.status, 415, "Content-Type text/plain: {}", describe(&response));
    let message = error_message(&response);
    assert!(
        message.contains("application/json"),
        "the 415 error does not name application/json: {message}"
    );
}

#[test]
fn brotli_encoding_is_415() {
    let server = TestServer::start();
    let response = send(
        server.addr,
        "POST",
        "/ingest",
        &[JSON, ("Content-Encoding", "br")],
        valid_event(1).as_bytes(),
    );
    assert_eq!(response.status, 415, "Content-Encoding br: {}", describe(&response));
    let message = error_message(&response);
    assert!(
        message.contains("identity"),
        "the 415 error does not name the supported encodings: {message}"
    );
}

#[test]
fn get_ingest_is_405_allow_post() {
    let server = TestServer::start();
    let response = get(server.addr, "/ingest");
    assert_eq!(response.status, 405, "GET /ingest: {}", describe(&response));
    assert_eq!(response.header("allow"), Some("POST"), "GET /ingest: {}", describe(&response));
    error_message(&response);
}

#[test]
fn post_stats_is_405_allow_get() {
    let server = TestServer::start();
    let response = send(server.addr, "POST", "/stats", &[], b"");
    assert_eq!(response.status, 405, "POST /stats: {}", describe(&response));
    let allow = response.header("allow").unwrap_or_default();
    assert!(
        allow.split(',').any(|method| method.trim() == "GET"),
        "Allow of POST /stats does not list GET: {}",
        describe(&response)
    );
    error_message(&response);
}

#[test]
fn delete_stats_source_is_405() {
    let server = TestServer::start();
    let response = send(server.addr, "DELETE", "/stats/1", &[], b"");
    assert_eq!(response.status, 405, "DELETE /stats/1: {}", describe(&response));
    assert!(response.header("allow").is_some(), "DELETE /stats/1 has no Allow: {}", describe(&response));
    error_message(&response);
}

#[test]
fn unknown_path_is_404() {
    let server = TestServer::start();
    let response = get(server.addr, "/no-such-path");
    assert_eq!(response.status, 404, "GET /no-such-path: {}", describe(&response));
    error_message(&response);
}

#[test]
fn invalid_json_is_400_with_error() {
    let server = TestServer::start();
    let response = post_json(server.addr, "{");
    assert_eq!(response.status, 400, "POST /ingest with `{{`: {}", describe(&response));
    error_message(&response);
}

#[test]
fn health_endpoints_are_200() {
    let server = TestServer::start();
    for path in ["/healthz", "/readyz"] {
        let response = get(server.addr, path);
        assert_eq!(response.status, 200, "GET {path}: {}", describe(&response));
    }
}

#[test]
fn metrics_lists_every_family() {
    let server = TestServer::start();
    let warm_up = get(server.addr, "/healthz");
    assert_eq!(warm_up.status, 200, "GET /healthz: {}", describe(&warm_up));

    let response = get(server.addr, "/metrics");
    assert_eq!(response.status, 200, "GET /metrics: {}", describe(&response));
    let content_type = response.header("content-type").unwrap_or_default();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "GET /metrics Content-Type: {content_type:?}"
    );
    let text = response.text();
    for name in [
        "telemetron_http_requests_total",
        "telemetron_http_requests_duration_seconds_bucket",
        "telemetron_ingest_events_accepted_total",
        "telemetron_ingest_events_rejected_total",
        "telemetron_events_processed_total",
        "telemetron_processor_plugin_errors_total",
        "telemetron_queue_depth_events",
    ] {
        assert!(text.contains(name), "GET /metrics has no {name}:\n{text}");
    }
}

#[test]
fn unfinished_headers_close_connection() {
    let server = TestServer::with_config(|config| config.http.header_read_timeout_ms = 300);
    let mut stream = connect(server.addr);
    stream
        .set_read_timeout(Some(HEADER_TIMEOUT_BOUND))
        .expect("set the read timeout");
    let started = Instant::now();
    stream
        .write_all(b"POST /ingest HTTP/1.1\r\nHost: x\r\n")
        .expect("write part of the request head");

    // The server may send a 408 before closing, so read to the end and look at it after.
    let mut received = Vec::new();
    let outcome = stream.read_to_end(&mut received);
    let elapsed = started.elapsed();
    match outcome {
        Ok(_) => {}
        Err(error) if error.kind() == ErrorKind::ConnectionReset => {}
        Err(error) => panic!(
            "the connection was still open after {elapsed:?} ({error}); received {:?}",
            String::from_utf8_lossy(&received)
        ),
    }
    assert!(elapsed < HEADER_TIMEOUT_BOUND, "the connection closed only after {elapsed:?}");
    assert!(
        received.is_empty() || received.starts_with(b"HTTP/1.1 408"),
        "answer to unfinished headers: {:?}",
        String::from_utf8_lossy(&received)
    );
}

/// Sends `bytes` and shuts down the write side, so the server reads EOF after them. Returns
/// the status of the first response, if any, once the server closes the connection.
fn send_raw_until_closed(addr: SocketAddr, bytes: &[u8]) -> Option<u16> {
    let mut stream = connect(addr);
    stream.write_all(bytes).expect("write the raw request");
    stream.shutdown(Shutdown::Write).expect("shut down the write side");

    let mut received = Vec::new();
    match stream.read_to_end(&mut received) {
        Ok(_) => {}
        Err(error) if error.kind() == ErrorKind::ConnectionReset => {}
        Err(error) => panic!(
            "the server neither closed nor reset the connection for {:?} ({error})",
            String::from_utf8_lossy(bytes)
        ),
    }
    let text = String::from_utf8_lossy(&received);
    let status_line = text.lines().next()?;
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("malformed status line {status_line:?}"));
    Some(status)
}

#[test]
fn malformed_requests_leave_server_healthy() {
    let server = TestServer::start();
    let inputs: [&[u8]; 10] = [
        b"GARBAGE\r\n\r\n",
        b"GET\r\n\r\n",
        b"GET /healthz HTTP/9.9\r\n\r\n",
        b"\x00\xff\xfe\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHo\x00st: x\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nno colon here\r\n\r\n",
        b"POST /ingest HTTP/1.1\r\nContent-Length: abc\r\n\r\n{}",
        b"POST /ingest HTTP/1.1\r\nContent-Length: -1\r\n\r\n{}",
        b"POST /ingest HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
        b"POST /ingest HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
    ];
    for input in inputs {
        let status = send_raw_until_closed(server.addr, input);
        if let Some(status) = status {
            assert!(
                (400..500).contains(&status),
                "status {status} for malformed input {:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    let response = get(server.addr, "/healthz");
    assert_eq!(response.status, 200, "GET /healthz after malformed input: {}", describe(&response));
}

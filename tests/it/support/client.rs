//! A deliberately small blocking HTTP/1.1 client over `std::net::TcpStream`, so tests
//! control every byte on the wire (pipelining, early rejections, malformed requests).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Maximum wait for any single read in a test.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// One parsed HTTP response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// Returns the first header with this name, compared without regard to case.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// Parses the body as JSON, failing the test if it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|error| panic!("body is not JSON ({error}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// Returns the body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Opens a connection with the test read timeout set.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect to the test server");
    stream.set_read_timeout(Some(READ_TIMEOUT)).expect("set read timeout");
    stream.set_nodelay(true).expect("set nodelay");
    stream
}

/// Encodes a request with Content-Length (unless a Transfer-Encoding header is given).
pub fn encode(method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    let chunked = headers.iter().any(|(name, _)| name.eq_ignore_ascii_case("transfer-encoding"));
    let has_length = headers.iter().any(|(name, _)| name.eq_ignore_ascii_case("content-length"));
    if !chunked && !has_length && (!body.is_empty() || method == "POST") {
        request.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    request.push_str("\r\n");
    let mut bytes = request.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// Sends one request on a new connection and reads one response.
pub fn send(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
    let mut stream = connect(addr);
    stream
        .write_all(&encode(method, path, headers, body))
        .expect("write request");
    let mut reader = BufReader::new(stream);
    read_response(&mut reader).expect("a complete response")
}

/// `GET path`.
pub fn get(addr: SocketAddr, path: &str) -> Response {
    send(addr, "GET", path, &[], b"")
}

/// `POST /ingest` with a JSON body.
pub fn post_json(addr: SocketAddr, body: &str) -> Response {
    send(addr, "POST", "/ingest", &[("Content-Type", "application/json")], body.as_bytes())
}

/// Reads one response; returns `None` if the connection closed before a status line.
pub fn read_response(reader: &mut BufReader<TcpStream>) -> Option<Response> {
    let mut status_line = String::new();
    if reader.read_line(&mut status_line).ok()? == 0 {
        return None;
    }
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("malformed status line {status_line:?}"));

    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).expect("read header line");
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':').expect("header has a colon");
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }

    let mut response = Response {
        status,
        headers,
        body: Vec::new(),
    };
    if status == 100 {
        return Some(response);
    }
    if let Some(length) = response.header("content-length") {
        let length: usize = length.parse().expect("numeric content-length");
        response.body = vec![0; length];
        reader.read_exact(&mut response.body).expect("read body");
    } else if response
        .header("transfer-encoding")
        .is_some_and(|value| value.eq_ignore_ascii_case("chunked"))
    {
        loop {
            let mut size_line = String::new();
            reader.read_line(&mut size_line).expect("read chunk size");
            let size = usize::from_str_radix(size_line.trim(), 16).expect("hex chunk size");
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk).expect("read chunk");
            if size == 0 {
                break;
            }
            response.body.extend_from_slice(&chunk[..size]);
        }
    }
    Some(response)
}

/// Returns true if the server closed the connection (EOF) within the read timeout.
pub fn closed_by_server(reader: &mut BufReader<TcpStream>) -> bool {
    let mut byte = [0u8; 1];
    matches!(reader.read(&mut byte), Ok(0))
}

/// Returns a valid single event for `source_id`.
pub fn event(source_id: u64, event_type: &str, timestamp: &str) -> String {
    serde_json::json!({ "sourceId": source_id, "type": event_type, "timestamp": timestamp }).to_string()
}

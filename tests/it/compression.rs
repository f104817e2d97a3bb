//! Content-Encoding: gzip (multi-member), deflate, zstd and identity are decoded; other
//! codings get 415, corrupt data 400, and bodies inflating past the limit 413.

use std::io::Write;

use crate::support::client::event;
use crate::support::{send, Response, TestServer};

const TS: &str = "2024-06-01T00:00:00Z";

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(data).expect("compress");
    encoder.finish().expect("finish")
}

fn post_encoded(server: &TestServer, encoding: &str, content_type: &str, body: &[u8]) -> Response {
    send(
        server.addr,
        "POST",
        "/ingest",
        &[("Content-Type", content_type), ("Content-Encoding", encoding)],
        body,
    )
}

#[test]
fn gzip_multi_member_body_is_decoded() {
    let server = TestServer::start();
    let mut body = gzip(format!("{}\n", event(1, "A", TS)).as_bytes());
    body.extend(gzip(format!("{}\n", event(2, "A", TS)).as_bytes()));
    let response = post_encoded(&server, "gzip", "application/x-ndjson", &body);
    assert_eq!(response.status, 202, "{}", response.text());
    assert_eq!(response.json()["accepted"], 2, "both gzip members are read");
    server.wait_for_events(2);
}

#[test]
fn zstd_and_deflate_bodies_are_decoded() {
    let server = TestServer::start();
    let zstd_body = zstd::stream::encode_all(event(1, "A", TS).as_bytes(), 3).expect("zstd");
    let response = post_encoded(&server, "zstd", "application/json", &zstd_body);
    assert_eq!(response.status, 202, "zstd: {}", response.text());

    let mut zlib = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
    zlib.write_all(event(2, "A", TS).as_bytes()).expect("compress");
    let response = post_encoded(&server, "deflate", "application/json", &zlib.finish().expect("finish"));
    assert_eq!(response.status, 202, "deflate: {}", response.text());

    let response = post_encoded(&server, "identity", "application/json", event(3, "A", TS).as_bytes());
    assert_eq!(response.status, 202, "identity: {}", response.text());
    server.wait_for_events(3);
}

#[test]
fn unsupported_encoding_is_415_naming_supported_ones() {
    let server = TestServer::start();
    let response = post_encoded(&server, "br", "application/json", event(1, "A", TS).as_bytes());
    assert_eq!(response.status, 415, "{}", response.text());
    let error = response.json()["error"].as_str().unwrap_or("").to_owned();
    assert!(error.contains("br"), "{error}");
    assert!(error.contains("gzip") && error.contains("zstd") && error.contains("deflate"), "{error}");
}

#[test]
fn corrupt_gzip_is_400() {
    let server = TestServer::start();
    let mut body = gzip(event(1, "A", TS).as_bytes());
    let middle = body.len() / 2;
    body[middle] ^= 0x55;
    body.truncate(body.len() - 3);
    let response = post_encoded(&server, "gzip", "application/json", &body);
    assert_eq!(response.status, 400, "{}", response.text());
    assert!(response.json()["error"].as_str().unwrap_or("").contains("gzip"));
}

#[test]
fn decompression_bomb_is_413() {
    let server = TestServer::with_config(|config| config.http.max_decompressed_bytes = 1024 * 1024);
    // 64 MiB of spaces compress to about 64 KiB: well under max_body_bytes.
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let block = vec![b' '; 1024 * 1024];
    for _ in 0..64 {
        encoder.write_all(&block).expect("compress");
    }
    let bomb = encoder.finish().expect("finish");
    assert!(bomb.len() < 1024 * 1024, "the bomb fits the raw body limit: {}", bomb.len());

    let response = post_encoded(&server, "gzip", "application/json", &bomb);
    assert_eq!(response.status, 413, "{}", response.text());
    assert!(response.json()["error"]
        .as_str()
        .unwrap_or("")
        .contains("max_decompressed_bytes"));
    assert_eq!(crate::support::get(server.addr, "/healthz").status, 200);
}

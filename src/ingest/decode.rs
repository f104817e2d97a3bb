//! Content-Encoding decoding of request bodies: gzip (multi-member streams too), deflate
//! (zlib-wrapped or raw) and zstd, each streamed and stopped at a size limit so that a small
//! body that inflates to gigabytes costs bounded memory and CPU.

use std::io::Read;

use bytes::Bytes;

/// Largest zstd window accepted, as a power of two (16 MiB). zstd lets the sender choose
/// the window, and the decoder allocates it up front, so an unbounded window would let a
/// tiny frame claim gigabytes.
const ZSTD_WINDOW_LOG_MAX: u32 = 24;

/// A content coding `/ingest` can decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContentCoding {
    /// `gzip` or `x-gzip`.
    Gzip,
    /// `deflate`: zlib-wrapped as HTTP specifies, or raw deflate as some clients send.
    Deflate,
    /// `zstd`.
    Zstd,
}

/// The encodings accepted, for error messages.
pub const SUPPORTED_ENCODINGS: &str = "gzip, deflate, zstd, identity";

impl ContentCoding {
    /// Parses one coding name; `identity` returns `Ok(None)`.
    ///
    /// # Errors
    /// Returns the name back when it is not supported.
    pub fn from_name(name: &str) -> Result<Option<ContentCoding>, String> {
        let name = name.trim();
        if name.eq_ignore_ascii_case("identity") {
            Ok(None)
        } else if name.eq_ignore_ascii_case("gzip") || name.eq_ignore_ascii_case("x-gzip") {
            Ok(Some(ContentCoding::Gzip))
        } else if name.eq_ignore_ascii_case("deflate") {
            Ok(Some(ContentCoding::Deflate))
        } else if name.eq_ignore_ascii_case("zstd") {
            Ok(Some(ContentCoding::Zstd))
        } else {
            Err(name.chars().take(100).collect())
        }
    }

    /// Returns the coding's name as used in Content-Encoding.
    pub fn name(self) -> &'static str {
        match self {
            ContentCoding::Gzip => "gzip",
            ContentCoding::Deflate => "deflate",
            ContentCoding::Zstd => "zstd",
        }
    }
}

/// Reason a body could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The decoded body passed the limit; decoding stopped there.
    #[error("decompressed body is larger than the {limit} bytes allowed by http.max_decompressed_bytes; send smaller requests")]
    TooLarge {
        /// The configured limit.
        limit: usize,
    },
    /// The compressed data is invalid.
    #[error("invalid {coding} data: {source}; check that Content-Encoding matches the body")]
    Corrupt {
        /// The coding that failed.
        coding: &'static str,
        /// The decoder's error.
        #[source]
        source: std::io::Error,
    },
}

/// Decodes `body` by undoing `codings` in reverse order (the order in which they were
/// applied is the header's order), stopping as soon as the output passes `limit` bytes.
///
/// # Errors
/// [`DecodeError::TooLarge`] past the limit, [`DecodeError::Corrupt`] for invalid data.
pub fn decode(body: Bytes, codings: &[ContentCoding], limit: usize) -> Result<Bytes, DecodeError> {
    let mut data = body;
    for &coding in codings.iter().rev() {
        data = decode_one(&data, coding, limit)?;
    }
    Ok(data)
}

fn decode_one(input: &[u8], coding: ContentCoding, limit: usize) -> Result<Bytes, DecodeError> {
    let corrupt = |source| DecodeError::Corrupt {
        coding: coding.name(),
        source,
    };
    match coding {
        ContentCoding::Gzip => read_capped(flate2::read::MultiGzDecoder::new(input), coding, limit),
        ContentCoding::Deflate if is_zlib_header(input) => {
            read_capped(flate2::read::ZlibDecoder::new(input), coding, limit)
        }
        ContentCoding::Deflate => read_capped(flate2::read::DeflateDecoder::new(input), coding, limit),
        ContentCoding::Zstd => {
            let mut decoder = zstd::stream::read::Decoder::with_buffer(input).map_err(corrupt)?;
            decoder.window_log_max(ZSTD_WINDOW_LOG_MAX).map_err(corrupt)?;
            read_capped(decoder, coding, limit)
        }
    }
}

/// Checks for a zlib header. A zlib stream starts with a CMF byte naming deflate (low nibble 8) and a check that
/// makes the first two bytes a multiple of 31 (RFC 1950, section 2.2).
fn is_zlib_header(input: &[u8]) -> bool {
    match input {
        [cmf, flg, ..] => cmf & 0x0f == 8 && (u16::from(*cmf) << 8 | u16::from(*flg)) % 31 == 0,
        _ => false,
    }
}

fn read_capped(reader: impl Read, coding: ContentCoding, limit: usize) -> Result<Bytes, DecodeError> {
    let mut output = Vec::new();
    // Reading one byte past the limit distinguishes "exactly at the limit" from "over it".
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    reader
        .take(cap)
        .read_to_end(&mut output)
        .map_err(|source| DecodeError::Corrupt {
            coding: coding.name(),
            source,
        })?;
    if output.len() > limit {
        return Err(DecodeError::TooLarge { limit });
    }
    Ok(Bytes::from(output))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(data).expect("compress");
        encoder.finish().expect("finish")
    }

    #[test]
    fn decodes_multi_member_gzip() {
        let mut body = gzip(b"hello ");
        body.extend(gzip(b"world"));
        let decoded = decode(Bytes::from(body), &[ContentCoding::Gzip], 100).expect("valid gzip");
        assert_eq!(&decoded[..], b"hello world");
    }

    #[test]
    fn decodes_zlib_and_raw_deflate() {
        let mut zlib = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        zlib.write_all(b"zlib body").expect("compress");
        let zlib = zlib.finish().expect("finish");
        let mut raw = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        raw.write_all(b"raw body").expect("compress");
        let raw = raw.finish().expect("finish");

        let decoded = decode(Bytes::from(zlib), &[ContentCoding::Deflate], 100).expect("zlib");
        assert_eq!(&decoded[..], b"zlib body");
        let decoded = decode(Bytes::from(raw), &[ContentCoding::Deflate], 100).expect("raw deflate");
        assert_eq!(&decoded[..], b"raw body");
    }

    #[test]
    fn decodes_zstd() {
        let body = zstd::stream::encode_all(&b"zstd body"[..], 3).expect("compress");
        let decoded = decode(Bytes::from(body), &[ContentCoding::Zstd], 100).expect("zstd");
        assert_eq!(&decoded[..], b"zstd body");
    }

    #[test]
    fn stops_at_limit() {
        let bomb = gzip(&vec![b'a'; 10_000_000]);
        assert!(bomb.len() < 20_000, "the test body is small: {}", bomb.len());
        let error = decode(Bytes::from(bomb), &[ContentCoding::Gzip], 1_000_000).expect_err("over limit");
        assert!(matches!(error, DecodeError::TooLarge { limit: 1_000_000 }));
    }

    #[test]
    fn accepts_body_exactly_at_limit() {
        let body = gzip(&[b'x'; 64]);
        let decoded = decode(Bytes::from(body), &[ContentCoding::Gzip], 64).expect("at limit");
        assert_eq!(decoded.len(), 64);
    }

    #[test]
    fn corrupt_gzip_is_an_error() {
        let mut body = gzip(b"some data to compress");
        let middle = body.len() / 2;
        body[middle] ^= 0xff;
        body.truncate(body.len() - 4);
        let error = decode(Bytes::from(body), &[ContentCoding::Gzip], 100).expect_err("corrupt");
        assert!(matches!(error, DecodeError::Corrupt { coding: "gzip", .. }));
    }

    #[test]
    fn undoes_codings_in_reverse_order() {
        let inner = gzip(b"twice");
        let outer = zstd::stream::encode_all(&inner[..], 3).expect("compress");
        let codings = [ContentCoding::Gzip, ContentCoding::Zstd];
        let decoded = decode(Bytes::from(outer), &codings, 100).expect("gzip then zstd");
        assert_eq!(&decoded[..], b"twice");
    }

    #[test]
    fn coding_names() {
        assert_eq!(ContentCoding::from_name("GZIP"), Ok(Some(ContentCoding::Gzip)));
        assert_eq!(ContentCoding::from_name("identity"), Ok(None));
        assert_eq!(ContentCoding::from_name("br"), Err("br".to_owned()));
    }
}

//! Content codings of upstream bodies: which ones a masked route accepts,
//! and decoding them with the decompressed size bounded, so that a small
//! compressed body cannot expand past the route's limit.

use std::io::Read;

use http::header::{HeaderMap, HeaderValue, ACCEPT_ENCODING, CONTENT_ENCODING};

/// A content coding the gateway can decode (RFC 9110 section 8.4.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Coding {
    Gzip,
    /// zlib-wrapped deflate as RFC 9110 defines it, or raw deflate as some
    /// servers send it and browsers accept.
    Deflate,
    Brotli,
}

/// Why a body could not be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// `Content-Encoding` names a coding the gateway cannot decode.
    Unknown,
    /// The data is not valid in its coding (corrupt or cut off).
    Invalid,
    /// The decoded body is larger than the limit.
    TooLarge,
}

/// Codings kept in a masked route's `Accept-Encoding`, so that the upstream
/// picks one the gateway can decode.
const DECODABLE: &[&str] = &["gzip", "x-gzip", "deflate", "br", "identity"];

/// Buffer size of the brotli decoder.
const BROTLI_BUFFER: usize = 4096;

/// Returns the codings of `headers` in the order they were applied, or
/// `Unknown` for one the gateway cannot decode. `identity` is skipped.
pub fn codings(headers: &HeaderMap) -> Result<Vec<Coding>, DecodeError> {
    let mut codings = Vec::new();
    for value in headers.get_all(CONTENT_ENCODING) {
        let text = value.to_str().map_err(|_| DecodeError::Unknown)?;
        for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            match name.to_ascii_lowercase().as_str() {
                "gzip" | "x-gzip" => codings.push(Coding::Gzip),
                "deflate" => codings.push(Coding::Deflate),
                "br" => codings.push(Coding::Brotli),
                "identity" => {}
                _ => return Err(DecodeError::Unknown),
            }
        }
    }
    Ok(codings)
}

/// Decodes `body`, encoded with `codings` in that order, to at most `limit`
/// bytes. Each step stops reading one byte past the limit.
pub fn decode(body: &[u8], codings: &[Coding], limit: u64) -> Result<Vec<u8>, DecodeError> {
    let mut data = body.to_vec();
    for coding in codings.iter().rev() {
        data = decode_one(&data, *coding, limit)?;
    }
    Ok(data)
}

fn decode_one(data: &[u8], coding: Coding, limit: u64) -> Result<Vec<u8>, DecodeError> {
    match coding {
        Coding::Gzip => read_bounded(flate2::read::MultiGzDecoder::new(data), limit),
        Coding::Deflate if has_zlib_header(data) => {
            read_bounded(flate2::read::ZlibDecoder::new(data), limit)
        }
        Coding::Deflate => read_bounded(flate2::read::DeflateDecoder::new(data), limit),
        Coding::Brotli => read_bounded(
            brotli_decompressor::Decompressor::new(data, BROTLI_BUFFER),
            limit,
        ),
    }
}

/// Checks the two-byte zlib header of RFC 1950: method 8 (deflate), a
/// window of at most 32 KiB, and a check value that makes the pair a
/// multiple of 31.
fn has_zlib_header(data: &[u8]) -> bool {
    let [cmf, flg, ..] = *data else {
        return false;
    };
    cmf & 0x0f == 8 && cmf >> 4 <= 7 && (u16::from(cmf) << 8 | u16::from(flg)) % 31 == 0
}

fn read_bounded(reader: impl Read, limit: u64) -> Result<Vec<u8>, DecodeError> {
    let mut output = Vec::new();
    reader
        .take(limit.saturating_add(1))
        .read_to_end(&mut output)
        .map_err(|_| DecodeError::Invalid)?;
    if output.len() as u64 > limit {
        return Err(DecodeError::TooLarge);
    }
    Ok(output)
}

/// Removes from a request's `Accept-Encoding` every coding the gateway
/// cannot decode, and asks for `identity` when none is left.
pub fn restrict_accept_encoding(headers: &mut HeaderMap) {
    let Some(value) = headers.get(ACCEPT_ENCODING) else {
        return;
    };
    let text = value.to_str().unwrap_or_default();
    let kept: Vec<&str> = text
        .split(',')
        .map(str::trim)
        .filter(|item| {
            let name = item.split(';').next().unwrap_or_default().trim();
            DECODABLE
                .iter()
                .any(|known| known.eq_ignore_ascii_case(name))
        })
        .collect();
    let value = if kept.is_empty() {
        HeaderValue::from_static("identity")
    } else {
        HeaderValue::from_str(&kept.join(", ")).unwrap_or(HeaderValue::from_static("identity"))
    };
    headers.insert(ACCEPT_ENCODING, value);
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    const TEXT: &[u8] = b"{\"email\":\"ann@example.com\",\"card\":\"4111 1111 1111 1111\"}";

    /// `TEXT` compressed by Node.js 20 `zlib.brotliCompressSync`.
    const TEXT_BROTLI: &str = "1b3700889d07b62decb61a7e048fec86b5881bd0de8c1101499ab0be62d181891c3804d622bdc3bb00c72748173055ebe4adf8bf20f8";

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    fn zlib(data: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    fn raw_deflate(data: &[u8]) -> Vec<u8> {
        let mut encoder =
            flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    fn headers(content_encoding: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_ENCODING, content_encoding.parse().unwrap());
        headers
    }

    #[test]
    fn each_coding_decodes() {
        let cases = [
            ("gzip", gzip(TEXT), vec![Coding::Gzip]),
            ("zlib deflate", zlib(TEXT), vec![Coding::Deflate]),
            ("raw deflate", raw_deflate(TEXT), vec![Coding::Deflate]),
            (
                "brotli",
                hex::decode(TEXT_BROTLI).unwrap(),
                vec![Coding::Brotli],
            ),
            (
                "gzip then deflate",
                zlib(&gzip(TEXT)),
                vec![Coding::Gzip, Coding::Deflate],
            ),
            ("no coding", TEXT.to_vec(), vec![]),
        ];

        for (description, encoded, codings) in cases {
            let decoded = decode(&encoded, &codings, 1 << 20);
            assert_eq!(decoded.as_deref(), Ok(TEXT), "{description}");
        }
    }

    #[test]
    fn content_encoding_parsed_in_order() {
        let cases = [
            ("single gzip", "gzip", Ok(vec![Coding::Gzip])),
            ("alias and case", "X-GZIP", Ok(vec![Coding::Gzip])),
            (
                "list",
                "deflate, br",
                Ok(vec![Coding::Deflate, Coding::Brotli]),
            ),
            ("identity skipped", "identity", Ok(vec![])),
            ("zstd unknown", "zstd", Err(DecodeError::Unknown)),
            (
                "compress unknown",
                "gzip, compress",
                Err(DecodeError::Unknown),
            ),
        ];

        for (description, value, expected) in cases {
            assert_eq!(codings(&headers(value)), expected, "{description}");
        }
    }

    #[test]
    fn decompression_bomb_stops_at_limit() {
        let bomb = gzip(&vec![b' '; 16 << 20]);
        assert!(bomb.len() < 64 << 10, "the bomb compresses well");

        assert_eq!(
            decode(&bomb, &[Coding::Gzip], 1 << 20),
            Err(DecodeError::TooLarge)
        );
    }

    #[test]
    fn corrupt_or_truncated_data_invalid() {
        let compressed = gzip(TEXT);
        let truncated = &compressed[..compressed.len() - 6];
        let brotli = hex::decode(TEXT_BROTLI).unwrap();
        let cases: [(&str, &[u8], Coding); 4] = [
            ("gzip truncated", truncated, Coding::Gzip),
            ("gzip of plain text", TEXT, Coding::Gzip),
            (
                "brotli truncated",
                &brotli[..brotli.len() / 2],
                Coding::Brotli,
            ),
            ("deflate of garbage", b"\xff\xff\xff\xff", Coding::Deflate),
        ];

        for (description, data, coding) in cases {
            assert_eq!(
                decode(data, &[coding], 1 << 20),
                Err(DecodeError::Invalid),
                "{description}"
            );
        }
    }

    #[test]
    fn accept_encoding_keeps_decodable_codings() {
        let cases = [
            ("all decodable", "gzip, deflate, br", "gzip, deflate, br"),
            (
                "zstd removed",
                "zstd, br;q=0.9, gzip;q=0.5",
                "br;q=0.9, gzip;q=0.5",
            ),
            ("nothing decodable", "zstd", "identity"),
            ("wildcard removed", "*", "identity"),
        ];

        for (description, sent, expected) in cases {
            let mut headers = HeaderMap::new();
            headers.insert(ACCEPT_ENCODING, sent.parse().unwrap());
            restrict_accept_encoding(&mut headers);
            assert_eq!(headers[ACCEPT_ENCODING], expected, "{description}");
        }
    }
}

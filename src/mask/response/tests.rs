use std::io::Write;

use http_body_util::BodyExt;
use serde_json::json;

use super::*;
use crate::mask::{Detector, DetectorRule, FieldPath, FieldRule, MaskRules, MaskStyle, REDACTED};

const TIMEOUT: Duration = Duration::from_secs(5);

const USERS: &str = r#"[{"ssn":"123-45-6789","email":"ann@example.com","note":"card \u0034111 1111 1111 1111","id":4111111111111111}]"#;

fn masking() -> RouteMasking {
    RouteMasking::new(MaskRules {
        fields: vec![FieldRule {
            path: FieldPath::parse("$[*].ssn").unwrap(),
            style: MaskStyle::Redact,
        }],
        detectors: vec![
            DetectorRule {
                detector: Detector::Card,
                style: MaskStyle::Pci,
            },
            DetectorRule {
                detector: Detector::Email,
                style: MaskStyle::Redact,
            },
        ],
    })
}

fn fields_only() -> RouteMasking {
    let mut masking = masking();
    masking.has_detectors = false;
    masking
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

fn upstream(status: u16, headers: &[(&str, &str)], body: impl Into<Bytes>) -> Response<Body> {
    let mut builder = Response::builder().status(status);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(body::full(body.into())).unwrap()
}

async fn run(
    masking: &RouteMasking,
    method: Method,
    response: Response<Body>,
) -> Result<Outcome, Unmaskable> {
    mask(masking, &method, response, &Context::default(), TIMEOUT).await
}

async fn text(response: Response<Body>) -> String {
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

fn masked_users() -> serde_json::Value {
    json!([{
        "ssn": REDACTED,
        "email": REDACTED,
        "note": "card 4111 11** **** 1111",
        "id": "411111******1111",
    }])
}

#[tokio::test]
async fn json_masked_in_each_encoding() {
    let json_type = ("content-type", "application/json");
    let cases = [
        ("identity", vec![json_type], Bytes::from(USERS)),
        (
            "gzip",
            vec![json_type, ("content-encoding", "gzip")],
            Bytes::from(gzip(USERS.as_bytes())),
        ),
        (
            "problem+json",
            vec![("content-type", "application/problem+json; charset=utf-8")],
            Bytes::from(USERS),
        ),
        ("no content type", vec![], Bytes::from(USERS)),
    ];

    for (description, headers, body) in cases {
        let Ok(Outcome::Masked { response, count }) =
            run(&masking(), Method::GET, upstream(200, &headers, body)).await
        else {
            panic!("{description}: not masked");
        };
        assert_eq!(count, 4, "{description}");
        assert!(
            response.headers().get("content-encoding").is_none(),
            "{description}"
        );
        let length: usize = response.headers()["content-length"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        let body = text(response).await;
        assert_eq!(length, body.len(), "{description}");
        let value: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(value, masked_users(), "{description}");
    }
}

#[tokio::test]
async fn masked_headers_rewritten() {
    let headers = [
        ("content-type", "application/json"),
        ("etag", "\"v1\""),
        ("content-md5", "Q2hlY2sgSW50ZWdyaXR5IQ=="),
        ("digest", "sha-256=abc"),
        ("content-digest", "sha-256=:abc=:"),
        ("accept-ranges", "bytes"),
        ("x-request-id", "r1"),
    ];
    let Ok(Outcome::Masked { response, .. }) =
        run(&masking(), Method::GET, upstream(200, &headers, USERS)).await
    else {
        panic!("not masked");
    };

    for name in [
        "etag",
        "content-md5",
        "digest",
        "content-digest",
        "accept-ranges",
    ] {
        assert!(response.headers().get(name).is_none(), "{name} kept");
    }
    assert_eq!(response.headers()["x-request-id"], "r1");
}

#[tokio::test]
async fn weak_etag_kept() {
    let headers = [("content-type", "application/json"), ("etag", "W/\"v1\"")];
    let Ok(Outcome::Masked { response, .. }) =
        run(&masking(), Method::GET, upstream(200, &headers, USERS)).await
    else {
        panic!("not masked");
    };

    assert_eq!(response.headers()["etag"], "W/\"v1\"");
}

#[tokio::test]
async fn text_masked_by_detectors() {
    let headers = [("content-type", "text/plain; charset=utf-8")];
    let body = "mail ann@example.com, card 5500-0000-0000-0004";
    let Ok(Outcome::Masked { response, count }) =
        run(&masking(), Method::GET, upstream(200, &headers, body)).await
    else {
        panic!("not masked");
    };

    assert_eq!(count, 2);
    assert_eq!(
        text(response).await,
        "mail [REDACTED], card 5500-00**-****-0004"
    );
}

#[tokio::test]
async fn untouched_responses_keep_body_and_headers() {
    let json_type = ("content-type", "application/json");
    let clean = r#"{"id":1,"name":"Ann"}"#;
    let cases = [
        ("HEAD", Method::HEAD, 200, vec![json_type], USERS, masking()),
        ("204", Method::GET, 204, vec![json_type], "", masking()),
        ("304", Method::GET, 304, vec![json_type], "", masking()),
        (
            "image",
            Method::GET,
            200,
            vec![("content-type", "image/png")],
            USERS,
            masking(),
        ),
        (
            "text without detectors",
            Method::GET,
            200,
            vec![("content-type", "text/plain")],
            USERS,
            fields_only(),
        ),
        (
            "nothing matched",
            Method::GET,
            200,
            vec![json_type, ("etag", "\"v1\"")],
            clean,
            masking(),
        ),
        (
            "empty body",
            Method::GET,
            200,
            vec![json_type],
            "",
            masking(),
        ),
    ];

    for (description, method, status, headers, body, masking) in cases {
        let Ok(Outcome::Untouched(response)) =
            run(&masking, method, upstream(status, &headers, body)).await
        else {
            panic!("{description}: not untouched");
        };
        for (name, value) in &headers {
            assert_eq!(response.headers()[*name], *value, "{description}");
        }
        assert_eq!(text(response).await, body, "{description}");
    }
}

#[tokio::test]
async fn unmaskable_responses_kept_for_pass() {
    let json_type = ("content-type", "application/json");
    let big = format!("[{}]", vec!["\"ann@example.com\""; 100].join(","));
    let mut small = masking();
    small.max_body_bytes = 1000;
    let cases = [
        (
            "invalid json",
            200,
            vec![json_type],
            "{\"a\":",
            Failure::InvalidJson,
        ),
        (
            "206",
            206,
            vec![json_type, ("content-range", "bytes 0-3/10")],
            "[1,2",
            Failure::PartialContent,
        ),
        (
            "unknown coding",
            200,
            vec![json_type, ("content-encoding", "zstd")],
            "x",
            Failure::UnknownEncoding,
        ),
        (
            "corrupt gzip",
            200,
            vec![json_type, ("content-encoding", "gzip")],
            "not gzip",
            Failure::InvalidEncoding,
        ),
        (
            "octet-stream",
            200,
            vec![("content-type", "application/octet-stream")],
            "x",
            Failure::UnsupportedContentType,
        ),
        (
            "latin-1 text",
            200,
            vec![("content-type", "text/plain; charset=iso-8859-1")],
            "x",
            Failure::UnsupportedCharset,
        ),
        (
            "invalid utf-8 text",
            200,
            vec![("content-type", "text/plain")],
            "caf\u{e9}",
            Failure::InvalidText,
        ),
        (
            "over the limit",
            200,
            vec![json_type],
            big.as_str(),
            Failure::BodyTooLarge,
        ),
    ];

    for (description, status, headers, body, failure) in cases {
        let body_bytes = if description == "invalid utf-8 text" {
            Bytes::from_static(b"caf\xe9")
        } else {
            Bytes::from(body.to_string())
        };
        let Err(unmaskable) = run(
            &small,
            Method::GET,
            upstream(status, &headers, body_bytes.clone()),
        )
        .await
        else {
            panic!("{description}: masked");
        };
        assert_eq!(unmaskable.failure, failure, "{description}");
        let response = unmaskable.response.expect(description);
        for (name, value) in &headers {
            assert_eq!(response.headers()[*name], *value, "{description}");
        }
        let sent = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(sent, body_bytes, "{description}");
    }
}

#[tokio::test]
async fn decompression_bomb_fails_closed() {
    let bomb = gzip(&vec![b' '; 8 << 20]);
    let headers = [
        ("content-type", "application/json"),
        ("content-encoding", "gzip"),
    ];

    let Err(unmaskable) = run(&masking(), Method::GET, upstream(200, &headers, bomb)).await else {
        panic!("masked");
    };

    assert_eq!(unmaskable.failure, Failure::BodyTooLarge);
}

#[test]
fn cache_made_private_and_varied() {
    let cases = [
        ("nothing set", vec![], "private", "authorization"),
        (
            "public replaced",
            vec![("cache-control", "public, max-age=60, s-maxage=600")],
            "private, max-age=60",
            "authorization",
        ),
        (
            "no-store kept",
            vec![("cache-control", "no-store")],
            "no-store",
            "authorization",
        ),
        (
            "vary extended",
            vec![("vary", "Accept-Encoding")],
            "private",
            "Accept-Encoding, authorization",
        ),
        (
            "vary present",
            vec![("vary", "Authorization")],
            "private",
            "Authorization",
        ),
        ("vary star", vec![("vary", "*")], "private", "*"),
    ];

    for (description, given, cache_control, vary) in cases {
        let mut headers = HeaderMap::new();
        for (name, value) in given {
            headers.insert(name, HeaderValue::from_static(value));
        }
        protect_cache(&mut headers, &[header::AUTHORIZATION]);
        assert_eq!(headers["cache-control"], cache_control, "{description}");
        assert_eq!(headers["vary"], vary, "{description}");
    }
}

#[test]
fn range_headers_stripped() {
    let mut headers = HeaderMap::new();
    headers.insert(header::RANGE, HeaderValue::from_static("bytes=0-10"));
    headers.insert(header::IF_RANGE, HeaderValue::from_static("\"v1\""));
    headers.insert(
        header::ACCEPT_ENCODING,
        HeaderValue::from_static("zstd, gzip"),
    );

    prepare_request(&mut headers);

    assert!(headers.get(header::RANGE).is_none());
    assert!(headers.get(header::IF_RANGE).is_none());
    assert_eq!(headers[header::ACCEPT_ENCODING], "gzip");
}

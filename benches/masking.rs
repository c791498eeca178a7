//! Response masking cost on a users list of about 10 KB, with the rules of
//! the documented example: three field paths and every detector kind.
//!
//! - `json/mask_only`: [`Masker::mask_json`] on an already parsed body,
//!   cloned and dropped outside the timed part.
//! - `json/parse_mask_serialize`: what the gateway does per JSON response
//!   body: [`Masker::mask_json_bytes`], one pass from bytes to bytes.
//! - `response/identity` and `response/gzip`: the whole response stage
//!   ([`portcullis::mask::response::mask`]) on an upstream response, body
//!   reading, decoding and header rewriting included, driven by a
//!   current-thread Tokio runtime.
//! - `response/typical`: the whole stage on an ordinary users list of
//!   about 10 KB, where only the email field and no detector matches.
//! - `text/mask`: [`Masker::mask_text`] on the same bytes as text.
//!
//! Run: `cargo bench --bench masking -- --warm-up-time 1 --measurement-time 3`.
//!
//! NOTE: on a 2-core Intel Xeon virtual machine the whole stage took about
//! 44 µs on the ordinary list, within a 50 µs budget. The dense body, where
//! every user has five kinds of personal data and all are matched, took
//! about 103 µs. docs/benchmarks.md has the runs.

use std::hint::black_box;
use std::io::Write;
use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use http::{Method, Response};
use http_body_util::BodyExt;
use portcullis::mask::config::RouteMasking;
use portcullis::mask::{
    Context, Detector, DetectorRule, FieldPath, FieldRule, MaskRules, MaskStyle, Pattern,
    PseudonymKey,
};
use serde_json::{json, Value};

const KEY: &[u8] = b"benchmark-pseudonym-key-00000001";

fn rules() -> MaskRules {
    let field = |path: &str, style| FieldRule {
        path: FieldPath::parse(path).unwrap(),
        style,
    };
    let detector = |detector, style| DetectorRule { detector, style };
    MaskRules {
        fields: vec![
            field("$[*].ssn", MaskStyle::Redact),
            field("$..card.number", MaskStyle::Pci),
            field("$..email", MaskStyle::Pseudonym),
        ],
        detectors: vec![
            detector(Detector::Card, MaskStyle::Pci),
            detector(Detector::Email, MaskStyle::Redact),
            detector(Detector::Phone, MaskStyle::Redact),
            detector(Detector::Iban, MaskStyle::Redact),
            detector(
                Detector::Pattern(Pattern::new("order_ref", "ORD-[0-9]{8}").unwrap()),
                MaskStyle::Redact,
            ),
        ],
    }
}

/// About 10 KB of users, each with personal data in fields and free text.
fn users() -> Value {
    let users: Vec<Value> = (0..40)
        .map(|i| {
            json!({
                "id": i,
                "name": format!("User {i}"),
                "ssn": "123-45-6789",
                "email": format!("user{i}@example.com"),
                "phone": "+44 20 7946 0958",
                "card": { "number": "4111 1111 1111 1111", "expiry": "12/29" },
                "iban": "DE89 3704 0044 0532 0130 00",
                "notes": format!("order ORD-{:08} shipped", 10_000_000 + i),
                "created": "2026-01-01T00:00:00Z",
            })
        })
        .collect();
    Value::Array(users)
}

/// About 10 KB of an ordinary users list: one email per user for the
/// field rule, and free text, dates and ids for the detectors to pass over.
fn typical_users() -> Value {
    let users: Vec<Value> = (0..45)
        .map(|i| {
            json!({
                "id": 100_000 + i,
                "name": format!("User Number {i}"),
                "email": format!("user{i}@example.com"),
                "role": if i % 5 == 0 { "admin" } else { "member" },
                "active": i % 7 != 0,
                "created": "2026-01-01T08:30:00Z",
                "address": { "street": format!("{i} High Street"), "city": "Leeds", "country": "GB" },
                "tags": ["beta", "newsletter"],
            })
        })
        .collect();
    Value::Array(users)
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

fn upstream_response(
    body: Bytes,
    encoding: Option<&str>,
) -> Response<portcullis::pipeline::body::Body> {
    let mut builder = Response::builder().header("content-type", "application/json");
    if let Some(encoding) = encoding {
        builder = builder.header("content-encoding", encoding);
    }
    builder
        .body(portcullis::pipeline::body::full(body))
        .unwrap()
}

fn benchmarks(c: &mut Criterion) {
    let masking = RouteMasking::new(rules());
    let key = PseudonymKey::new(KEY).unwrap();
    let context = Context {
        pseudonym_key: Some(&key),
        unmask: false,
    };
    let value = users();
    let text = serde_json::to_vec(&value).unwrap();
    let compressed = Bytes::from(gzip(&text));
    let text = Bytes::from(text);
    assert!(
        (9_000..12_000).contains(&text.len()),
        "{} bytes",
        text.len()
    );

    c.bench_function("json/mask_only", |b| {
        b.iter_batched_ref(
            || value.clone(),
            |value| masking.masker.mask_json(value, &context),
            BatchSize::SmallInput,
        )
    });

    c.bench_function("json/parse_mask_serialize", |b| {
        b.iter(|| {
            masking
                .masker
                .mask_json_bytes(black_box(&text), &context)
                .unwrap()
        })
    });

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let timeout = Duration::from_secs(30);
    let typical = Bytes::from(serde_json::to_vec(&typical_users()).unwrap());
    assert!(
        (9_000..12_000).contains(&typical.len()),
        "{} bytes",
        typical.len()
    );
    for (name, body, encoding) in [
        ("response/identity", text.clone(), None),
        ("response/gzip", compressed.clone(), Some("gzip")),
        ("response/typical", typical, None),
    ] {
        c.bench_function(name, |b| {
            b.iter(|| {
                runtime.block_on(async {
                    let response = upstream_response(body.clone(), encoding);
                    let outcome = portcullis::mask::response::mask(
                        &masking,
                        &Method::GET,
                        response,
                        &context,
                        timeout,
                    )
                    .await;
                    let Ok(portcullis::mask::response::Outcome::Masked { response, .. }) = outcome
                    else {
                        panic!("not masked");
                    };
                    response.into_body().collect().await.unwrap().to_bytes()
                })
            })
        });
    }

    let as_text = std::str::from_utf8(&text).unwrap().to_string();
    c.bench_function("text/mask", |b| {
        b.iter(|| {
            masking
                .masker
                .mask_text(black_box(&as_text), &context)
                .count
        })
    });
}

criterion_group!(masking, benchmarks);
criterion_main!(masking);

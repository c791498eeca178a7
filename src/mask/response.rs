//! Masking of one upstream response: decides from the method, status and
//! content type whether the body can carry maskable data, reads it within
//! the route's limit, decodes it, masks it, and rewrites the headers that
//! described the upstream's bytes.

use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::response::Parts;
use http::{Method, Response, StatusCode};

use crate::mask::config::RouteMasking;
use crate::mask::encoding::{self, DecodeError};
use crate::mask::Context;
use crate::pipeline::body::{self, Body, Collected};

/// Cause of a response that could not be masked. Its reason is a metric
/// label and a log field, never sent to the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The body, as sent or decoded, is larger than `max_body_bytes`.
    BodyTooLarge,
    UnknownEncoding,
    /// The compressed data is corrupt or cut off.
    InvalidEncoding,
    InvalidJson,
    /// A text body that is not valid UTF-8.
    InvalidText,
    /// A text or JSON body in a charset other than UTF-8 or US-ASCII.
    UnsupportedCharset,
    /// A body type that is neither JSON, text nor media, such as
    /// `application/octet-stream`.
    UnsupportedContentType,
    /// A 206 response, which holds only part of a body.
    PartialContent,
    /// The upstream body broke off while it was read.
    UpstreamBodyFailed,
    /// The upstream body did not arrive within the upstream's response
    /// timeout.
    UpstreamBodyTimeout,
}

impl Failure {
    pub fn reason(self) -> &'static str {
        match self {
            Failure::BodyTooLarge => "body_too_large",
            Failure::UnknownEncoding => "unknown_encoding",
            Failure::InvalidEncoding => "invalid_encoding",
            Failure::InvalidJson => "invalid_json",
            Failure::InvalidText => "invalid_text",
            Failure::UnsupportedCharset => "unsupported_charset",
            Failure::UnsupportedContentType => "unsupported_content_type",
            Failure::PartialContent => "partial_content",
            Failure::UpstreamBodyFailed => "upstream_body_failed",
            Failure::UpstreamBodyTimeout => "upstream_body_timeout",
        }
    }
}

/// A response the masker could not handle.
pub struct Unmaskable {
    pub failure: Failure,
    /// The upstream response as received, for `on_error: pass`; `None` when
    /// its body failed and cannot be sent on.
    pub response: Option<Response<Body>>,
}

/// What masking did to a response.
pub enum Outcome {
    /// The body was rewritten; `count` values were masked.
    Masked {
        response: Response<Body>,
        count: usize,
    },
    /// The response is sent as the upstream sent it, because it has no body
    /// (HEAD, 204, 304), a media type, text while no detector is set, or
    /// nothing in it matched.
    Untouched(Response<Body>),
}

/// How the body is read, from its media type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BodyKind {
    Json,
    Text,
    /// No `Content-Type`: JSON when it parses, else UTF-8 text.
    Unlabelled,
    /// Images, audio, video and fonts, which pass unmasked.
    Media,
    Unsupported(Failure),
}

/// Headers that described the upstream's bytes and are wrong for a masked
/// body: integrity digests (RFC 1864, RFC 3230, RFC 9530) and ranges.
const STALE_HEADERS: &[&str] = &[
    "content-md5",
    "digest",
    "content-digest",
    "repr-digest",
    "accept-ranges",
    "content-range",
];

/// Masks `response` under the route's rules. The body is read within the
/// route's limit and `read_timeout`.
pub async fn mask(
    masking: &RouteMasking,
    method: &Method,
    response: Response<Body>,
    context: &Context<'_>,
    read_timeout: Duration,
) -> Result<Outcome, Unmaskable> {
    let status = response.status();
    let bodiless = *method == Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    if bodiless {
        return Ok(Outcome::Untouched(response));
    }
    if status == StatusCode::PARTIAL_CONTENT {
        return Err(pass_whole(Failure::PartialContent, response));
    }

    let kind = classify(response.headers());
    match kind {
        BodyKind::Media => return Ok(Outcome::Untouched(response)),
        BodyKind::Text if !masking.has_detectors => return Ok(Outcome::Untouched(response)),
        BodyKind::Unsupported(failure) => return Err(pass_whole(failure, response)),
        _ => {}
    }
    let codings = match encoding::codings(response.headers()) {
        Ok(codings) => codings,
        Err(_) => return Err(pass_whole(Failure::UnknownEncoding, response)),
    };
    if declared_length(response.headers()).is_some_and(|length| length > masking.max_body_bytes) {
        return Err(pass_whole(Failure::BodyTooLarge, response));
    }

    let (parts, raw) = read_body(response, masking.max_body_bytes, read_timeout).await?;
    let restore = |failure| Unmaskable {
        failure,
        response: Some(Response::from_parts(parts.clone(), body::full(raw.clone()))),
    };
    let decoded = match encoding::decode(&raw, &codings, masking.max_body_bytes) {
        Ok(decoded) => decoded,
        Err(DecodeError::TooLarge) => return Err(restore(Failure::BodyTooLarge)),
        Err(_) => return Err(restore(Failure::InvalidEncoding)),
    };

    let masked = match mask_body(masking, kind, &decoded, context) {
        Ok(Some(masked)) => masked,
        Ok(None) => {
            let response = Response::from_parts(parts, body::full(raw));
            return Ok(Outcome::Untouched(response));
        }
        Err(failure) => return Err(restore(failure)),
    };

    let (body, count) = masked;
    let mut parts = parts;
    describe_masked_body(&mut parts.headers, body.len());
    let response = Response::from_parts(parts, body::full(body));
    Ok(Outcome::Masked { response, count })
}

/// Masks a decoded body. Returns `None` when nothing was masked, so the
/// upstream's bytes can be sent as they are.
fn mask_body(
    masking: &RouteMasking,
    kind: BodyKind,
    decoded: &[u8],
    context: &Context<'_>,
) -> Result<Option<(Bytes, usize)>, Failure> {
    if decoded.is_empty() {
        return Ok(None);
    }
    let masked = match kind {
        BodyKind::Json => mask_json(masking, decoded, context)?,
        BodyKind::Text => mask_text(masking, decoded, context)?,
        _ => match mask_json(masking, decoded, context) {
            Ok(masked) => masked,
            Err(_) if masking.has_detectors => {
                mask_text(masking, decoded, context).map_err(|_| Failure::UnsupportedContentType)?
            }
            Err(_) if std::str::from_utf8(decoded).is_ok() => (Bytes::new(), 0),
            Err(_) => return Err(Failure::UnsupportedContentType),
        },
    };
    Ok(Some(masked).filter(|(_, count)| *count > 0))
}

fn mask_json(
    masking: &RouteMasking,
    decoded: &[u8],
    context: &Context<'_>,
) -> Result<(Bytes, usize), Failure> {
    // RFC 8259 section 8.1 lets a parser ignore a byte order mark.
    let json = decoded.strip_prefix(b"\xef\xbb\xbf").unwrap_or(decoded);
    let masked = masking.masker.mask_json_bytes(json, context);
    match masked.map_err(|_| Failure::InvalidJson)? {
        Some((bytes, count)) => Ok((Bytes::from(bytes), count)),
        None => Ok((Bytes::new(), 0)),
    }
}

fn mask_text(
    masking: &RouteMasking,
    decoded: &[u8],
    context: &Context<'_>,
) -> Result<(Bytes, usize), Failure> {
    let text = std::str::from_utf8(decoded).map_err(|_| Failure::InvalidText)?;
    let masked = masking.masker.mask_text(text, context);
    if masked.count == 0 {
        return Ok((Bytes::new(), 0));
    }
    Ok((Bytes::from(masked.text.into_owned()), masked.count))
}

/// Reads the whole body within `limit` and `timeout`.
async fn read_body(
    response: Response<Body>,
    limit: u64,
    timeout: Duration,
) -> Result<(Parts, Bytes), Unmaskable> {
    let (parts, body) = response.into_parts();
    let failed = |failure| Unmaskable {
        failure,
        response: None,
    };
    let collected = tokio::time::timeout(timeout, body::collect_limited(body, limit))
        .await
        .map_err(|_| failed(Failure::UpstreamBodyTimeout))?
        .map_err(|_| failed(Failure::UpstreamBodyFailed))?;
    match collected {
        Collected::Complete(bytes) => Ok((parts, bytes)),
        Collected::TooLarge { prefix, rest } => Err(Unmaskable {
            failure: Failure::BodyTooLarge,
            response: Some(Response::from_parts(parts, body::prefixed(prefix, rest))),
        }),
    }
}

fn pass_whole(failure: Failure, response: Response<Body>) -> Unmaskable {
    Unmaskable {
        failure,
        response: Some(response),
    }
}

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok()?.trim().parse().ok())
}

/// Classifies a body by its `Content-Type` (RFC 9110 section 8.3).
fn classify(headers: &HeaderMap) -> BodyKind {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return BodyKind::Unlabelled;
    };
    let Ok(text) = value.to_str() else {
        return BodyKind::Unsupported(Failure::UnsupportedContentType);
    };
    let mut params = text.split(';');
    let essence = params
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let (top, sub) = essence.split_once('/').unwrap_or((essence.as_str(), ""));

    let kind = if essence == "application/json" || sub.ends_with("+json") {
        BodyKind::Json
    } else if top == "text" || sub.ends_with("+xml") || TEXTUAL.contains(&essence.as_str()) {
        BodyKind::Text
    } else if ["image", "audio", "video", "font"].contains(&top) {
        return BodyKind::Media;
    } else {
        return BodyKind::Unsupported(Failure::UnsupportedContentType);
    };

    let charset = params.find_map(|param| {
        let (name, value) = param.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("charset")
            .then(|| value.trim().trim_matches('"').to_ascii_lowercase())
    });
    match charset.as_deref() {
        None | Some("utf-8" | "utf8" | "us-ascii") => kind,
        Some(_) => BodyKind::Unsupported(Failure::UnsupportedCharset),
    }
}

/// Textual types outside `text/*` and `*/*+xml` that detectors scan.
const TEXTUAL: &[&str] = &[
    "application/xml",
    "application/javascript",
    "application/ecmascript",
    "application/x-www-form-urlencoded",
    "application/yaml",
    "application/x-yaml",
    "application/x-ndjson",
    "application/jsonl",
    "application/csv",
];

/// Rewrites the headers of a masked body: sent as identity with its own
/// length, without the upstream's strong validator or digests.
fn describe_masked_body(headers: &mut HeaderMap, length: usize) {
    headers.remove(header::CONTENT_ENCODING);
    headers.remove(header::TRANSFER_ENCODING);
    for name in STALE_HEADERS {
        headers.remove(*name);
    }
    // A strong ETag promises byte-identical bodies, which the masked body
    // is not. A weak one only promises equivalent content, so it stays and
    // conditional requests keep working.
    let strong = headers
        .get(header::ETAG)
        .is_some_and(|etag| !etag.as_bytes().starts_with(b"W/"));
    if strong {
        headers.remove(header::ETAG);
    }
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
}

/// Removes what makes an upstream send part of a body: `Range` and
/// `If-Range`, and codings the gateway cannot decode from
/// `Accept-Encoding`.
pub fn prepare_request(headers: &mut HeaderMap) {
    headers.remove(header::RANGE);
    headers.remove(header::IF_RANGE);
    encoding::restrict_accept_encoding(headers);
}

/// Keeps shared caches from serving a response of a masked route to
/// another caller: adds the credential headers in `vary` to `Vary`, and
/// makes `Cache-Control` private (dropping `public` and `s-maxage`).
/// Applied to masked and unmasked responses alike, because which one a
/// caller gets depends on its credential.
pub fn protect_cache(headers: &mut HeaderMap, vary: &[HeaderName]) {
    add_vary(headers, vary);

    let directives: Vec<String> = headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|text| text.split(','))
        .map(|directive| directive.trim().to_string())
        .filter(|directive| !directive.is_empty())
        .collect();
    let mut kept: Vec<String> = directives
        .into_iter()
        .filter(|directive| {
            let name = directive.split('=').next().unwrap_or_default().trim();
            !name.eq_ignore_ascii_case("public") && !name.eq_ignore_ascii_case("s-maxage")
        })
        .collect();
    let private = kept.iter().any(|directive| {
        let name = directive.split('=').next().unwrap_or_default().trim();
        name.eq_ignore_ascii_case("private") || name.eq_ignore_ascii_case("no-store")
    });
    if !private {
        kept.insert(0, "private".to_string());
    }
    if let Ok(value) = HeaderValue::from_str(&kept.join(", ")) {
        headers.insert(header::CACHE_CONTROL, value);
    } else {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
}

fn add_vary(headers: &mut HeaderMap, vary: &[HeaderName]) {
    let mut names: Vec<String> = headers
        .get_all(header::VARY)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|text| text.split(','))
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
        .collect();
    if names.iter().any(|name| name == "*") {
        return;
    }
    for name in vary {
        if !names.iter().any(|n| n.eq_ignore_ascii_case(name.as_str())) {
            names.push(name.as_str().to_string());
        }
    }
    if let Ok(value) = HeaderValue::from_str(&names.join(", ")) {
        headers.insert(header::VARY, value);
    }
}

#[cfg(test)]
mod tests;

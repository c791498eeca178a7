//! Extraction of a bearer token from the `Authorization` header (RFC 6750
//! section 2.1). Tokens in the query string or a form body are never read.

use http::header::AUTHORIZATION;
use http::HeaderMap;

/// The reason no usable bearer token was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BearerError {
    /// No `Authorization` header at all.
    Missing,
    /// More than one `Authorization` header, a scheme other than Bearer, or
    /// a value that is not a single token68.
    Malformed,
}

/// Returns the token of the request's single `Authorization: Bearer`
/// header.
pub fn extract(headers: &HeaderMap) -> Result<&str, BearerError> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let value = values.next().ok_or(BearerError::Missing)?;
    if values.next().is_some() {
        return Err(BearerError::Malformed);
    }
    let bytes = value.as_bytes();
    let (scheme, token) = match bytes.iter().position(|&b| b == b' ') {
        Some(space) => (&bytes[..space], &bytes[space + 1..]),
        None => return Err(BearerError::Malformed),
    };
    if !scheme.eq_ignore_ascii_case(b"bearer") || !is_token68(token) {
        return Err(BearerError::Malformed);
    }
    // token68 bytes are ASCII, so this conversion cannot fail.
    std::str::from_utf8(token).map_err(|_| BearerError::Malformed)
}

/// token68 = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
fn is_token68(token: &[u8]) -> bool {
    let padding = token.iter().rev().take_while(|&&b| b == b'=').count();
    let body = &token[..token.len() - padding];
    // A fold without early exit keeps the loop branch-free: it runs over
    // every byte of every token.
    !body.is_empty()
        && body
            .iter()
            .fold(true, |valid, &b| valid & TOKEN68[b as usize])
}

const TOKEN68: [bool; 256] = {
    let mut table = [false; 256];
    let mut byte = 0;
    while byte < 256 {
        let b = byte as u8;
        table[byte] =
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/');
        byte += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for value in values {
            map.append(AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn bearer_extraction_cases() {
        let cases: &[(&str, &[&str], Result<&str, BearerError>)] = &[
            (
                "plain bearer token",
                &["Bearer abc.def.ghi"],
                Ok("abc.def.ghi"),
            ),
            ("scheme is case-insensitive", &["bearer abc"], Ok("abc")),
            ("no header", &[], Err(BearerError::Missing)),
            (
                "basic scheme",
                &["Basic dXNlcjpwYXNz"],
                Err(BearerError::Malformed),
            ),
            ("two spaces", &["Bearer  abc"], Err(BearerError::Malformed)),
            ("empty token", &["Bearer "], Err(BearerError::Malformed)),
            (
                "token with space",
                &["Bearer abc def"],
                Err(BearerError::Malformed),
            ),
            ("no token", &["Bearer"], Err(BearerError::Malformed)),
            (
                "two headers",
                &["Bearer a", "Bearer b"],
                Err(BearerError::Malformed),
            ),
            ("comma inside", &["Bearer a,b"], Err(BearerError::Malformed)),
        ];
        for (description, values, expected) in cases {
            assert_eq!(extract(&headers(values)), *expected, "{description}");
        }
    }
}

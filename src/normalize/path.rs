//! Request path canonicalization, the first step of the normalize stage.
//!
//! The router matches the canonical path and the upstream receives the same
//! string, so the two can never read one request as two different paths.

use std::fmt;

use percent_encoding::percent_encode_byte;

/// Options that relax path canonicalization for upstreams that need it.
///
/// Both default to `false`, which rejects the encoded character with a 400.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PathOptions {
    /// Accept `%2F` inside a segment and forward it encoded as `%2F`.
    /// Enable only when the upstream does not decode `%2F` into a separator.
    pub allow_encoded_slash: bool,
    /// Accept `%5C` inside a segment and forward it encoded as `%5C`.
    /// Enable only when the upstream does not treat `\` as a separator.
    pub allow_encoded_backslash: bool,
}

/// Reason a request path was rejected. Each variant maps to a 400 response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// A `%` is not followed by two hexadecimal digits.
    MalformedEscape,
    /// `%2F` appears while `allow_encoded_slash` is off.
    EncodedSlash,
    /// `%5C` appears while `allow_encoded_backslash` is off.
    EncodedBackslash,
    /// A NUL byte appears, raw or as `%00`.
    Nul,
    /// A byte that a path must not contain: a control byte, a non-ASCII
    /// byte, a raw `\`, `?` or `#`, or escapes that decode to invalid UTF-8.
    InvalidByte,
    /// A `..` climbs above the root, or a dot-segment hides behind `;` or an
    /// allowed encoded separator where an upstream could still resolve it.
    Traversal,
    /// The path does not start with `/`.
    NotAbsolute,
}

impl PathError {
    /// Returns the stable reason code used in responses, logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            PathError::MalformedEscape => "path_malformed_escape",
            PathError::EncodedSlash => "path_encoded_slash",
            PathError::EncodedBackslash => "path_encoded_backslash",
            PathError::Nul => "path_nul",
            PathError::InvalidByte => "path_invalid_byte",
            PathError::Traversal => "path_traversal",
            PathError::NotAbsolute => "path_not_absolute",
        }
    }
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let message = match self {
            PathError::MalformedEscape => "invalid percent escape in path: expected `%` and two hex digits",
            PathError::EncodedSlash => "encoded slash `%2F` in path is not allowed",
            PathError::EncodedBackslash => "encoded backslash `%5C` in path is not allowed",
            PathError::Nul => "NUL byte in path",
            PathError::InvalidByte => "invalid byte in path: expected printable ASCII and valid UTF-8 escapes",
            PathError::Traversal => "dot-segment in path climbs above the root or hides behind `;` or an encoded separator",
            PathError::NotAbsolute => "path does not start with `/`",
        };
        f.write_str(message)
    }
}

impl std::error::Error for PathError {}

/// Canonicalizes the path part of an origin-form request target (no query).
///
/// The result is the only form the gateway routes on and forwards upstream:
///
/// - Escapes of unreserved characters (ALPHA, DIGIT, `-._~`) are decoded.
///   Every other escape is kept, with its hex digits uppercased.
/// - Decoding happens exactly once. `%25` stays `%25`, so `%252F` reaches
///   the upstream as the literal text `%2F`, not as a slash. An upstream that
///   decodes a second time would see a slash where the router saw none.
/// - `%2F` and `%5C` are rejected unless `options` allow them. Allowed ones
///   stay encoded and never split a segment.
/// - Printable ASCII that RFC 3986 does not allow raw in a path
///   (space, `"`, `<`, `>`, `[`, `]`, `^`, `` ` ``, `{`, `|`, `}`) is
///   percent-encoded, so the raw and the encoded spelling match one route.
/// - Runs of `/` collapse into one, and `.` and `..` segments are resolved,
///   including encoded ones such as `%2e%2E`. A `..` above the root is
///   rejected, not clamped. A trailing slash is kept.
/// - `;` is an ordinary character: matrix parameters are not interpreted,
///   so `/users/1;v=2` routes as the segment `1;v=2`. The one exception is a
///   segment such as `..;x` or `..%3Bx`, which Tomcat resolves as `..` and
///   which is therefore rejected.
/// - Escapes of bytes `0x80` and above must form valid UTF-8, which rejects
///   overlong forms such as `%C0%AE` that lenient decoders read as `.`.
/// - Escaped control bytes other than `%00` are kept encoded, not rejected.
pub fn canonicalize(raw: &str, options: &PathOptions) -> Result<String, PathError> {
    if !raw.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }

    let decoded = decode_once(raw.as_bytes(), options)?;

    resolve_segments(&decoded, options)
}

/// Yields the segments of a canonical path, still percent-encoded.
///
/// Empty segments are skipped, so `/` yields nothing and `/users/` yields the
/// same as `/users`. Check `ends_with('/')` to tell those two apart.
pub fn segments(canonical: &str) -> impl Iterator<Item = &str> {
    canonical.split('/').filter(|segment| !segment.is_empty())
}

/// Decodes unreserved escapes, uppercases the rest and checks every byte.
fn decode_once(bytes: &[u8], options: &PathOptions) -> Result<String, PathError> {
    let mut out = String::with_capacity(bytes.len());
    let mut high_escapes = Vec::new();
    let mut index = 0;

    while index < bytes.len() {
        if bytes[index] == b'%' {
            let value = parse_escape(bytes, index)?;
            index += 3;

            if value >= 0x80 {
                high_escapes.push(value);
                out.push_str(percent_encode_byte(value));
            } else {
                check_utf8(&mut high_escapes)?;
                push_escaped(value, &mut out, options)?;
            }
        } else {
            check_utf8(&mut high_escapes)?;
            push_raw(bytes[index], &mut out)?;
            index += 1;
        }
    }

    check_utf8(&mut high_escapes)?;
    Ok(out)
}

/// Reads the two hex digits after the `%` at `index`.
fn parse_escape(bytes: &[u8], index: usize) -> Result<u8, PathError> {
    let high = bytes.get(index + 1).and_then(|b| hex_value(*b));
    let low = bytes.get(index + 2).and_then(|b| hex_value(*b));

    match (high, low) {
        (Some(high), Some(low)) => Ok((high << 4) | low),
        _ => Err(PathError::MalformedEscape),
    }
}

fn hex_value(byte: u8) -> Option<u8> {
    char::from(byte).to_digit(16).map(|digit| digit as u8)
}

/// Checks that a run of consecutive escapes of bytes `0x80` and above forms
/// valid UTF-8, then clears the run.
fn check_utf8(high_escapes: &mut Vec<u8>) -> Result<(), PathError> {
    let valid = std::str::from_utf8(high_escapes).is_ok();
    high_escapes.clear();

    if valid {
        Ok(())
    } else {
        Err(PathError::InvalidByte)
    }
}

/// Appends the canonical form of an escape whose value is below `0x80`.
fn push_escaped(value: u8, out: &mut String, options: &PathOptions) -> Result<(), PathError> {
    match value {
        0 => return Err(PathError::Nul),
        b'/' if !options.allow_encoded_slash => return Err(PathError::EncodedSlash),
        b'\\' if !options.allow_encoded_backslash => return Err(PathError::EncodedBackslash),
        _ => {}
    }

    if is_unreserved(value) {
        out.push(char::from(value));
    } else {
        out.push_str(percent_encode_byte(value));
    }
    Ok(())
}

/// Appends a raw byte, encoding printable ASCII that a path must not contain.
fn push_raw(byte: u8, out: &mut String) -> Result<(), PathError> {
    match byte {
        0 => Err(PathError::Nul),
        b'\\' | b'?' | b'#' => Err(PathError::InvalidByte),
        _ if byte.is_ascii_control() || !byte.is_ascii() => Err(PathError::InvalidByte),
        _ if is_path_char(byte) => {
            out.push(char::from(byte));
            Ok(())
        }
        _ => {
            out.push_str(percent_encode_byte(byte));
            Ok(())
        }
    }
}

/// RFC 3986 `unreserved`.
fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

/// RFC 3986 `pchar` without `pct-encoded`, plus the `/` separator.
fn is_path_char(byte: u8) -> bool {
    is_unreserved(byte)
        || matches!(
            byte,
            b'!' | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'@'
                | b'/'
        )
}

/// Collapses empty segments and resolves dot-segments of a decoded path.
fn resolve_segments(decoded: &str, options: &PathOptions) -> Result<String, PathError> {
    let parts: Vec<&str> = decoded[1..].split('/').collect();
    let mut resolved: Vec<&str> = Vec::with_capacity(parts.len());

    for part in &parts {
        match *part {
            "" | "." => {}
            ".." => {
                if resolved.pop().is_none() {
                    return Err(PathError::Traversal);
                }
            }
            segment => {
                reject_hidden_dot_segment(segment, options)?;
                resolved.push(segment);
            }
        }
    }

    // A path that ends in `/`, `/.` or `/..` names a directory, as in
    // RFC 3986 section 5.2.4, so it keeps its trailing slash.
    let trailing_slash = matches!(parts.last(), Some(&("" | "." | "..")));

    let mut canonical = String::with_capacity(decoded.len());
    for segment in &resolved {
        canonical.push('/');
        canonical.push_str(segment);
    }
    if canonical.is_empty() || trailing_slash {
        canonical.push('/');
    }
    Ok(canonical)
}

/// Rejects a segment that an upstream could still resolve as `.` or `..`.
///
/// Tomcat's `CoyoteAdapter` strips path parameters, then decodes, then
/// resolves dot-segments, so it reads `..;x` as `..`. An upstream that decodes
/// before it strips would read `..%3Bx` the same way. When encoded separators
/// are allowed, an upstream that decodes `%2F` would split `a%2F..` in two.
fn reject_hidden_dot_segment(segment: &str, options: &PathOptions) -> Result<(), PathError> {
    let mut pieces = vec![segment];

    if options.allow_encoded_slash || options.allow_encoded_backslash {
        pieces = segment
            .split("%2F")
            .flat_map(|piece| piece.split("%5C"))
            .collect();
    }

    for piece in pieces {
        let before_parameter = piece.split(';').next().unwrap_or(piece);
        let before_parameter = before_parameter
            .split("%3B")
            .next()
            .unwrap_or(before_parameter);
        if before_parameter == "." || before_parameter == ".." {
            return Err(PathError::Traversal);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const STRICT: PathOptions = PathOptions {
        allow_encoded_slash: false,
        allow_encoded_backslash: false,
    };
    const SLASH_ALLOWED: PathOptions = PathOptions {
        allow_encoded_slash: true,
        allow_encoded_backslash: false,
    };
    const BACKSLASH_ALLOWED: PathOptions = PathOptions {
        allow_encoded_slash: false,
        allow_encoded_backslash: true,
    };

    /// (description, input, options, expected canonical path or reason code)
    type Case = (
        &'static str,
        &'static str,
        PathOptions,
        Result<&'static str, &'static str>,
    );

    #[rustfmt::skip]
    const CASES: &[Case] = &[
        // Plain paths.
        ("root stays root", "/", STRICT, Ok("/")),
        ("simple path unchanged", "/users/1", STRICT, Ok("/users/1")),
        ("trailing slash kept", "/users/", STRICT, Ok("/users/")),
        ("no trailing slash not added", "/users", STRICT, Ok("/users")),
        ("sub-delims and colon kept raw", "/a:b@c!$&'()*+,=", STRICT, Ok("/a:b@c!$&'()*+,=")),
        ("unreserved punctuation kept", "/a-b.c_d~e", STRICT, Ok("/a-b.c_d~e")),
        ("matrix parameter kept as text", "/users/1;jsessionid=x", STRICT, Ok("/users/1;jsessionid=x")),
        ("semicolon alone kept", "/;", STRICT, Ok("/;")),
        // Not origin-form.
        ("empty path rejected", "", STRICT, Err("path_not_absolute")),
        ("relative path rejected", "users/1", STRICT, Err("path_not_absolute")),
        ("asterisk-form left to caller", "*", STRICT, Err("path_not_absolute")),
        ("absolute-form left to caller", "http://a/b", STRICT, Err("path_not_absolute")),
        ("encoded leading slash rejected", "%2Fusers", SLASH_ALLOWED, Err("path_not_absolute")),
        // Slash runs.
        ("double leading slash collapsed", "//users", STRICT, Ok("/users")),
        ("inner slash run collapsed", "/users///1", STRICT, Ok("/users/1")),
        ("trailing slash run collapsed", "/users//", STRICT, Ok("/users/")),
        ("slash run alone collapses to root", "///", STRICT, Ok("/")),
        // Dot-segments.
        ("single dot removed", "/users/./1", STRICT, Ok("/users/1")),
        ("leading single dot removed", "/./users", STRICT, Ok("/users")),
        ("dot-dot pops one segment", "/users/../admin", STRICT, Ok("/admin")),
        ("dot-dot at end keeps directory slash", "/users/1/..", STRICT, Ok("/users/")),
        ("single dot at end keeps directory slash", "/users/.", STRICT, Ok("/users/")),
        ("dot-dot back to root", "/users/..", STRICT, Ok("/")),
        ("dot-dot after slash run", "/a//..", STRICT, Ok("/")),
        ("dot-dot above root rejected", "/..", STRICT, Err("path_traversal")),
        ("dot-dot above root with slash rejected", "/../", STRICT, Err("path_traversal")),
        ("dot-dot climbing past root rejected", "/users/../../etc/passwd", STRICT, Err("path_traversal")),
        ("three dots are a name", "/users/...", STRICT, Ok("/users/...")),
        ("dot prefix is a name", "/users/.hidden", STRICT, Ok("/users/.hidden")),
        ("dot-dot prefix is a name", "/users/..x", STRICT, Ok("/users/..x")),
        // Encoded dot-segments.
        ("encoded dot-dot resolved", "/users/%2e%2e/admin", STRICT, Ok("/admin")),
        ("mixed-case encoded dot-dot resolved", "/users/%2E%2e/admin", STRICT, Ok("/admin")),
        ("half-encoded dot-dot resolved", "/users/.%2e/admin", STRICT, Ok("/admin")),
        ("encoded dot-dot above root rejected", "/%2e%2e/", STRICT, Err("path_traversal")),
        ("encoded single dot removed", "/users/%2e/1", STRICT, Ok("/users/1")),
        ("double-encoded dot-dot stays text", "/users/%252e%252e/", STRICT, Ok("/users/%252e%252e/")),
        ("overlong UTF-8 dot rejected", "/users/%c0%ae%c0%ae/admin", STRICT, Err("path_invalid_byte")),
        ("overlong UTF-8 slash rejected", "/users/..%c0%af", STRICT, Err("path_invalid_byte")),
        // Tomcat-style path parameters on dot-segments.
        ("dot-dot with parameter rejected", "/public/..;/admin", STRICT, Err("path_traversal")),
        ("dot-dot with named parameter rejected", "/public/..;x=1/admin", STRICT, Err("path_traversal")),
        ("dot with parameter rejected", "/public/.;/admin", STRICT, Err("path_traversal")),
        ("encoded dot-dot with parameter rejected", "/public/%2e%2e;/admin", STRICT, Err("path_traversal")),
        ("encoded semicolon after dot-dot rejected", "/public/..%3b/admin", STRICT, Err("path_traversal")),
        ("encoded semicolon after name kept", "/public/a%3b..", STRICT, Ok("/public/a%3B..")),
        // Encoded slash.
        ("encoded slash rejected", "/users/..%2fadmin", STRICT, Err("path_encoded_slash")),
        ("uppercase encoded slash rejected", "/a%2Fb", STRICT, Err("path_encoded_slash")),
        ("allowed encoded slash kept encoded", "/a%2fb", SLASH_ALLOWED, Ok("/a%2Fb")),
        ("allowed encoded slash hiding final dot-dot rejected", "/a/b%2F..", SLASH_ALLOWED, Err("path_traversal")),
        ("allowed encoded slash hiding dot-dot rejected", "/users/..%2fadmin", SLASH_ALLOWED, Err("path_traversal")),
        ("allowed encoded slash next to dot name kept", "/a%2F.b", SLASH_ALLOWED, Ok("/a%2F.b")),
        ("double-encoded slash stays text", "/a%252Fb", STRICT, Ok("/a%252Fb")),
        ("encoded slash still rejected when only backslash allowed", "/a%2Fb", BACKSLASH_ALLOWED, Err("path_encoded_slash")),
        // Backslash.
        ("encoded backslash rejected", "/users%5c..%5cadmin", STRICT, Err("path_encoded_backslash")),
        ("allowed encoded backslash hiding dot-dot rejected", "/users%5c..%5cadmin", BACKSLASH_ALLOWED, Err("path_traversal")),
        ("allowed encoded backslash kept encoded", "/a%5cb", BACKSLASH_ALLOWED, Ok("/a%5Cb")),
        ("raw backslash rejected", "/users\\..\\admin", STRICT, Err("path_invalid_byte")),
        ("raw backslash rejected even when encoded allowed", "/a\\b", BACKSLASH_ALLOWED, Err("path_invalid_byte")),
        // NUL and control bytes.
        ("encoded NUL rejected", "/users%00", STRICT, Err("path_nul")),
        ("encoded NUL before extension rejected", "/file.txt%00.png", STRICT, Err("path_nul")),
        ("raw NUL rejected", "/users\0", STRICT, Err("path_nul")),
        ("raw tab rejected", "/a\tb", STRICT, Err("path_invalid_byte")),
        ("raw newline rejected", "/a\r\nb", STRICT, Err("path_invalid_byte")),
        ("raw DEL rejected", "/a\x7fb", STRICT, Err("path_invalid_byte")),
        ("encoded newline kept encoded", "/a%0d%0ab", STRICT, Ok("/a%0D%0Ab")),
        // Escapes.
        ("lone percent rejected", "/a%", STRICT, Err("path_malformed_escape")),
        ("one hex digit rejected", "/a%4", STRICT, Err("path_malformed_escape")),
        ("non-hex escape rejected", "/a%zz", STRICT, Err("path_malformed_escape")),
        ("half-hex escape rejected", "/a%4g", STRICT, Err("path_malformed_escape")),
        ("percent before slash rejected", "/a%/b", STRICT, Err("path_malformed_escape")),
        ("encoded letter decoded", "/%75sers", STRICT, Ok("/users")),
        ("encoded digit and tilde decoded", "/%31%7e", STRICT, Ok("/1~")),
        ("encoded hyphen and underscore decoded", "/a%2Db%5fc", STRICT, Ok("/a-b_c")),
        ("reserved escape hex uppercased", "/a%3bb%3d", STRICT, Ok("/a%3Bb%3D")),
        ("encoded percent kept", "/100%25", STRICT, Ok("/100%25")),
        ("encoded question mark kept", "/what%3f", STRICT, Ok("/what%3F")),
        ("encoded space kept", "/a%20b", STRICT, Ok("/a%20b")),
        ("encoded UTF-8 kept and uppercased", "/caf%c3%a9", STRICT, Ok("/caf%C3%A9")),
        ("encoded four-byte UTF-8 kept", "/%F0%9F%98%80", STRICT, Ok("/%F0%9F%98%80")),
        ("truncated encoded UTF-8 rejected", "/caf%c3", STRICT, Err("path_invalid_byte")),
        ("encoded UTF-8 split by text rejected", "/%c3a%a9", STRICT, Err("path_invalid_byte")),
        ("encoded lone continuation byte rejected", "/%a9", STRICT, Err("path_invalid_byte")),
        ("encoded 0xFF rejected", "/%ff", STRICT, Err("path_invalid_byte")),
        // Raw bytes outside printable ASCII.
        ("raw UTF-8 rejected", "/café", STRICT, Err("path_invalid_byte")),
        ("raw two-dot leader rejected", "/users/\u{2025}", STRICT, Err("path_invalid_byte")),
        // Raw printable ASCII that a path must not contain.
        ("raw double quote encoded", "/a\"b", STRICT, Ok("/a%22b")),
        ("raw braces encoded", "/{id}", STRICT, Ok("/%7Bid%7D")),
        ("raw pipe and caret encoded", "/a|b^c", STRICT, Ok("/a%7Cb%5Ec")),
        ("raw brackets and backtick encoded", "/[a]`", STRICT, Ok("/%5Ba%5D%60")),
        ("raw space encoded", "/a b", STRICT, Ok("/a%20b")),
        ("raw question mark rejected", "/a?b", STRICT, Err("path_invalid_byte")),
        ("raw hash rejected", "/a#b", STRICT, Err("path_invalid_byte")),
    ];

    #[test]
    fn canonicalize_cases() {
        assert!(CASES.len() >= 60, "only {} path cases", CASES.len());

        for (description, input, options, expected) in CASES {
            let actual = canonicalize(input, options);
            let actual = actual.as_deref().map_err(PathError::reason);
            assert_eq!(actual, *expected, "{description}: input {input:?}");
        }
    }

    #[test]
    fn canonicalize_is_idempotent() {
        for (description, input, options, expected) in CASES {
            if let Ok(canonical) = expected {
                let again = canonicalize(canonical, options);
                assert_eq!(
                    again.as_deref(),
                    Ok(*canonical),
                    "{description}: input {input:?}"
                );
            }
        }
    }

    /// Tokens that the generated paths below are built from: separators,
    /// dots, escapes of dots and separators, and malformed pieces.
    const TOKENS: &[&str] = &[
        "/", "/", ".", "..", "%2e", "%2E", "%2f", "%5c", "%25", "%252e", "a", "b", ";", "%00",
        "%c0", "%ae", "%41", "%", "~", "\\", " ", "%3B", "..;", "//",
    ];

    /// Yields a fixed sequence of pseudo-random numbers (xorshift64), so a
    /// failure reproduces on every run.
    fn pseudo_random(mut state: u64) -> impl Iterator<Item = u64> {
        std::iter::repeat_with(move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        })
    }

    #[test]
    fn generated_paths_hold_invariants() {
        let mut numbers = pseudo_random(0x9E37_79B9_7F4A_7C15);
        let mut accepted = 0;

        for _ in 0..20_000 {
            let length = 1 + numbers.next().unwrap() % 8;
            let mut raw = String::from("/");
            for _ in 0..length {
                let index = numbers.next().unwrap() as usize % TOKENS.len();
                raw.push_str(TOKENS[index]);
            }

            for options in [STRICT, SLASH_ALLOWED, BACKSLASH_ALLOWED] {
                let Ok(canonical) = canonicalize(&raw, &options) else {
                    continue;
                };
                accepted += 1;

                assert!(canonical.is_ascii(), "{raw:?} gave non-ASCII {canonical:?}");
                assert!(
                    !canonical.contains("//"),
                    "{raw:?} gave slash run {canonical:?}"
                );
                assert_eq!(
                    canonicalize(&canonical, &options).as_ref(),
                    Ok(&canonical),
                    "{raw:?} not idempotent"
                );

                // An upstream that decodes once and splits on `/`, `\` and
                // `;` must never meet a dot-segment.
                let decoded = percent_encoding::percent_decode_str(&canonical).decode_utf8_lossy();
                let dot_segment = decoded
                    .split(['/', '\\'])
                    .map(|segment| segment.split(';').next().unwrap_or(segment))
                    .any(|segment| segment == "." || segment == "..");
                assert!(
                    !dot_segment,
                    "{raw:?} gave {canonical:?}, which decodes to dot-segment in {decoded:?}"
                );
            }
        }

        assert!(
            accepted > 5_000,
            "only {accepted} generated paths were accepted"
        );
    }

    #[test]
    fn default_options_reject_encoded_separators() {
        let options = PathOptions::default();

        assert_eq!(
            canonicalize("/a%2Fb", &options),
            Err(PathError::EncodedSlash)
        );
        assert_eq!(
            canonicalize("/a%5Cb", &options),
            Err(PathError::EncodedBackslash)
        );
    }

    #[test]
    fn segments_cases() {
        let cases: &[(&str, &str, &[&str])] = &[
            ("root has no segments", "/", &[]),
            ("two segments", "/users/1", &["users", "1"]),
            ("trailing slash adds no segment", "/users/", &["users"]),
            ("escapes stay encoded", "/a%2Fb/c%20d", &["a%2Fb", "c%20d"]),
        ];

        for (description, canonical, expected) in cases {
            let actual: Vec<&str> = segments(canonical).collect();
            assert_eq!(actual, *expected, "{description}");
        }
    }

    #[test]
    fn reason_codes_are_distinct() {
        let all = [
            PathError::MalformedEscape,
            PathError::EncodedSlash,
            PathError::EncodedBackslash,
            PathError::Nul,
            PathError::InvalidByte,
            PathError::Traversal,
            PathError::NotAbsolute,
        ];
        let mut codes: Vec<&str> = all.iter().map(PathError::reason).collect();
        codes.sort_unstable();
        codes.dedup();

        assert_eq!(codes.len(), all.len());
    }
}

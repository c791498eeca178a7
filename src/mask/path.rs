//! Field paths: the JSONPath subset that names response fields to mask.
//!
//! Supported forms, with the RFC 9535 names: `$` (root), `.name` and
//! `['name']` (name selector), `.*` and `[*]` (wildcard selector), `[0]`
//! (index selector), and `..name`, `..*`, `..['name']`, `..[0]` (descendant
//! segment). Filters, slices, negative indices and unions are rejected.

use std::fmt;

/// Maximum number of segments in a field path. The masker tracks how far each
/// path has matched in one bit per segment of a 64-bit word.
pub const MAX_SEGMENTS: usize = 63;

/// Parsed field path, for example `$[*].card.number` or `$..email`.

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldPath {
    source: String,
    segments: Vec<Segment>,
}

/// One step of a path: which children it selects, and whether it also
/// searches every level below (the descendant segment `..`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    pub descendant: bool,
    pub selector: Selector,
}

/// Selector of a segment: the members or elements it picks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selector {
    /// An object member with this exact name.
    Name(String),
    /// Every member of an object and every element of an array.
    Wildcard,
    /// The array element at this zero-based position.
    Index(usize),
}

/// Key of a child inside its parent: a member name or an array position.
#[derive(Clone, Copy, Debug)]
pub enum ChildKey<'a> {
    Name(&'a str),
    Index(usize),
}

/// Field path that failed to parse, with the byte offset of the problem.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathError {
    pub path: String,
    pub offset: usize,
    pub expected: &'static str,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid field path `{}`: expected {} at byte {}",
            self.path, self.expected, self.offset
        )
    }
}

impl std::error::Error for PathError {}

impl Selector {
    /// Reports whether this selector picks the child under `key`.
    pub fn selects(&self, key: ChildKey<'_>) -> bool {
        match (self, key) {
            (Selector::Wildcard, _) => true,
            (Selector::Name(name), ChildKey::Name(key)) => name == key,
            (Selector::Index(index), ChildKey::Index(key)) => *index == key,
            _ => false,
        }
    }
}

impl FieldPath {
    /// Parses a path such as `$.a.b`, `$[*].card.number`, `$..email` or
    /// `$['odd key']`.
    pub fn parse(source: &str) -> Result<FieldPath, PathError> {
        let mut parser = Parser { source, offset: 0 };
        parser.expect_char('$', "`$` at the start")?;

        let mut segments = Vec::new();
        while !parser.at_end() {
            if segments.len() == MAX_SEGMENTS {
                return Err(parser.error("the end of the path (at most 63 segments)"));
            }
            segments.push(parser.segment()?);
        }

        Ok(FieldPath {
            source: source.to_owned(),
            segments,
        })
    }

    /// Returns the path as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

struct Parser<'a> {
    source: &'a str,
    offset: usize,
}

impl Parser<'_> {
    fn segment(&mut self) -> Result<Segment, PathError> {
        if self.eat("..") {
            let selector = if self.peek() == Some('[') {
                self.bracketed()?
            } else {
                self.dotted()?
            };
            return Ok(Segment {
                descendant: true,
                selector,
            });
        }

        let selector = if self.eat(".") {
            self.dotted()?
        } else if self.peek() == Some('[') {
            self.bracketed()?
        } else {
            return Err(self.error("`.`, `..` or `[`"));
        };
        Ok(Segment {
            descendant: false,
            selector,
        })
    }

    /// Parses what follows a dot: `*` or a member name.
    fn dotted(&mut self) -> Result<Selector, PathError> {
        if self.eat("*") {
            return Ok(Selector::Wildcard);
        }

        let rest = &self.source[self.offset..];
        let length: usize = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '-')
            .map(char::len_utf8)
            .sum();
        if length == 0 {
            return Err(self.error("a member name or `*`"));
        }
        self.offset += length;
        Ok(Selector::Name(rest[..length].to_owned()))
    }

    /// Parses `[*]`, `[0]`, `['name']` or `["name"]`.
    fn bracketed(&mut self) -> Result<Selector, PathError> {
        self.expect_char('[', "`[`")?;

        let selector = match self.peek() {
            Some('*') => {
                self.offset += 1;
                Selector::Wildcard
            }
            Some(quote @ ('\'' | '"')) => Selector::Name(self.quoted(quote)?),
            Some(c) if c.is_ascii_digit() => Selector::Index(self.index()?),
            _ => return Err(self.error("`*`, an index or a quoted name")),
        };

        self.expect_char(']', "`]`")?;
        Ok(selector)
    }

    /// Parses a quoted name in which `\\` and the quote itself are escaped
    /// with a backslash.
    fn quoted(&mut self, quote: char) -> Result<String, PathError> {
        self.offset += 1;
        let mut name = String::new();
        let mut chars = self.source[self.offset..].chars();

        loop {
            let Some(c) = chars.next() else {
                return Err(self.error("a closing quote"));
            };
            self.offset += c.len_utf8();
            if c == quote {
                return Ok(name);
            }
            if c != '\\' {
                name.push(c);
                continue;
            }
            match chars.next() {
                Some(escaped) if escaped == quote || escaped == '\\' => {
                    self.offset += 1;
                    name.push(escaped);
                }
                _ => return Err(self.error("`\\\\` or an escaped quote after `\\`")),
            }
        }
    }

    fn index(&mut self) -> Result<usize, PathError> {
        let start = self.offset;
        let digits = self.source[start..]
            .bytes()
            .take_while(u8::is_ascii_digit)
            .count();
        self.offset += digits;
        self.source[start..self.offset]
            .parse()
            .map_err(|_| PathError {
                path: self.source.to_owned(),
                offset: start,
                expected: "an index that fits in usize",
            })
    }

    fn peek(&self) -> Option<char> {
        self.source[self.offset..].chars().next()
    }

    fn eat(&mut self, text: &str) -> bool {
        let found = self.source[self.offset..].starts_with(text);
        if found {
            self.offset += text.len();
        }
        found
    }

    fn expect_char(&mut self, c: char, expected: &'static str) -> Result<(), PathError> {
        if self.peek() == Some(c) {
            self.offset += c.len_utf8();
            Ok(())
        } else {
            Err(self.error(expected))
        }
    }

    fn at_end(&self) -> bool {
        self.offset == self.source.len()
    }

    fn error(&self, expected: &'static str) -> PathError {
        PathError {
            path: self.source.to_owned(),
            offset: self.offset,
            expected,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(descendant: bool, name: &str) -> Segment {
        Segment {
            descendant,
            selector: Selector::Name(name.to_owned()),
        }
    }

    fn wildcard(descendant: bool) -> Segment {
        Segment {
            descendant,
            selector: Selector::Wildcard,
        }
    }

    #[test]
    fn valid_paths_parse() {
        let index = |i| Segment {
            descendant: false,
            selector: Selector::Index(i),
        };
        let cases: Vec<(&str, &str, Vec<Segment>)> = vec![
            ("root only", "$", vec![]),
            ("one member", "$.ssn", vec![name(false, "ssn")]),
            (
                "nested members",
                "$.a.b",
                vec![name(false, "a"), name(false, "b")],
            ),
            (
                "wildcard over array",
                "$[*].card.number",
                vec![wildcard(false), name(false, "card"), name(false, "number")],
            ),
            ("descendant name", "$..email", vec![name(true, "email")]),
            (
                "trailing wildcard",
                "$.items[*]",
                vec![name(false, "items"), wildcard(false)],
            ),
            ("dot wildcard", "$.*", vec![wildcard(false)]),
            (
                "quoted name with space",
                "$['odd key']",
                vec![name(false, "odd key")],
            ),
            (
                "double-quoted name with dot",
                "$[\"a.b\"]",
                vec![name(false, "a.b")],
            ),
            (
                "escaped quote inside name",
                r"$['it\'s']",
                vec![name(false, "it's")],
            ),
            ("index", "$.items[2]", vec![name(false, "items"), index(2)]),
            (
                "descendant bracket",
                "$..['e mail']",
                vec![name(true, "e mail")],
            ),
            ("descendant wildcard", "$..*", vec![wildcard(true)]),
            (
                "non-ascii and dash in name",
                "$.prénom.e-mail",
                vec![name(false, "prénom"), name(false, "e-mail")],
            ),
        ];

        for (description, source, expected) in cases {
            let path =
                FieldPath::parse(source).unwrap_or_else(|error| panic!("{description}: {error}"));
            assert_eq!(path.segments(), expected.as_slice(), "{description}");
            assert_eq!(path.as_str(), source, "{description}");
        }
    }

    #[test]
    fn invalid_paths_rejected_with_offset() {
        let cases = [
            ("missing root", "a.b", 0, "`$` at the start"),
            ("empty name", "$.", 2, "a member name or `*`"),
            ("unclosed bracket", "$[*", 3, "`]`"),
            ("unclosed quote", "$['a", 4, "a closing quote"),
            (
                "filter expression",
                "$[?(@.a)]",
                2,
                "`*`, an index or a quoted name",
            ),
            (
                "negative index",
                "$[-1]",
                2,
                "`*`, an index or a quoted name",
            ),
            ("text after root", "$x", 1, "`.`, `..` or `[`"),
            ("space in dotted name", "$.a b", 3, "`.`, `..` or `[`"),
            ("triple dot", "$...a", 3, "a member name or `*`"),
            (
                "64 segments",
                &format!("${}", ".a".repeat(64)),
                127,
                "the end of the path (at most 63 segments)",
            ),
        ];

        for (description, source, offset, expected) in cases {
            let error = FieldPath::parse(source).unwrap_err();
            assert_eq!(error.offset, offset, "{description}");
            assert_eq!(error.expected, expected, "{description}");
        }
    }

    #[test]
    fn path_error_names_path_and_offset() {
        let error = FieldPath::parse("$.a[").unwrap_err();

        assert_eq!(
            error.to_string(),
            "invalid field path `$.a[`: expected `*`, an index or a quoted name at byte 4"
        );
    }

    #[test]
    fn selector_matches_child_keys() {
        let cases = [
            (
                "name matches member",
                Selector::Name("a".into()),
                ChildKey::Name("a"),
                true,
            ),
            (
                "name skips other member",
                Selector::Name("a".into()),
                ChildKey::Name("b"),
                false,
            ),
            (
                "name skips array element",
                Selector::Name("0".into()),
                ChildKey::Index(0),
                false,
            ),
            (
                "wildcard matches member",
                Selector::Wildcard,
                ChildKey::Name("x"),
                true,
            ),
            (
                "wildcard matches element",
                Selector::Wildcard,
                ChildKey::Index(7),
                true,
            ),
            (
                "index matches element",
                Selector::Index(1),
                ChildKey::Index(1),
                true,
            ),
            (
                "index skips member",
                Selector::Index(1),
                ChildKey::Name("1"),
                false,
            ),
        ];

        for (description, selector, key, expected) in cases {
            assert_eq!(selector.selects(key), expected, "{description}");
        }
    }
}

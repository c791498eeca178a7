//! Randomized differential test of field paths: the tree masker, the
//! streaming masker and an oracle written here must mask the same values in
//! the same styles and report the same count.
//!
//! The oracle keeps the concrete path of every value (member names and
//! array indices from the root) and matches each rule against it with a
//! plain recursive matcher. It shares no code with the path states of
//! [`Masker`], only [`style::apply`] for the masked text.

use serde_json::{Number, Value};

use super::document::Document;
use super::random::Random;
use crate::mask::path;
use crate::mask::style;
use crate::mask::{Context, FieldPath, FieldRule, MaskRules, MaskStyle, Masker, PseudonymKey};

/// Number of random cases, each masked from three encodings of its
/// document.
const CASES: u64 = 4000;

/// Seed of case 0. Case `n` uses `FIRST_SEED + n`, and a failure prints it,
/// so [`check_random_case`] can rerun that case alone.
const FIRST_SEED: u64 = 0x5EED_0000;

/// Maximum depth of a container in a random document, with the root at
/// depth 0. Values one level deeper are scalars.
const MAX_DEPTH: usize = 6;

const PSEUDONYM_KEY: &[u8] = b"paths-test-pseudonym-key-0123456789";

/// Member names of random documents. They cover names that a path must
/// quote (space, tab, quote, backslash), a non-ASCII name and "0", which
/// must not select array index 0.
const NAMES: [&str; 12] = [
    "a", "b", "c", "id", "card", "number", "email", "odd key", "\u{e9}", "q\"b\\s", "0", "tab\t",
];

/// A name that random paths use and random documents never contain.
const ABSENT_NAME: &str = "zz";

/// Strings of random documents, besides strings of random characters.
const STRINGS: [&str; 14] = [
    "",
    "plain",
    "4111 1111 1111 1111",
    "4111111111111111",
    "alice@example.com",
    "say \"hi\"",
    "back\\slash",
    "a/b",
    "line\nbreak",
    "\u{1}\u{1f}\u{7f}",
    "\u{e9} \u{fc} \u{20ac}",
    "emoji \u{1f600}",
    "\u{2028}\u{2029}",
    "nul \u{0} char",
];

/// Characters of random strings: letters, digits, characters that JSON
/// must escape, characters it may escape, and non-ASCII outside and inside
/// the Basic Multilingual Plane.
const CHARS: [char; 19] = [
    'a',
    'Z',
    '7',
    ' ',
    '"',
    '\\',
    '/',
    '\n',
    '\t',
    '\r',
    '\u{8}',
    '\u{c}',
    '\u{0}',
    '\u{1f}',
    '\u{e9}',
    '\u{20ac}',
    '\u{1f600}',
    '\u{2028}',
    '\u{fffd}',
];

/// Floats whose text is worth masking: negative, tiny, huge, negative
/// zero, the largest and the smallest positive double, and a card number.
const FLOATS: [f64; 10] = [
    1.5,
    -0.25,
    0.1,
    1e300,
    -2.5e-8,
    100.0,
    -0.0,
    4111111111111111.0,
    f64::MAX,
    5e-324,
];

fn has_duplicate_names(document: &Document) -> bool {
    match document {
        Document::Array(items) => items.iter().any(has_duplicate_names),
        Document::Object(members) => {
            let repeated = members
                .iter()
                .enumerate()
                .any(|(index, (name, _))| members[..index].iter().any(|(seen, _)| seen == name));
            repeated || members.iter().any(|(_, value)| has_duplicate_names(value))
        }
        _ => false,
    }
}

/// Selector of the oracle's own path model, kept apart from
/// [`path::Selector`] so that the oracle does not reuse the code it checks.
#[derive(Clone, Copy, Debug)]
enum Selector {
    Name(&'static str),
    Wildcard,
    Index(usize),
}

#[derive(Clone, Copy, Debug)]
struct Segment {
    descendant: bool,
    selector: Selector,
}

/// Key of a value inside its parent, on the concrete path of the value.
#[derive(Clone, Copy, Debug)]
enum Key<'d> {
    Name(&'d str),
    Index(usize),
}

/// Field rule of a random case: the path as segments for the oracle and as
/// source text for [`FieldPath::parse`].
struct Rule {
    segments: Vec<Segment>,
    source: String,
    style: MaskStyle,
}

impl Rule {
    /// Parses the rule's source and checks that the parser read the
    /// segments it was rendered from.
    fn field_rule(&self) -> FieldRule {
        let path = FieldPath::parse(&self.source)
            .unwrap_or_else(|error| panic!("random path failed to parse: {error}"));
        let expected: Vec<path::Segment> = self
            .segments
            .iter()
            .map(|segment| path::Segment {
                descendant: segment.descendant,
                selector: match segment.selector {
                    Selector::Name(name) => path::Selector::Name(name.to_owned()),
                    Selector::Wildcard => path::Selector::Wildcard,
                    Selector::Index(index) => path::Selector::Index(index),
                },
            })
            .collect();
        assert_eq!(path.segments(), expected, "parsed {:?}", self.source);

        FieldRule {
            path,
            style: self.style,
        }
    }
}

fn selects(selector: Selector, key: Key<'_>) -> bool {
    match (selector, key) {
        (Selector::Wildcard, _) => true,
        (Selector::Name(name), Key::Name(key)) => name == key,
        (Selector::Index(index), Key::Index(key)) => index == key,
        _ => false,
    }
}

/// Reports whether `segments` select the value whose concrete path is
/// `keys`. A child segment selects exactly the next key. A descendant
/// segment skips any number of keys, of any kind, before the key it
/// selects.
fn path_matches(segments: &[Segment], keys: &[Key<'_>]) -> bool {
    let Some((segment, rest)) = segments.split_first() else {
        return keys.is_empty();
    };

    if segment.descendant {
        (0..keys.len())
            .any(|at| selects(segment.selector, keys[at]) && path_matches(rest, &keys[at + 1..]))
    } else {
        match keys.split_first() {
            Some((key, below)) => selects(segment.selector, *key) && path_matches(rest, below),
            None => false,
        }
    }
}

/// Computes the expected masking of `document` and the number of values
/// masked. The outermost value that any rule selects decides: the first
/// rule that selects it sets the style of every string, number and boolean
/// inside it, whatever the rules select deeper.
fn oracle_mask(
    document: &Document,
    rules: &[Rule],
    key: Option<&PseudonymKey>,
) -> (Document, usize) {
    let mut oracle = Oracle {
        rules,
        key,
        count: 0,
    };
    let masked = oracle.mask(document, &mut Vec::new(), None);
    (masked, oracle.count)
}

struct Oracle<'r> {
    rules: &'r [Rule],
    key: Option<&'r PseudonymKey>,
    count: usize,
}

impl Oracle<'_> {
    fn mask<'d>(
        &mut self,
        document: &'d Document,
        keys: &mut Vec<Key<'d>>,
        enclosing: Option<MaskStyle>,
    ) -> Document {
        let style = enclosing.or_else(|| {
            self.rules
                .iter()
                .find(|rule| path_matches(&rule.segments, keys))
                .map(|rule| rule.style)
        });

        let text = match document {
            Document::Object(members) => {
                let mut masked = Vec::with_capacity(members.len());
                for (name, value) in members {
                    keys.push(Key::Name(name));
                    masked.push((name.clone(), self.mask(value, keys, style)));
                    keys.pop();
                }
                return Document::Object(masked);
            }
            Document::Array(items) => {
                let mut masked = Vec::with_capacity(items.len());
                for (index, item) in items.iter().enumerate() {
                    keys.push(Key::Index(index));
                    masked.push(self.mask(item, keys, style));
                    keys.pop();
                }
                return Document::Array(masked);
            }
            Document::Null => return Document::Null,
            Document::Bool(flag) => flag.to_string(),
            Document::Number(number) => number.to_string(),
            Document::String(text) => text.clone(),
        };

        match style {
            Some(style) => {
                self.count += 1;
                Document::String(style::apply(style, &text, None, self.key))
            }
            None => document.clone(),
        }
    }
}

fn random_document(random: &mut Random, depth: usize, duplicates: bool) -> Document {
    // Containers get rarer with depth, and none is deeper than MAX_DEPTH.
    let container = depth <= MAX_DEPTH && random.below(MAX_DEPTH + 2) < MAX_DEPTH + 1 - depth;
    if !container {
        return random_scalar(random);
    }

    let length = random.below(5);
    if random.one_in(2) {
        let items = (0..length)
            .map(|_| random_document(random, depth + 1, duplicates))
            .collect();
        return Document::Array(items);
    }

    let mut members: Vec<(String, Document)> = Vec::with_capacity(length);
    for _ in 0..length {
        let name = random.pick(&NAMES);
        if !duplicates && members.iter().any(|(seen, _)| seen == name) {
            continue;
        }
        members.push((
            name.to_owned(),
            random_document(random, depth + 1, duplicates),
        ));
    }
    Document::Object(members)
}

fn random_scalar(random: &mut Random) -> Document {
    match random.below(10) {
        0 => Document::Null,
        1 => Document::Bool(random.one_in(2)),
        2..=5 => Document::Number(random_number(random)),
        _ => Document::String(random_string(random)),
    }
}

fn random_number(random: &mut Random) -> Number {
    match random.below(7) {
        0 => Number::from(random.below(100)),
        1 => Number::from(-1 - random.below(1_000_000) as i64),
        2 => Number::from(random.pick(&[u64::MAX, 4_111_111_111_111_111, 9_007_199_254_740_993])),
        3 => Number::from(random.next()),
        4 => Number::from(i64::MIN),
        5 => Number::from_f64(random.pick(&FLOATS)).unwrap(),
        _ => {
            let sixty_fourths = random.next() as i64 % 1_000_000;
            Number::from_f64(sixty_fourths as f64 / 64.0).unwrap()
        }
    }
}

fn random_string(random: &mut Random) -> String {
    if random.one_in(2) {
        return random.pick(&STRINGS).to_owned();
    }
    let length = random.below(8);
    (0..length).map(|_| random.pick(&CHARS)).collect()
}

/// Generates 1 to 4 rules. About half of them are built from the concrete
/// path of a value in `document`, because fully random paths seldom select
/// anything and seldom select the same value as another rule.
fn random_rules(random: &mut Random, document: &Document) -> Vec<Rule> {
    let mut concrete_paths = Vec::new();
    collect_paths(document, &mut Vec::new(), &mut concrete_paths);

    let count = 1 + random.below(4);
    let mut rules = Vec::with_capacity(count);
    for _ in 0..count {
        let segments = if !concrete_paths.is_empty() && random.one_in(2) {
            let keys = &concrete_paths[random.below(concrete_paths.len())];
            segments_from_keys(random, keys)
        } else {
            random_segments(random)
        };
        rules.push(rule_from_segments(random, segments));
    }
    rules
}

/// Collects the concrete path of every value below the root.
fn collect_paths<'d>(
    document: &'d Document,
    keys: &mut Vec<Key<'d>>,
    paths: &mut Vec<Vec<Key<'d>>>,
) {
    if !keys.is_empty() {
        paths.push(keys.clone());
    }
    match document {
        Document::Object(members) => {
            for (name, value) in members {
                keys.push(Key::Name(name));
                collect_paths(value, keys, paths);
                keys.pop();
            }
        }
        Document::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                keys.push(Key::Index(index));
                collect_paths(item, keys, paths);
                keys.pop();
            }
        }
        _ => {}
    }
}

/// Builds at most 4 segments that select the value at `keys` or one of its
/// ancestors. Keys before the first segment are skipped by making that
/// segment a descendant segment, and some selectors become wildcards.
fn segments_from_keys(random: &mut Random, keys: &[Key<'_>]) -> Vec<Segment> {
    let end = keys.len() - random.below(keys.len().min(2));
    let start = end - end.min(1 + random.below(4));

    keys[start..end]
        .iter()
        .enumerate()
        .map(|(offset, key)| {
            let selector = match key {
                _ if random.one_in(5) => Selector::Wildcard,
                Key::Name(name) => {
                    let name = NAMES.iter().copied().find(|known| known == name);
                    Selector::Name(name.expect("document names come from NAMES"))
                }
                Key::Index(index) => Selector::Index(*index),
            };
            Segment {
                descendant: (offset == 0 && start > 0) || random.one_in(4),
                selector,
            }
        })
        .collect()
}

fn random_segments(random: &mut Random) -> Vec<Segment> {
    // A rule of `$` alone is rare because it masks the whole document.
    let length = if random.one_in(50) {
        0
    } else {
        1 + random.below(4)
    };
    (0..length).map(|_| random_segment(random)).collect()
}

fn rule_from_segments(random: &mut Random, segments: Vec<Segment>) -> Rule {
    let mut source = String::from("$");
    for segment in &segments {
        write_segment(*segment, random, &mut source);
    }

    let style = random.pick(&[MaskStyle::Redact, MaskStyle::Pci, MaskStyle::Pseudonym]);
    Rule {
        segments,
        source,
        style,
    }
}

fn random_segment(random: &mut Random) -> Segment {
    let selector = match random.below(20) {
        0..=10 => {
            let name = if random.one_in(12) {
                ABSENT_NAME
            } else {
                random.pick(&NAMES)
            };
            Selector::Name(name)
        }
        11..=14 => Selector::Wildcard,
        _ => Selector::Index(random.below(4)),
    };
    Segment {
        descendant: random.one_in(3),
        selector,
    }
}

/// Appends a segment in one of the path forms that spell it: dotted or
/// bracketed, single or double quotes.
fn write_segment(segment: Segment, random: &mut Random, source: &mut String) {
    let bracketed = match segment.selector {
        Selector::Name(name) => !is_dotted_name(name) || random.one_in(3),
        Selector::Wildcard => random.one_in(2),
        Selector::Index(_) => true,
    };
    match (segment.descendant, bracketed) {
        (true, _) => source.push_str(".."),
        (false, false) => source.push('.'),
        (false, true) => {}
    }

    match segment.selector {
        Selector::Name(name) if bracketed => {
            let quote = random.pick(&['\'', '"']);
            source.push('[');
            source.push(quote);
            for c in name.chars() {
                if c == quote || c == '\\' {
                    source.push('\\');
                }
                source.push(c);
            }
            source.push(quote);
            source.push(']');
        }
        Selector::Name(name) => source.push_str(name),
        Selector::Wildcard if bracketed => source.push_str("[*]"),
        Selector::Wildcard => source.push('*'),
        Selector::Index(index) => source.push_str(&format!("[{index}]")),
    }
}

/// Reports whether `name` can follow a dot in a path, which the path
/// parser allows for letters, digits, `_` and `-`.
fn is_dotted_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
}

/// Writes `document` as valid JSON text that no serializer would produce.
/// It has random whitespace between tokens, `\/` and `\uXXXX` escapes of
/// random characters in both hex cases, with surrogate pairs outside the
/// Basic Multilingual Plane. Some floats get an exponent of zero.
fn write_unusual(document: &Document, random: &mut Random, out: &mut String) {
    write_whitespace(random, out);
    match document {
        Document::Null => out.push_str("null"),
        Document::Bool(flag) => out.push_str(if *flag { "true" } else { "false" }),
        Document::Number(number) => {
            let text = number.to_string();
            out.push_str(&text);
            if number.is_f64() && !text.contains('e') && random.one_in(3) {
                out.push_str(random.pick(&["e0", "E+0", "e-0"]));
            }
        }
        Document::String(text) => write_unusual_string(text, random, out),
        Document::Array(items) => {
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write_unusual(item, random, out);
            }
            write_whitespace(random, out);
            out.push(']');
        }
        Document::Object(members) => {
            out.push('{');
            for (index, (name, value)) in members.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write_whitespace(random, out);
                write_unusual_string(name, random, out);
                write_whitespace(random, out);
                out.push(':');
                write_unusual(value, random, out);
            }
            write_whitespace(random, out);
            out.push('}');
        }
    }
    write_whitespace(random, out);
}

fn write_whitespace(random: &mut Random, out: &mut String) {
    for _ in 0..random.below(3) {
        out.push(random.pick(&[' ', '\t', '\n', '\r']));
    }
}

fn write_unusual_string(text: &str, random: &mut Random, out: &mut String) {
    out.push('"');
    for c in text.chars() {
        let required = c == '"' || c == '\\' || c < ' ';
        let short = match c {
            '"' => Some("\\\""),
            '\\' => Some("\\\\"),
            '/' => Some("\\/"),
            '\n' => Some("\\n"),
            '\r' => Some("\\r"),
            '\t' => Some("\\t"),
            '\u{8}' => Some("\\b"),
            '\u{c}' => Some("\\f"),
            _ => None,
        };

        if random.one_in(4) {
            write_unicode_escape(c, random.one_in(2), out);
        } else if let Some(short) = short.filter(|_| required || random.one_in(2)) {
            out.push_str(short);
        } else if required {
            write_unicode_escape(c, random.one_in(2), out);
        } else {
            out.push(c);
        }
    }
    out.push('"');
}

fn write_unicode_escape(c: char, uppercase: bool, out: &mut String) {
    let mut units = [0u16; 2];
    for unit in c.encode_utf16(&mut units) {
        if uppercase {
            out.push_str(&format!("\\u{unit:04X}"));
        } else {
            out.push_str(&format!("\\u{unit:04x}"));
        }
    }
}

/// Masks `json` with the streaming masker and reads the result back with
/// duplicate members kept.
fn mask_streaming(masker: &Masker, json: &[u8], context: &Context) -> (Document, usize) {
    let masked = masker
        .mask_json_bytes(json, context)
        .unwrap_or_else(|error| panic!("streaming masker rejected its input: {error}"));
    match masked {
        Some((bytes, count)) => {
            let document = serde_json::from_slice(&bytes).unwrap_or_else(|error| {
                panic!(
                    "streaming masker wrote invalid JSON ({error}): {}",
                    String::from_utf8_lossy(&bytes)
                )
            });
            (document, count)
        }
        None => (serde_json::from_slice(json).unwrap(), 0),
    }
}

fn describe_case(seed: u64, rules: &[Rule], with_key: bool, encoding: &str, json: &[u8]) -> String {
    let rules: Vec<String> = rules
        .iter()
        .map(|rule| format!("{:?} {:?}", rule.style, rule.source))
        .collect();
    format!(
        "seed {seed:#x}, {encoding} input, pseudonym key {with_key}\nrules: {}\ninput: {}",
        rules.join(", "),
        String::from_utf8_lossy(json)
    )
}

/// Generates the case of `seed` and checks that both maskers agree with the
/// oracle on every encoding of its document. The tree masker is skipped for
/// documents with duplicate member names, which `Value` cannot hold.
fn check_random_case(seed: u64) {
    let mut random = Random(seed);
    let duplicates = random.one_in(4);
    let document = random_document(&mut random, 0, duplicates);
    let rules = random_rules(&mut random, &document);
    let with_key = !random.one_in(8);

    let key = PseudonymKey::new(PSEUDONYM_KEY).unwrap();
    let context = Context {
        pseudonym_key: with_key.then_some(&key),
        unmask: false,
    };
    let masker = Masker::new(MaskRules {
        fields: rules.iter().map(Rule::field_rule).collect(),
        detectors: Vec::new(),
    });
    let (expected, expected_count) = oracle_mask(&document, &rules, context.pseudonym_key);

    let mut unusual = String::new();
    write_unusual(&document, &mut random, &mut unusual);
    let encodings = [
        ("compact", serde_json::to_vec(&document).unwrap()),
        ("pretty", serde_json::to_vec_pretty(&document).unwrap()),
        ("unusual", unusual.into_bytes()),
    ];

    for (encoding, json) in &encodings {
        let (streamed, count) = mask_streaming(&masker, json, &context);

        let describe = || describe_case(seed, &rules, with_key, encoding, json);
        assert_eq!(
            streamed,
            expected,
            "streaming masker (left) differs from the oracle (right)\n{}",
            describe()
        );
        assert_eq!(
            count,
            expected_count,
            "streaming masker count (left) differs from the oracle (right)\n{}",
            describe()
        );
    }

    if has_duplicate_names(&document) {
        return;
    }
    let mut tree = serde_json::to_value(&document).unwrap();
    let count = masker.mask_json(&mut tree, &context);

    let describe = || describe_case(seed, &rules, with_key, "compact", &encodings[0].1);
    let expected_tree = serde_json::to_value(&expected).unwrap();
    assert_eq!(
        tree,
        expected_tree,
        "tree masker (left) differs from the oracle (right)\n{}",
        describe()
    );
    assert_eq!(
        count,
        expected_count,
        "tree masker count (left) differs from the oracle (right)\n{}",
        describe()
    );
}

#[test]
fn random_paths_agree() {
    for case in 0..CASES {
        check_random_case(FIRST_SEED + case);
    }
}

/// Masks `json` with redact rules on `paths`, in one pass and, when `json`
/// has no duplicate member names, as a tree, and checks both against
/// `expected`.
fn check_redacted(description: &str, paths: &[&str], json: &str, expected: &str, count: usize) {
    let masker = Masker::new(MaskRules {
        fields: paths
            .iter()
            .map(|source| FieldRule {
                path: FieldPath::parse(source).unwrap(),
                style: MaskStyle::Redact,
            })
            .collect(),
        detectors: Vec::new(),
    });
    let context = Context::default();
    let expected_document: Document = serde_json::from_str(expected).unwrap();

    let (streamed, streamed_count) = mask_streaming(&masker, json.as_bytes(), &context);

    assert_eq!(streamed, expected_document, "{description}: streamed");
    assert_eq!(streamed_count, count, "{description}: streamed count");

    let document: Document = serde_json::from_str(json).unwrap();
    if has_duplicate_names(&document) {
        return;
    }
    let mut tree: Value = serde_json::from_str(json).unwrap();
    let tree_count = masker.mask_json(&mut tree, &context);

    let expected_tree: Value = serde_json::from_str(expected).unwrap();
    assert_eq!(tree, expected_tree, "{description}: tree");
    assert_eq!(tree_count, count, "{description}: tree count");
}

#[test]
fn path_edge_cases() {
    // (description, paths, input, expected output, count)
    let cases: [(&str, &[&str], &str, &str, usize); 17] = [
        (
            "path deeper than document",
            &["$.a.b.c.d"],
            r#"{"a":{"b":"x"},"c":[1]}"#,
            r#"{"a":{"b":"x"},"c":[1]}"#,
            0,
        ),
        (
            "descendant path deeper than document",
            &["$..a..b..c"],
            r#"{"a":{"b":"x","c":"y"}}"#,
            r#"{"a":{"b":"x","c":"y"}}"#,
            0,
        ),
        (
            "index past array end",
            &["$.a[2]"],
            r#"{"a":[1,2]}"#,
            r#"{"a":[1,2]}"#,
            0,
        ),
        (
            "root masks every scalar",
            &["$"],
            r#"{"a":[1,"x",true,null,{"b":-2.5}],"c":{},"d":[]}"#,
            r#"{"a":["[REDACTED]","[REDACTED]","[REDACTED]",null,{"b":"[REDACTED]"}],"c":{},"d":[]}"#,
            4,
        ),
        ("root scalar", &["$"], r#""x""#, r#""[REDACTED]""#, 1),
        ("root null kept", &["$"], "null", "null", 0),
        (
            "root after other rules",
            &["$.zz", "$"],
            r#"[false,{"a":0}]"#,
            r#"["[REDACTED]",{"a":"[REDACTED]"}]"#,
            2,
        ),
        (
            "index on object",
            &["$[0]"],
            r#"{"0":"x","a":["y"]}"#,
            r#"{"0":"x","a":["y"]}"#,
            0,
        ),
        (
            "index on nested object",
            &["$.a[0]"],
            r#"{"a":{"0":"x"}}"#,
            r#"{"a":{"0":"x"}}"#,
            0,
        ),
        (
            "descendant index skips objects",
            &["$..[0]"],
            r#"{"0":{"0":"x"},"a":{"0":"y"}}"#,
            r#"{"0":{"0":"x"},"a":{"0":"y"}}"#,
            0,
        ),
        (
            "descendant index selects arrays",
            &["$..[0]"],
            r#"{"0":["x","y"],"a":{"0":"z","b":[["w"],"v"]}}"#,
            r#"{"0":["[REDACTED]","y"],"a":{"0":"z","b":[["[REDACTED]"],"v"]}}"#,
            2,
        ),
        (
            "name 0 skips array",
            &["$.0", "$['0']", "$..0"],
            r#"["x","y"]"#,
            r#"["x","y"]"#,
            0,
        ),
        (
            "name 0 selects member",
            &["$.0"],
            r#"{"0":"x","1":"y"}"#,
            r#"{"0":"[REDACTED]","1":"y"}"#,
            1,
        ),
        (
            "index 0 selects element",
            &["$[0]"],
            r#"["x","y"]"#,
            r#"["[REDACTED]","y"]"#,
            1,
        ),
        (
            "descendant name 0 only on objects",
            &["$..0"],
            r#"{"list":["x","y"],"map":{"0":"x","1":"y"}}"#,
            r#"{"list":["x","y"],"map":{"0":"[REDACTED]","1":"y"}}"#,
            1,
        ),
        (
            "descendant index 0 only on arrays",
            &["$..[0]"],
            r#"{"list":["x","y"],"map":{"0":"x","1":"y"}}"#,
            r#"{"list":["[REDACTED]","y"],"map":{"0":"x","1":"y"}}"#,
            1,
        ),
        (
            "quoted name 0 like dotted",
            &["$.list['0']", "$.map['0']"],
            r#"{"list":["x"],"map":{"0":"x"}}"#,
            r#"{"list":["x"],"map":{"0":"[REDACTED]"}}"#,
            1,
        ),
    ];

    for (description, paths, json, expected, count) in cases {
        check_redacted(description, paths, json, expected, count);
    }
}

/// Duplicate member names are valid JSON that `Value` collapses, so the
/// expected outputs here are written out by hand.
#[test]
fn duplicate_members_masked() {
    // (description, paths, input, expected output, count)
    let cases: [(&str, &[&str], &str, &str, usize); 6] = [
        (
            "both duplicates selected",
            &["$.a"],
            r#"{"a":"x","a":{"b":"y","b":[true,null]},"c":"a"}"#,
            r#"{"a":"[REDACTED]","a":{"b":"[REDACTED]","b":["[REDACTED]",null]},"c":"a"}"#,
            3,
        ),
        (
            "index under duplicates",
            &["$..b[1]"],
            r#"{"b":[1,2],"x":{"b":[3],"b":[4,"5"]}}"#,
            r#"{"b":[1,"[REDACTED]"],"x":{"b":[3],"b":[4,"[REDACTED]"]}}"#,
            2,
        ),
        (
            "escaped spelling of same name",
            &["$.a"],
            r#"{"a":1,"\u0061":2,"b":3}"#,
            r#"{"a":"[REDACTED]","a":"[REDACTED]","b":3}"#,
            2,
        ),
        (
            "container then scalar",
            &["$.a.b"],
            r#"{"a":{"b":"x"},"a":"y","a":{"c":"z","b":{"d":false}}}"#,
            r#"{"a":{"b":"[REDACTED]"},"a":"y","a":{"c":"z","b":{"d":"[REDACTED]"}}}"#,
            2,
        ),
        (
            "duplicates inside array elements",
            &["$[*].id"],
            r#"[{"id":1,"id":2},{"x":{"id":3},"id":null}]"#,
            r#"[{"id":"[REDACTED]","id":"[REDACTED]"},{"x":{"id":3},"id":null}]"#,
            2,
        ),
        (
            "unselected duplicates kept in order",
            &["$.zz"],
            r#"{"b":1,"a":2,"b":3}"#,
            r#"{"b":1,"a":2,"b":3}"#,
            0,
        ),
    ];

    for (description, paths, json, expected, count) in cases {
        check_redacted(description, paths, json, expected, count);
    }
}

/// The streaming masker writes an unselected member back as it was read,
/// duplicates included, so its output can be checked byte for byte.
#[test]
fn duplicate_members_written_in_order() {
    let masker = Masker::new(MaskRules {
        fields: vec![FieldRule {
            path: FieldPath::parse("$..a").unwrap(),
            style: MaskStyle::Redact,
        }],
        detectors: Vec::new(),
    });
    let json = r#"{"b":1,"a":"x","b":{"a":2,"c":"y","a":[3]},"b":"z"}"#;

    let (masked, count) = masker
        .mask_json_bytes(json.as_bytes(), &Context::default())
        .unwrap()
        .unwrap();

    let expected =
        r#"{"b":1,"a":"[REDACTED]","b":{"a":"[REDACTED]","c":"y","a":["[REDACTED]"]},"b":"z"}"#;
    assert_eq!(String::from_utf8(masked).unwrap(), expected);
    assert_eq!(count, 3);
}

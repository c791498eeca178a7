//! Typed reading of the YAML tree that collects every problem instead of
//! stopping at the first, each with its file:line, key path, what was
//! expected and what was found.

use std::cell::RefCell;
use std::fmt;
use std::time::Duration;

use super::yaml::{Node, Value};

/// One configuration problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// `file:line:column`, or the file alone when no line applies.
    pub location: String,
    /// Key path such as `routes[2].match.path`.
    pub path: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}: {}", self.location, self.message)
        } else {
            write!(f, "{}: {}: {}", self.location, self.path, self.message)
        }
    }
}

/// Collects problems while a file is read. Shared by reference so nested
/// readers can all report into one list.
pub struct Problems {
    file: String,
    list: RefCell<Vec<Problem>>,
}

impl Problems {
    pub fn new(file: impl Into<String>) -> Self {
        Problems {
            file: file.into(),
            list: RefCell::new(Vec::new()),
        }
    }

    pub fn file(&self) -> &str {
        &self.file
    }

    /// Records a problem at a node.
    pub fn at(&self, node: &Node, path: &str, message: impl Into<String>) {
        self.push(Some((node.line, node.column)), path, message.into());
    }

    /// Records a problem that belongs to no single line (a missing section, a
    /// cross-reference between sections).
    pub fn global(&self, path: &str, message: impl Into<String>) {
        self.push(None, path, message.into());
    }

    /// Records a problem found in another file (a policy), at that file's
    /// own location.
    pub fn elsewhere(&self, location: String, path: &str, message: impl Into<String>) {
        let problem = Problem {
            location,
            path: path.to_string(),
            message: message.into(),
        };
        self.list.borrow_mut().push(problem);
    }

    fn push(&self, position: Option<(usize, usize)>, path: &str, message: String) {
        let location = match position {
            Some((line, column)) => format!("{}:{}:{}", self.file, line, column),
            None => self.file.clone(),
        };
        self.list.borrow_mut().push(Problem {
            location,
            path: path.to_string(),
            message,
        });
    }

    pub fn is_empty(&self) -> bool {
        self.list.borrow().is_empty()
    }

    pub fn into_vec(self) -> Vec<Problem> {
        self.list.into_inner()
    }
}

/// Describes a found node in a message, quoting short scalars only.
/// Never use it on a field that may hold a secret.
pub fn found(node: &Node) -> String {
    match &node.value {
        Value::Scalar { text, .. } if node.is_null() && text.is_empty() => "nothing".into(),
        Value::Scalar { text, .. } => {
            let shown: String = text.chars().take(60).collect();
            let ellipsis = if text.chars().count() > 60 { "..." } else { "" };
            format!("{shown:?}{ellipsis}")
        }
        _ => node.kind().to_string(),
    }
}

/// Suggests the closest of `candidates` to `given`, when it is close enough
/// to be a likely typo.
pub fn did_you_mean<'a>(
    given: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|candidate| (strsim::jaro_winkler(given, candidate), candidate))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, candidate)| candidate)
}

/// A mapping being read. Every key asked for is remembered, so that
/// [`MapReader::finish`] can report the keys no reader asked for as unknown.
pub struct MapReader<'a> {
    pub node: &'a Node,
    pub path: String,
    entries: &'a [(Node, Node)],
    known: RefCell<Vec<&'static str>>,
    pub problems: &'a Problems,
}

impl<'a> MapReader<'a> {
    /// Opens `node` as a mapping, or reports what was found instead.
    pub fn open(node: &'a Node, path: &str, problems: &'a Problems) -> Option<Self> {
        match &node.value {
            Value::Mapping(entries) => {
                report_duplicate_keys(entries, path, problems);
                Some(MapReader {
                    node,
                    path: path.to_string(),
                    entries,
                    known: RefCell::new(Vec::new()),
                    problems,
                })
            }
            _ => {
                problems.at(
                    node,
                    path,
                    format!("expected a mapping, found {}", found(node)),
                );
                None
            }
        }
    }

    /// Returns the node under `key`, remembering the key as known.
    /// A key with an explicit null value counts as absent.
    pub fn get(&self, key: &'static str) -> Option<&'a Node> {
        self.known.borrow_mut().push(key);
        self.entries
            .iter()
            .find(|(k, _)| scalar_text(k) == Some(key))
            .map(|(_, v)| v)
            .filter(|v| !v.is_null())
    }

    pub fn child_path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{}", self.path, key)
        }
    }

    /// Reports a required key that is missing.
    pub fn missing(&self, key: &str, expected: &str) {
        self.problems.at(
            self.node,
            &self.child_path(key),
            format!("missing; expected {expected}"),
        );
    }

    pub fn map(&self, key: &'static str) -> Option<MapReader<'a>> {
        let node = self.get(key)?;
        MapReader::open(node, &self.child_path(key), self.problems)
    }

    pub fn list(&self, key: &'static str) -> Option<Vec<(String, &'a Node)>> {
        let node = self.get(key)?;
        list_items(node, &self.child_path(key), self.problems)
    }

    pub fn string(&self, key: &'static str) -> Option<String> {
        let node = self.get(key)?;
        scalar_string(node, &self.child_path(key), self.problems)
    }

    pub fn required_string(&self, key: &'static str, expected: &str) -> Option<String> {
        let value = self.string(key);
        if value.is_none() && self.get(key).is_none() {
            self.missing(key, expected);
        }
        value
    }

    /// Reads a list of strings, also accepting a single string.
    pub fn strings(&self, key: &'static str) -> Option<Vec<String>> {
        let node = self.get(key)?;
        let path = self.child_path(key);
        if let Value::Scalar { .. } = node.value {
            return scalar_string(node, &path, self.problems).map(|s| vec![s]);
        }
        let items = list_items(node, &path, self.problems)?;
        let strings: Vec<Option<String>> = items
            .iter()
            .map(|(item_path, item)| scalar_string(item, item_path, self.problems))
            .collect();
        strings.into_iter().collect()
    }

    pub fn bool(&self, key: &'static str) -> Option<bool> {
        let node = self.get(key)?;
        match scalar_text(node) {
            Some("true") => Some(true),
            Some("false") => Some(false),
            _ => {
                let message = format!("expected true or false, found {}", found(node));
                self.problems.at(node, &self.child_path(key), message);
                None
            }
        }
    }

    /// Reads an unsigned integer within `min..=max`; `_` separators are allowed.
    pub fn integer(&self, key: &'static str, min: u64, max: u64) -> Option<u64> {
        let node = self.get(key)?;
        let parsed = scalar_text(node).and_then(|text| text.replace('_', "").parse::<u64>().ok());
        match parsed {
            Some(value) if (min..=max).contains(&value) => Some(value),
            _ => {
                let message = format!(
                    "expected an integer from {min} to {max}, found {}",
                    found(node)
                );
                self.problems.at(node, &self.child_path(key), message);
                None
            }
        }
    }

    /// Reads a byte size such as `1MiB`, `64KiB`, `512kB` or a plain number of bytes.
    pub fn byte_size(&self, key: &'static str, min: u64, max: u64) -> Option<u64> {
        let node = self.get(key)?;
        match scalar_text(node).and_then(parse_byte_size) {
            Some(value) if (min..=max).contains(&value) => Some(value),
            _ => {
                let message = format!(
                    "expected a size from {min} to {max} bytes such as 16KiB or 1MiB, found {}",
                    found(node)
                );
                self.problems.at(node, &self.child_path(key), message);
                None
            }
        }
    }

    /// Reads a duration such as `250ms`, `30s`, `5m` or `1h` within `min..=max`.
    pub fn duration(&self, key: &'static str, min: Duration, max: Duration) -> Option<Duration> {
        let node = self.get(key)?;
        match scalar_text(node).and_then(|text| humantime::parse_duration(text).ok()) {
            Some(value) if value >= min && value <= max => Some(value),
            _ => {
                let message = format!(
                    "expected a duration from {} to {}{}, found {}",
                    humantime::format_duration(min),
                    humantime::format_duration(max),
                    duration_examples(min, max),
                    found(node)
                );
                self.problems.at(node, &self.child_path(key), message);
                None
            }
        }
    }

    /// Reads one of a fixed set of words.
    pub fn choice(&self, key: &'static str, allowed: &[&'static str]) -> Option<&'static str> {
        let node = self.get(key)?;
        let text = scalar_text(node);
        if let Some(word) = allowed.iter().find(|word| Some(**word) == text) {
            return Some(word);
        }
        let mut message = format!(
            "expected one of {}, found {}",
            allowed.join(", "),
            found(node)
        );
        if let Some(suggestion) = text.and_then(|t| did_you_mean(t, allowed.iter().copied())) {
            message.push_str(&format!("; did you mean {suggestion:?}?"));
        }
        self.problems.at(node, &self.child_path(key), message);
        None
    }

    /// Reports every key that no reader asked for, with a suggestion when one
    /// of the known keys is close.
    pub fn finish(self) {
        let known = self.known.take();
        for (key, _) in self.entries {
            let Some(name) = scalar_text(key) else {
                self.problems.at(key, &self.path, "expected a string key");
                continue;
            };
            if known.contains(&name) {
                continue;
            }
            let mut message = format!("unknown key {name:?}");
            match did_you_mean(name, known.iter().copied()) {
                Some(suggestion) => message.push_str(&format!("; did you mean {suggestion:?}?")),
                None if !known.is_empty() => {
                    let mut sorted = known.clone();
                    sorted.sort_unstable();
                    sorted.dedup();
                    message.push_str(&format!("; expected one of {}", sorted.join(", ")));
                }
                None => {}
            }
            self.problems.at(key, &self.child_path(name), message);
        }
    }

    /// Iterates over the entries of a mapping used as a dictionary of named
    /// items (such as `upstreams`), with each name's path.
    pub fn named_entries(&self) -> impl Iterator<Item = (String, &'a Node, &'a Node)> + '_ {
        self.entries.iter().filter_map(move |(key, value)| {
            let name = scalar_text(key)?;
            Some((name.to_string(), key, value))
        })
    }
}

fn report_duplicate_keys(entries: &[(Node, Node)], path: &str, problems: &Problems) {
    for (index, (key, _)) in entries.iter().enumerate() {
        let Some(name) = scalar_text(key) else {
            continue;
        };
        let first = entries[..index]
            .iter()
            .find(|(earlier, _)| scalar_text(earlier) == Some(name));
        if let Some((earlier, _)) = first {
            let message = format!(
                "duplicate key {name:?}; it was first set on line {}",
                earlier.line
            );
            problems.at(key, path, message);
        }
    }
}

/// Returns the text of a scalar node.
pub fn scalar_text(node: &Node) -> Option<&str> {
    match &node.value {
        Value::Scalar { text, .. } => Some(text.as_str()),
        _ => None,
    }
}

pub fn scalar_string(node: &Node, path: &str, problems: &Problems) -> Option<String> {
    match &node.value {
        Value::Scalar { text, .. } if !node.is_null() => Some(text.clone()),
        _ => {
            problems.at(
                node,
                path,
                format!("expected a string, found {}", found(node)),
            );
            None
        }
    }
}

/// Returns the items of a list node, each with its `path[index]`.
pub fn list_items<'a>(
    node: &'a Node,
    path: &str,
    problems: &Problems,
) -> Option<Vec<(String, &'a Node)>> {
    match &node.value {
        Value::Sequence(items) => Some(
            items
                .iter()
                .enumerate()
                .map(|(i, item)| (format!("{path}[{i}]"), item))
                .collect(),
        ),
        _ => {
            problems.at(
                node,
                path,
                format!("expected a list, found {}", found(node)),
            );
            None
        }
    }
}

/// Returns " such as ..." with the example durations inside `min..=max`,
/// or nothing when none is.
fn duration_examples(min: Duration, max: Duration) -> String {
    let examples: Vec<&str> = [("500ms", 500), ("30s", 30_000), ("5m", 300_000)]
        .into_iter()
        .filter(|(_, millis)| (min..=max).contains(&Duration::from_millis(*millis)))
        .map(|(text, _)| text)
        .collect();
    match examples.as_slice() {
        [] => String::new(),
        [only] => format!(" such as {only}"),
        [first @ .., last] => format!(" such as {} or {last}", first.join(", ")),
    }
}

fn parse_byte_size(text: &str) -> Option<u64> {
    let text = text.trim().replace('_', "");
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let number: u64 = digits.parse().ok()?;
    let multiplier: u64 = match unit.trim() {
        "" | "B" => 1,
        "kB" | "KB" => 1_000,
        "KiB" => 1 << 10,
        "MB" => 1_000_000,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        _ => return None,
    };
    number.checked_mul(multiplier)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::yaml;

    fn read(text: &str, f: impl FnOnce(&MapReader)) -> Vec<String> {
        let root = yaml::parse(text).unwrap();
        let problems = Problems::new("test.yaml");
        if let Some(reader) = MapReader::open(&root, "", &problems) {
            f(&reader);
            reader.finish();
        }
        problems.into_vec().iter().map(|p| p.to_string()).collect()
    }

    #[test]
    fn unknown_key_suggests_close_match() {
        let problems = read("timeout: 5s\nupstrem: x\n", |r| {
            r.duration("timeout", Duration::ZERO, Duration::from_secs(60));
            r.string("upstream");
        });
        assert_eq!(
            problems,
            vec!["test.yaml:2:1: upstrem: unknown key \"upstrem\"; did you mean \"upstream\"?"]
        );
    }

    #[test]
    fn every_problem_is_reported() {
        let problems = read("a: x\nb: 99999\nc: [1]\n", |r| {
            r.duration("a", Duration::ZERO, Duration::from_secs(1));
            r.integer("b", 1, 10);
            r.string("c");
        });
        assert_eq!(problems.len(), 3);
        assert!(problems[0].starts_with("test.yaml:1:4: a: expected a duration"));
        assert_eq!(
            problems[1],
            "test.yaml:2:4: b: expected an integer from 1 to 10, found \"99999\""
        );
        assert_eq!(
            problems[2],
            "test.yaml:3:4: c: expected a string, found a list"
        );
    }

    #[test]
    fn duplicate_keys_reported() {
        let problems = read("a: 1\na: 2\n", |r| {
            r.string("a");
        });
        assert_eq!(
            problems,
            vec!["test.yaml:2:1: duplicate key \"a\"; it was first set on line 1"]
        );
    }

    #[test]
    fn byte_sizes_parse() {
        assert_eq!(parse_byte_size("16KiB"), Some(16384));
        assert_eq!(parse_byte_size("1MiB"), Some(1 << 20));
        assert_eq!(parse_byte_size("2_000"), Some(2000));
        assert_eq!(parse_byte_size("1 TB"), None);
    }
}

//! A YAML document as a tree of nodes that remember their line and column,
//! so that every configuration problem can point at the place it comes from.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// One YAML node and where it starts in the file (1-based line and column).
#[derive(Debug, Clone)]
pub struct Node {
    pub value: Value,
    pub line: usize,
    pub column: usize,
}

#[derive(Debug, Clone)]
pub enum Value {
    /// A scalar, with `quoted` set when the file quoted it (so `"1"` stays a string).
    Scalar {
        text: String,
        quoted: bool,
    },
    Sequence(Vec<Node>),
    Mapping(Vec<(Node, Node)>),
}

impl Node {
    /// Names the kind of node for "expected X, found Y" messages.
    pub fn kind(&self) -> &'static str {
        match &self.value {
            Value::Scalar {
                text,
                quoted: false,
            } if is_null(text) => "null",
            Value::Scalar { .. } => "a scalar",
            Value::Sequence(_) => "a list",
            Value::Mapping(_) => "a mapping",
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(&self.value, Value::Scalar { text, quoted: false } if is_null(text))
    }
}

fn is_null(text: &str) -> bool {
    matches!(text, "" | "~" | "null" | "Null" | "NULL")
}

/// A syntax error with the place the parser stopped at.
#[derive(Debug)]
pub struct SyntaxError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// Parses one YAML document. An empty file gives an empty mapping.
pub fn parse(text: &str) -> Result<Node, SyntaxError> {
    let mut builder = TreeBuilder::default();
    let mut parser = Parser::new_from_str(text);
    if let Err(error) = parser.load(&mut builder, false) {
        let mark = error.marker();
        return Err(SyntaxError {
            line: mark.line(),
            column: mark.col() + 1,
            message: error.info().to_string(),
        });
    }
    if let Some(message) = builder.error {
        return Err(SyntaxError {
            line: builder.error_line,
            column: 1,
            message,
        });
    }
    Ok(builder.root.unwrap_or(Node {
        value: Value::Mapping(Vec::new()),
        line: 1,
        column: 1,
    }))
}

/// Builds the node tree from parser events. Anchors and aliases are
/// resolved by copying the anchored node.
#[derive(Default)]
struct TreeBuilder {
    stack: Vec<Node>,
    anchors: HashMap<usize, Node>,
    anchor_stack: Vec<usize>,
    root: Option<Node>,
    error: Option<String>,
    error_line: usize,
}

impl TreeBuilder {
    fn push_complete(&mut self, node: Node, anchor: usize) {
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(parent) => match &mut parent.value {
                Value::Sequence(items) => items.push(node),
                Value::Mapping(entries) => {
                    // A mapping collects its key first; the value follows.
                    // The key is parked as an entry with a placeholder value.
                    match entries.last_mut() {
                        Some((_, value)) if is_placeholder(value) => *value = node,
                        _ => entries.push((node, placeholder())),
                    }
                }
                Value::Scalar { .. } => unreachable!("scalars have no children"),
            },
        }
    }
}

fn placeholder() -> Node {
    Node {
        value: Value::Scalar {
            text: "\u{0}placeholder".into(),
            quoted: true,
        },
        line: 0,
        column: 0,
    }
}

fn is_placeholder(node: &Node) -> bool {
    node.line == 0
        && matches!(&node.value, Value::Scalar { text, .. } if text == "\u{0}placeholder")
}

impl MarkedEventReceiver for TreeBuilder {
    fn on_event(&mut self, event: Event, mark: Marker) {
        if self.error.is_some() {
            return;
        }
        let (line, column) = (mark.line(), mark.col() + 1);
        match event {
            Event::Scalar(text, style, anchor, _) => {
                let quoted = !matches!(style, TScalarStyle::Plain);
                let node = Node {
                    value: Value::Scalar { text, quoted },
                    line,
                    column,
                };
                self.push_complete(node, anchor);
            }
            Event::SequenceStart(anchor, _) => {
                self.anchor_stack.push(anchor);
                self.stack.push(Node {
                    value: Value::Sequence(Vec::new()),
                    line,
                    column,
                });
            }
            Event::MappingStart(anchor, _) => {
                self.anchor_stack.push(anchor);
                self.stack.push(Node {
                    value: Value::Mapping(Vec::new()),
                    line,
                    column,
                });
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let node = self
                    .stack
                    .pop()
                    .expect("parser balances start and end events");
                let anchor = self.anchor_stack.pop().unwrap_or(0);
                self.push_complete(node, anchor);
            }
            Event::Alias(anchor) => match self.anchors.get(&anchor).cloned() {
                Some(node) => self.push_complete(node, 0),
                None => {
                    self.error = Some("alias refers to an unknown anchor".into());
                    self.error_line = line;
                }
            },
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_keep_lines() {
        let root = parse("a: 1\nb:\n  - x\n  - \"2\"\n").unwrap();
        let Value::Mapping(entries) = &root.value else {
            panic!("not a mapping")
        };
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[1].0.line, 2);
        let Value::Sequence(items) = &entries[1].1.value else {
            panic!("not a list")
        };
        assert_eq!(items[1].line, 4);
        assert!(matches!(
            &items[1].value,
            Value::Scalar { quoted: true, .. }
        ));
    }

    #[test]
    fn aliases_copy_anchored_nodes() {
        let root = parse("a: &x {k: v}\nb: *x\n").unwrap();
        let Value::Mapping(entries) = &root.value else {
            panic!("not a mapping")
        };
        assert!(matches!(&entries[1].1.value, Value::Mapping(m) if m.len() == 1));
    }

    #[test]
    fn syntax_error_has_line() {
        let error = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(error.line >= 1);
    }

    #[test]
    fn empty_document_is_empty_mapping() {
        assert!(matches!(parse("").unwrap().value, Value::Mapping(ref m) if m.is_empty()));
    }
}

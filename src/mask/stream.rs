//! Masks a JSON body in one pass from its bytes to the masked bytes, with
//! no document tree in between: serde_json's parser hands every value to
//! a visitor that writes it out, masked where a rule selects it. Member order
//! and duplicate members are kept as the upstream sent them.
//!
//! The rules are those of [`Masker::mask_json`], which this must agree
//! with value for value (the tests compare the two).

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use super::path::ChildKey;
use super::style::{self, MaskStyle};
use super::{Context, Masker, States};

/// Rewrites `json` with every masked value replaced. Returns `None` when
/// nothing was masked (the input stays valid to send as it is), and an
/// error when the input is not one JSON value.
pub(super) fn mask_json_bytes(
    masker: &Masker,
    json: &[u8],
    context: &Context,
) -> Result<Option<(Vec<u8>, usize)>, serde_json::Error> {
    let mut output = Output {
        bytes: Vec::with_capacity(json.len() + json.len() / 8),
        count: 0,
    };
    let run = Run {
        masker,
        context,
        absent: masker.detectors_absent_from(json),
    };
    let root = Node::root(run, &mut output);

    // A body checked as UTF-8 once spares the parser that check on every
    // string. A body that fails it is parsed as bytes, for the parser's
    // error and its position.
    match std::str::from_utf8(json) {
        Ok(text) => parse(root, serde_json::Deserializer::from_str(text))?,
        Err(_) => parse(root, serde_json::Deserializer::from_slice(json))?,
    }

    Ok((output.count > 0).then_some((output.bytes, output.count)))
}

fn parse<'de, R: serde_json::de::Read<'de>>(
    root: Node<'_, '_, '_>,
    mut parser: serde_json::Deserializer<R>,
) -> Result<(), serde_json::Error> {
    root.deserialize(&mut parser)?;
    parser.end()
}

/// The masked document so far and the number of values rewritten.
struct Output {
    bytes: Vec<u8>,
    count: usize,
}

impl Output {
    fn string(&mut self, text: &str) {
        // serde_json fails only on a failing writer, and a Vec never fails.
        let _ = serde_json::to_writer(&mut self.bytes, text);
    }

    /// Writes a string that was read from the input without escapes, as it
    /// was there. The parser rejects control characters, so such a string
    /// contains nothing that needs an escape, and this writes what
    /// [`Output::string`] would.
    fn verbatim(&mut self, text: &str) {
        self.bytes.reserve(text.len() + 2);
        self.bytes.push(b'"');
        self.bytes.extend_from_slice(text.as_bytes());
        self.bytes.push(b'"');
    }

    fn masked(&mut self, text: &str) {
        self.string(text);
        self.count += 1;
    }
}

/// Form of a scalar's text in the input, which decides how it is written
/// back unmasked.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Form {
    /// A number or boolean, written without quotes.
    Bare,
    /// A string that had escapes; it is escaped again.
    Escaped,
    /// A string without escapes, copied as it was.
    Verbatim,
}

/// Settings shared by every value of one document.
#[derive(Clone, Copy)]
struct Run<'a> {
    masker: &'a Masker,
    context: &'a Context<'a>,
    /// Detectors that match no string of the document, as a bit set.
    absent: u64,
}

/// One value of the document: where it is and, when a field rule selects
/// it or a value around it, that rule's style.
struct Node<'a, 'o, 'p> {
    run: Run<'a>,
    output: &'o mut Output,
    place: Place<'p>,
    whole: Option<MaskStyle>,
}

/// Position of a value, from which the path states of its children follow.
/// A child's states are computed only when it is an object or an array,
/// because a scalar needs no more than its `whole` style.
enum Place<'p> {
    Root(States),
    Child(&'p [u64], ChildKey<'p>),
}

/// An object or array being read: the path states of its members.
struct Container {
    states: States,
    whole: Option<MaskStyle>,
}

impl<'a, 'o> Node<'a, 'o, '_> {
    fn root(run: Run<'a>, output: &'o mut Output) -> Self {
        let states = run.masker.root_states();
        Node {
            run,
            output,
            whole: run.masker.completed_style(&states),
            place: Place::Root(states),
        }
    }

    /// Starts reading this value as an object or array.
    fn open(self) -> (Run<'a>, &'o mut Output, Container) {
        let states = match (self.whole, self.place) {
            (Some(_), _) => States::new(),
            (None, Place::Root(states)) => states,
            (None, Place::Child(parent, key)) => self.run.masker.advance(parent, key),
        };
        let container = Container {
            states,
            whole: self.whole,
        };
        (self.run, self.output, container)
    }

    fn scalar_text(self, text: &str, form: Form) {
        if let Some(style) = self.whole {
            let masked = style::apply(style, text, None, self.run.context.pseudonym_key);
            self.output.masked(&masked);
            return;
        }

        // The whole-body search covers strings only: a number's text here
        // may be written differently from the body's bytes.
        let skip = if form == Form::Bare {
            0
        } else {
            self.run.absent
        };
        match self
            .run
            .masker
            .mask_detected_except(text, self.run.context, skip)
        {
            Some((masked, _)) => self.output.masked(&masked),
            None => match form {
                Form::Bare => self.output.bytes.extend_from_slice(text.as_bytes()),
                Form::Escaped => self.output.string(text),
                Form::Verbatim => self.output.verbatim(text),
            },
        }
    }
}

impl Container {
    fn child<'a, 'c>(
        &'c self,
        run: Run<'a>,
        output: &'c mut Output,
        key: ChildKey<'c>,
    ) -> Node<'a, 'c, 'c> {
        let whole = self
            .whole
            .or_else(|| run.masker.completed_style_of_child(&self.states, key));
        Node {
            run,
            output,
            place: Place::Child(&self.states, key),
            whole,
        }
    }
}

impl<'de> DeserializeSeed<'de> for Node<'_, '_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Node<'_, '_, '_> {
    type Value = ();

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, flag: bool) -> Result<(), E> {
        match self.whole {
            Some(_) => self.scalar_text(if flag { "true" } else { "false" }, Form::Bare),
            None => self
                .output
                .bytes
                .extend_from_slice(if flag { b"true" } else { b"false" }),
        }
        Ok(())
    }

    fn visit_i64<E: de::Error>(self, number: i64) -> Result<(), E> {
        self.scalar_text(itoa::Buffer::new().format(number), Form::Bare);
        Ok(())
    }

    fn visit_u64<E: de::Error>(self, number: u64) -> Result<(), E> {
        self.scalar_text(itoa::Buffer::new().format(number), Form::Bare);
        Ok(())
    }

    fn visit_f64<E: de::Error>(self, number: f64) -> Result<(), E> {
        // The text serde_json writes for this number, as `Value` would.
        let text = serde_json::Number::from_f64(number)
            .map_or_else(|| "null".to_string(), |n| n.to_string());
        self.scalar_text(&text, Form::Bare);
        Ok(())
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<(), E> {
        self.scalar_text(text, Form::Escaped);
        Ok(())
    }

    // The parser lends a string straight from the input only when it had no
    // escapes.
    fn visit_borrowed_str<E: de::Error>(self, text: &'de str) -> Result<(), E> {
        self.scalar_text(text, Form::Verbatim);
        Ok(())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.output.bytes.extend_from_slice(b"null");
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut items: A) -> Result<(), A::Error> {
        let (run, output, container) = self.open();
        output.bytes.push(b'[');
        let mut index = 0;
        loop {
            if index > 0 {
                output.bytes.push(b',');
            }
            let child = container.child(run, output, ChildKey::Index(index));
            if items.next_element_seed(child)?.is_none() {
                break;
            }
            index += 1;
        }
        // A comma was written before looking for an element that was not
        // there.
        if index > 0 {
            output.bytes.pop();
        }
        output.bytes.push(b']');
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut members: A) -> Result<(), A::Error> {
        let (run, output, container) = self.open();
        output.bytes.push(b'{');
        let mut first = true;
        while let Some(name) = members.next_key_seed(Name)? {
            if !first {
                output.bytes.push(b',');
            }
            first = false;
            match &name {
                Cow::Borrowed(name) => output.verbatim(name),
                Cow::Owned(name) => output.string(name),
            }
            output.bytes.push(b':');

            let child = container.child(run, output, ChildKey::Name(&name));
            members.next_value_seed(child)?;
        }
        output.bytes.push(b'}');
        Ok(())
    }
}

/// A member name, borrowed from the input when it has no escapes.
struct Name;

impl<'de> DeserializeSeed<'de> for Name {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Name {
    type Value = Cow<'de, str>;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a member name")
    }

    fn visit_borrowed_str<E: de::Error>(self, name: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(name))
    }

    fn visit_str<E: de::Error>(self, name: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(name.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;
    use crate::mask::{Detector, DetectorRule, FieldPath, FieldRule, MaskRules, PseudonymKey};

    fn masker() -> Masker {
        let field = |path: &str, style| FieldRule {
            path: FieldPath::parse(path).unwrap(),
            style,
        };
        let detector = |detector, style| DetectorRule { detector, style };
        Masker::new(MaskRules {
            fields: vec![
                field("$[*].ssn", MaskStyle::Redact),
                field("$..card", MaskStyle::Pci),
                field("$..email", MaskStyle::Pseudonym),
                field("$.meta", MaskStyle::Redact),
            ],
            detectors: vec![
                detector(Detector::Card, MaskStyle::Pci),
                detector(Detector::Email, MaskStyle::Redact),
                detector(Detector::Phone, MaskStyle::Redact),
                detector(Detector::Iban, MaskStyle::Redact),
            ],
        })
    }

    /// Masks `document` both ways and checks they agree.
    fn both_ways(document: &Value) -> (Value, usize) {
        let masker = masker();
        let key = PseudonymKey::new(&[7u8; 32]).unwrap();
        let context = Context {
            pseudonym_key: Some(&key),
            unmask: false,
        };

        let mut tree = document.clone();
        let tree_count = masker.mask_json(&mut tree, &context);
        let bytes = serde_json::to_vec(document).unwrap();
        let streamed = mask_json_bytes(&masker, &bytes, &context).unwrap();

        let (streamed, count) = match streamed {
            Some((masked, count)) => (serde_json::from_slice(&masked).unwrap(), count),
            None => (document.clone(), 0),
        };
        assert_eq!(streamed, tree, "the streamed and the tree masking differ");
        assert_eq!(count, tree_count, "counts differ");
        (streamed, count)
    }

    #[test]
    fn agrees_with_the_tree_masker() {
        // (description, document)
        let cases = [
            (
                "nothing to mask",
                json!([{ "id": 1, "name": "Ann", "ok": true, "n": null }]),
            ),
            (
                "paths and detectors",
                json!([{
                    "id": 7, "ssn": "123-45-6789", "email": "a@example.com",
                    "card": { "number": "4111 1111 1111 1111", "cvv": 123, "ok": false, "x": null },
                    "phone": "+44 20 7946 0958", "iban": "DE89 3704 0044 0532 0130 00",
                    "note": "pay 5500-0000-0000-0004 now", "big": 4111111111111111u64,
                    "float": 1.5, "neg": -3
                }]),
            ),
            (
                "nested arrays and descendants",
                json!({
                    "meta": { "a": [1, "x", true] },
                    "users": [[{ "email": "b@example.org" }], { "contact": { "email": 5 } }]
                }),
            ),
            ("empty containers", json!({ "a": [], "b": {}, "c": [[]] })),
        ];
        for (description, document) in cases {
            eprintln!("{description}");
            both_ways(&document);
        }
    }

    #[test]
    fn keeps_member_order_and_unicode_escapes_are_masked() {
        let masker = masker();
        let context = Context::default();
        let json = br#"{"z":1,"a":"\u0034111111111111111","m":[ 1 , 2 ]}"#;

        let (masked, count) = mask_json_bytes(&masker, json, &context).unwrap().unwrap();

        let text = String::from_utf8(masked).unwrap();
        assert_eq!(count, 1);
        assert!(text.starts_with(r#"{"z":1,"a":"411111"#), "{text}");
        assert!(!text.contains("4111111111111111"), "{text}");
        assert!(text.ends_with(r#""m":[1,2]}"#), "{text}");
    }

    #[test]
    fn unmasked_strings_and_names_written_back_exactly() {
        let masker = Masker::new(MaskRules {
            fields: vec![FieldRule {
                path: FieldPath::parse("$.s").unwrap(),
                style: MaskStyle::Redact,
            }],
            detectors: Vec::new(),
        });
        let json = r#"{"s":"x","plain é":"a/b","q\"uote":"q\"uote","esc":"\u00e9\n\/","":""}"#;

        let (masked, _) = mask_json_bytes(&masker, json.as_bytes(), &Context::default())
            .unwrap()
            .unwrap();

        let expected =
            r#"{"s":"[REDACTED]","plain é":"a/b","q\"uote":"q\"uote","esc":"é\n/","":""}"#;
        assert_eq!(String::from_utf8(masked).unwrap(), expected);
    }

    #[test]
    fn rejects_what_is_not_one_json_value() {
        let masker = masker();
        let context = Context::default();
        let invalid_utf8: [&[u8]; 3] = [b"\"\xff\"", b"[\"a\",\"\xc3\"]", b"{\"\xed\xa0\x80\":1}"];
        let malformed: [&[u8]; 6] = [b"{", b"[1,]", b"{} {}", b"nul", b"\"\\x\"", b"[1] x"];
        for input in malformed.into_iter().chain(invalid_utf8) {
            assert!(
                mask_json_bytes(&masker, input, &context).is_err(),
                "{}",
                String::from_utf8_lossy(input)
            );
        }
    }
}

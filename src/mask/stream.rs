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
    let states = masker.root_states();
    let root = Node {
        masker,
        context,
        absent: masker.detectors_absent_from(json),
        output: &mut output,
        whole: masker.completed_style(&states),
        states,
    };

    let mut parser = serde_json::Deserializer::from_slice(json);
    root.deserialize(&mut parser)?;
    parser.end()?;

    Ok((output.count > 0).then_some((output.bytes, output.count)))
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

    fn masked(&mut self, text: &str) {
        self.string(text);
        self.count += 1;
    }
}

/// One value of the document: where it is (the path states of the field
/// rules) and, inside a value a field rule selected, that rule's style.
struct Node<'a, 'o> {
    masker: &'a Masker,
    context: &'a Context<'a>,
    /// Detectors that match no string of the document, as a bit set.
    absent: u64,
    output: &'o mut Output,
    states: States,
    whole: Option<MaskStyle>,
}

impl Node<'_, '_> {
    fn child(&mut self, key: ChildKey<'_>) -> Node<'_, '_> {
        let (states, whole) = match self.whole {
            Some(style) => (States::new(), Some(style)),
            None => {
                let states = self.masker.advance(&self.states, key);
                let whole = self.masker.completed_style(&states);
                (states, whole)
            }
        };
        Node {
            masker: self.masker,
            context: self.context,
            absent: self.absent,
            output: &mut *self.output,
            states,
            whole,
        }
    }

    fn scalar_text(self, text: &str, quoted: bool) {
        if let Some(style) = self.whole {
            let masked = style::apply(style, text, None, self.context.pseudonym_key);
            self.output.masked(&masked);
            return;
        }

        // The whole-body search covers strings only: a number's text here
        // may be written differently from the body's bytes.
        let skip = if quoted { self.absent } else { 0 };
        match self.masker.mask_detected_except(text, self.context, skip) {
            Some((masked, _)) => self.output.masked(&masked),
            None if quoted => self.output.string(text),
            None => self.output.bytes.extend_from_slice(text.as_bytes()),
        }
    }
}

impl<'de> DeserializeSeed<'de> for Node<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Node<'_, '_> {
    type Value = ();

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, flag: bool) -> Result<(), E> {
        match self.whole {
            Some(_) => self.scalar_text(if flag { "true" } else { "false" }, false),
            None => self
                .output
                .bytes
                .extend_from_slice(if flag { b"true" } else { b"false" }),
        }
        Ok(())
    }

    fn visit_i64<E: de::Error>(self, number: i64) -> Result<(), E> {
        self.scalar_text(itoa::Buffer::new().format(number), false);
        Ok(())
    }

    fn visit_u64<E: de::Error>(self, number: u64) -> Result<(), E> {
        self.scalar_text(itoa::Buffer::new().format(number), false);
        Ok(())
    }

    fn visit_f64<E: de::Error>(self, number: f64) -> Result<(), E> {
        // The text serde_json writes for this number, as `Value` would.
        let text = serde_json::Number::from_f64(number)
            .map_or_else(|| "null".to_string(), |n| n.to_string());
        self.scalar_text(&text, false);
        Ok(())
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<(), E> {
        self.scalar_text(text, true);
        Ok(())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.output.bytes.extend_from_slice(b"null");
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut items: A) -> Result<(), A::Error> {
        self.output.bytes.push(b'[');
        let mut index = 0;
        loop {
            if index > 0 {
                self.output.bytes.push(b',');
            }
            let child = self.child(ChildKey::Index(index));
            if items.next_element_seed(child)?.is_none() {
                break;
            }
            index += 1;
        }
        // A comma was written before looking for an element that was not
        // there.
        if index > 0 {
            self.output.bytes.pop();
        }
        self.output.bytes.push(b']');
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut members: A) -> Result<(), A::Error> {
        self.output.bytes.push(b'{');
        let mut first = true;
        while let Some(name) = members.next_key_seed(Name)? {
            if !first {
                self.output.bytes.push(b',');
            }
            first = false;
            self.output.string(&name);
            self.output.bytes.push(b':');

            let child = self.child(ChildKey::Name(&name));
            members.next_value_seed(child)?;
        }
        self.output.bytes.push(b'}');
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
    fn rejects_what_is_not_one_json_value() {
        let masker = masker();
        let context = Context::default();
        for input in [&b"{"[..], b"[1,]", b"{} {}", b"nul", b"\"\\x\"", b"[1] x"] {
            assert!(
                mask_json_bytes(&masker, input, &context).is_err(),
                "{}",
                String::from_utf8_lossy(input)
            );
        }
    }
}

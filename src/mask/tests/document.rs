//! JSON document type for the randomized masking tests.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::Number;

/// JSON document that keeps member order and duplicate member names, which
/// `serde_json::Value` does not. Its `Debug` output is its compact JSON text.
#[derive(Clone, PartialEq)]
pub(super) enum Document {
    Null,
    Bool(bool),
    Number(Number),
    String(String),
    Array(Vec<Document>),
    Object(Vec<(String, Document)>),
}

impl fmt::Debug for Document {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = serde_json::to_string(self).map_err(|_| fmt::Error)?;
        f.write_str(&text)
    }
}

impl Serialize for Document {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Document::Null => serializer.serialize_unit(),
            Document::Bool(flag) => serializer.serialize_bool(*flag),
            Document::Number(number) => number.serialize(serializer),
            Document::String(text) => serializer.serialize_str(text),
            Document::Array(items) => {
                let mut sequence = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    sequence.serialize_element(item)?;
                }
                sequence.end()
            }
            Document::Object(members) => {
                let mut map = serializer.serialize_map(Some(members.len()))?;
                for (name, value) in members {
                    map.serialize_entry(name, value)?;
                }
                map.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for Document {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Document, D::Error> {
        deserializer.deserialize_any(DocumentVisitor)
    }
}

struct DocumentVisitor;

impl<'de> Visitor<'de> for DocumentVisitor {
    type Value = Document;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, flag: bool) -> Result<Document, E> {
        Ok(Document::Bool(flag))
    }

    fn visit_i64<E: de::Error>(self, number: i64) -> Result<Document, E> {
        Ok(Document::Number(number.into()))
    }

    fn visit_u64<E: de::Error>(self, number: u64) -> Result<Document, E> {
        Ok(Document::Number(number.into()))
    }

    fn visit_f64<E: de::Error>(self, number: f64) -> Result<Document, E> {
        Number::from_f64(number)
            .map(Document::Number)
            .ok_or_else(|| E::custom(format!("number {number} is not finite")))
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Document, E> {
        Ok(Document::String(text.to_owned()))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Document, E> {
        Ok(Document::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut items: A) -> Result<Document, A::Error> {
        let mut array = Vec::new();
        while let Some(item) = items.next_element()? {
            array.push(item);
        }
        Ok(Document::Array(array))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut members: A) -> Result<Document, A::Error> {
        let mut object = Vec::new();
        while let Some(member) = members.next_entry::<String, Document>()? {
            object.push(member);
        }
        Ok(Document::Object(object))
    }
}

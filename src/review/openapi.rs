//! OpenAPI documents: loading (3.0 and 3.1, YAML or JSON), internal
//! `$ref` resolution and the list of operations the checks walk.
//!
//! Documents are read into `serde_json::Value`s. A YAML document goes
//! through the configuration's YAML reader, so the line of every node is
//! kept for the report. External `$ref`s (another file or a URL) are not
//! followed: the review goes on without what they point to and says so in
//! the document's notes.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use serde_json::{Map, Value};

use crate::config::yaml::{self, Node, Value as YamlValue};

use super::model::{ApiInput, ApiLocation};

/// HTTP methods an OpenAPI path item may describe.
const METHODS: &[&str] = &[
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// Deepest nesting of schemas and `$ref`s followed; deeper parts are not
/// reviewed, which keeps recursive schemas finite.
const MAX_DEPTH: usize = 24;

/// One loaded document.
pub struct ApiDoc {
    pub file: String,
    pub title: String,
    pub version: String,
    pub root: Value,
    /// Line of each node by JSON Pointer, for YAML documents.
    lines: HashMap<String, usize>,
    pub operations: Vec<Operation>,
    /// Parts of the document that were not reviewed, and why.
    pub notes: Vec<String>,
}

/// One operation with its security, parameters and schemas resolved.
pub struct Operation {
    /// The templated path as documented, such as `/cards/{cardId}`.
    pub path: String,
    /// Lower-case method.
    pub method: String,
    pub operation_id: Option<String>,
    pub summary: String,
    pub deprecated: bool,
    /// Effective security requirements: the operation's own, else the
    /// document's. Empty when the operation is public (`security: []`).
    pub security: Vec<Vec<(String, Vec<String>)>>,
    /// Whether `security` was set explicitly on the operation.
    pub security_explicit: bool,
    pub parameters: Vec<Parameter>,
    /// Schema of the request body (JSON, else the first media type).
    pub request_schema: Option<(Value, String)>,
    /// Schemas of successful responses, each with its pointer.
    pub response_schemas: Vec<(Value, String)>,
    /// Schemas of error responses (4XX, 5XX and `default`), each with its
    /// pointer.
    pub error_schemas: Vec<(Value, String)>,
    /// JSON Pointer of the operation object.
    pub pointer: String,
}

/// A parameter of an operation, after `$ref` resolution.
pub struct Parameter {
    pub name: String,
    /// `path`, `query`, `header` or `cookie`.
    pub location: String,
    pub schema: Value,
    pub pointer: String,
}

/// A document that could not be reviewed at all.
#[derive(Debug)]
pub struct LoadError(pub String);

impl ApiDoc {
    /// Reads and checks an OpenAPI document.
    pub fn load(path: &Path) -> Result<ApiDoc, LoadError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|error| LoadError(format!("{file}: cannot read the file: {error}")))?;
        ApiDoc::parse(&text, &file)
    }

    /// Parses document text; `file` names it in locations and messages.
    pub fn parse(text: &str, file: &str) -> Result<ApiDoc, LoadError> {
        let (root, lines) = parse_tree(text, file)?;
        let version = check_version(&root, file)?;
        let title = root
            .pointer("/info/title")
            .and_then(Value::as_str)
            .unwrap_or(file)
            .to_string();
        let mut doc = ApiDoc {
            file: file.to_string(),
            title,
            version,
            root,
            lines,
            operations: Vec::new(),
            notes: Vec::new(),
        };
        doc.operations = doc.read_operations();
        doc.note_external_refs();
        Ok(doc)
    }

    /// Summarises the document for the report's inputs.
    pub fn input(&self) -> ApiInput {
        ApiInput {
            file: self.file.clone(),
            title: self.title.clone(),
            version: self.version.clone(),
            operations: self.operations.len(),
        }
    }

    /// Builds the location of a node, optionally inside an operation.
    pub fn at(&self, pointer: &str, operation: Option<&Operation>) -> ApiLocation {
        ApiLocation {
            file: self.file.clone(),
            line: self.line_of(pointer),
            pointer: pointer.to_string(),
            api: self.title.clone(),
            path: operation.map(|op| op.path.clone()),
            method: operation.map(|op| op.method.to_ascii_uppercase()),
            operation_id: operation.and_then(|op| op.operation_id.clone()),
        }
    }

    /// Returns the line of the node at `pointer`, or of its nearest
    /// ancestor with a known line; 0 for JSON documents.
    fn line_of(&self, pointer: &str) -> usize {
        let mut current = pointer;
        loop {
            if let Some(line) = self.lines.get(current) {
                return *line;
            }
            match current.rfind('/') {
                Some(cut) => current = &current[..cut],
                None => return 0,
            }
        }
    }

    /// Follows internal `$ref`s until a value without one; returns the
    /// value and its pointer. An external or broken `$ref` gives `None`.
    pub fn resolve<'a>(&'a self, value: &'a Value, pointer: &str) -> Option<(&'a Value, String)> {
        let mut current = (value, pointer.to_string());
        for _ in 0..MAX_DEPTH {
            let Some(reference) = current.0.get("$ref").and_then(Value::as_str) else {
                return Some(current);
            };
            let target = reference.strip_prefix('#')?;
            current = (self.root.pointer(target)?, target.to_string());
        }
        None
    }

    /// Visits every property of a schema, through `$ref`, `allOf`, `oneOf`,
    /// `anyOf`, array `items` and nested objects. The visitor gets the
    /// property name, its resolved schema and its pointer.
    pub fn walk_properties(
        &self,
        schema: &Value,
        pointer: &str,
        visit: &mut dyn FnMut(&str, &Value, &str),
    ) {
        let mut seen = HashSet::new();
        self.walk(schema, pointer, 0, &mut seen, visit);
    }

    fn walk(
        &self,
        schema: &Value,
        pointer: &str,
        depth: usize,
        seen: &mut HashSet<String>,
        visit: &mut dyn FnMut(&str, &Value, &str),
    ) {
        if depth > MAX_DEPTH {
            return;
        }
        let Some((schema, pointer)) = self.resolve(schema, pointer) else {
            return;
        };
        // A schema reached twice (a recursive type) is walked once.
        if !seen.insert(pointer.clone()) {
            return;
        }
        for key in ["allOf", "oneOf", "anyOf"] {
            if let Some(Value::Array(parts)) = schema.get(key) {
                for (i, part) in parts.iter().enumerate() {
                    self.walk(
                        part,
                        &format!("{pointer}/{key}/{i}"),
                        depth + 1,
                        seen,
                        visit,
                    );
                }
            }
        }
        if let Some(items) = schema.get("items") {
            self.walk(items, &format!("{pointer}/items"), depth + 1, seen, visit);
        }
        if let Some(Value::Object(properties)) = schema.get("properties") {
            for (name, property) in properties {
                let property_pointer = format!("{pointer}/properties/{}", escape(name));
                let resolved = self
                    .resolve(property, &property_pointer)
                    .map_or(property, |(value, _)| value);
                visit(name, resolved, &property_pointer);
                self.walk(property, &property_pointer, depth + 1, seen, visit);
            }
        }
    }

    fn read_operations(&mut self) -> Vec<Operation> {
        let Some(Value::Object(paths)) = self.root.get("paths") else {
            self.notes
                .push(format!("{}: the document has no paths", self.file));
            return Vec::new();
        };
        let mut operations = Vec::new();
        for (path, item) in paths {
            let item_pointer = format!("/paths/{}", escape(path));
            let Some((item, item_pointer)) = self.resolve(item, &item_pointer) else {
                continue;
            };
            let shared = item.get("parameters");
            for method in METHODS {
                let Some(operation) = item.get(*method) else {
                    continue;
                };
                let pointer = format!("{item_pointer}/{method}");
                operations.push(self.read_operation(path, method, operation, shared, pointer));
            }
        }
        operations
    }

    fn read_operation(
        &self,
        path: &str,
        method: &str,
        operation: &Value,
        shared: Option<&Value>,
        pointer: String,
    ) -> Operation {
        let own_security = operation.get("security");
        let security = own_security
            .or_else(|| self.root.get("security"))
            .map(read_security)
            .unwrap_or_default();
        let item_pointer = pointer.rsplit_once('/').map_or("", |(head, _)| head);
        let mut parameters = self.read_parameters(shared, &format!("{item_pointer}/parameters"));
        parameters.extend(self.read_parameters(
            operation.get("parameters"),
            &format!("{pointer}/parameters"),
        ));
        Operation {
            path: path.to_string(),
            method: method.to_string(),
            operation_id: operation
                .get("operationId")
                .and_then(Value::as_str)
                .map(str::to_string),
            summary: operation
                .get("summary")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            deprecated: operation.get("deprecated") == Some(&Value::Bool(true)),
            security,
            security_explicit: own_security.is_some(),
            parameters,
            request_schema: self.request_schema(operation, &pointer),
            response_schemas: self.response_schemas(operation, &pointer, is_success),
            error_schemas: self.response_schemas(operation, &pointer, is_error),
            pointer,
        }
    }

    fn read_parameters(&self, list: Option<&Value>, pointer: &str) -> Vec<Parameter> {
        let Some(Value::Array(items)) = list else {
            return Vec::new();
        };
        items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| {
                let (item, item_pointer) = self.resolve(item, &format!("{pointer}/{i}"))?;
                Some(Parameter {
                    name: item.get("name")?.as_str()?.to_string(),
                    location: item.get("in")?.as_str()?.to_string(),
                    schema: item.get("schema").cloned().unwrap_or(Value::Null),
                    pointer: item_pointer,
                })
            })
            .collect()
    }

    fn request_schema(&self, operation: &Value, pointer: &str) -> Option<(Value, String)> {
        let body_pointer = format!("{pointer}/requestBody");
        let (body, body_pointer) = self.resolve(operation.get("requestBody")?, &body_pointer)?;
        media_schema(body, &body_pointer)
    }

    /// Returns the schemas of the responses whose status `wanted` selects.
    fn response_schemas(
        &self,
        operation: &Value,
        pointer: &str,
        wanted: fn(&str) -> bool,
    ) -> Vec<(Value, String)> {
        let Some(Value::Object(responses)) = operation.get("responses") else {
            return Vec::new();
        };
        responses
            .iter()
            .filter(|(status, _)| wanted(status))
            .filter_map(|(status, response)| {
                let response_pointer = format!("{pointer}/responses/{}", escape(status));
                let (response, response_pointer) = self.resolve(response, &response_pointer)?;
                media_schema(response, &response_pointer)
            })
            .collect()
    }

    /// Records every `$ref` that points outside the document.
    fn note_external_refs(&mut self) {
        let mut external = Vec::new();
        collect_external_refs(&self.root, "", &mut external);
        for (pointer, reference) in external {
            self.notes.push(format!(
                "{}: external $ref {reference:?} at {pointer} was not followed; the schema it names was not reviewed",
                self.file
            ));
        }
    }
}

/// Whether a response status is a success; `default` counts as one too,
/// because it may describe the normal answer.
fn is_success(status: &str) -> bool {
    status.starts_with('2') || status == "default"
}

/// Whether a response status describes an error: 4XX, 5XX or `default`.
fn is_error(status: &str) -> bool {
    status.starts_with('4') || status.starts_with('5') || status == "default"
}

/// Picks the JSON media type's schema, else the first media type's.
fn media_schema(holder: &Value, pointer: &str) -> Option<(Value, String)> {
    let Some(Value::Object(content)) = holder.get("content") else {
        return None;
    };
    let (media, body) = content
        .iter()
        .find(|(media, _)| media.contains("json"))
        .or_else(|| content.iter().next())?;
    let schema = body.get("schema")?.clone();
    Some((
        schema,
        format!("{pointer}/content/{}/schema", escape(media)),
    ))
}

fn read_security(value: &Value) -> Vec<Vec<(String, Vec<String>)>> {
    let Value::Array(requirements) = value else {
        return Vec::new();
    };
    requirements
        .iter()
        .filter_map(Value::as_object)
        .map(|requirement| {
            requirement
                .iter()
                .map(|(scheme, scopes)| {
                    let scopes = scopes
                        .as_array()
                        .map(|list| {
                            list.iter()
                                .filter_map(Value::as_str)
                                .map(str::to_string)
                                .collect()
                        })
                        .unwrap_or_default();
                    (scheme.clone(), scopes)
                })
                .collect()
        })
        .collect()
}

fn collect_external_refs(value: &Value, pointer: &str, out: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) => {
            if let Some(reference) = map.get("$ref").and_then(Value::as_str) {
                if !reference.starts_with('#') {
                    out.push((pointer.to_string(), reference.to_string()));
                }
            }
            for (key, child) in map {
                collect_external_refs(child, &format!("{pointer}/{}", escape(key)), out);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                collect_external_refs(child, &format!("{pointer}/{i}"), out);
            }
        }
        _ => {}
    }
}

/// Escapes a key for a JSON Pointer (RFC 6901).
pub fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

fn check_version(root: &Value, file: &str) -> Result<String, LoadError> {
    if root.get("swagger").is_some() {
        return Err(LoadError(format!(
            "{file}: Swagger 2.0 documents are not supported; convert the document to OpenAPI 3.0 or 3.1 first"
        )));
    }
    let version = match root.get("openapi") {
        Some(Value::String(version)) => version.clone(),
        Some(other) => other.to_string(),
        None => {
            return Err(LoadError(format!(
                "{file}: not an OpenAPI document: the openapi field is missing; expected openapi: 3.0.x or 3.1.x"
            )))
        }
    };
    if !(version.starts_with("3.0") || version.starts_with("3.1")) {
        return Err(LoadError(format!(
            "{file}: unsupported OpenAPI version {version:?}; expected 3.0.x or 3.1.x"
        )));
    }
    Ok(version)
}

/// Parses JSON or YAML into a value and the line of each node.
fn parse_tree(text: &str, file: &str) -> Result<(Value, HashMap<String, usize>), LoadError> {
    if text.trim_start().starts_with('{') {
        let value = serde_json::from_str(text)
            .map_err(|error| LoadError(format!("{file}: invalid JSON: {error}")))?;
        return Ok((value, HashMap::new()));
    }
    let node = yaml::parse(text).map_err(|error| {
        LoadError(format!(
            "{file}:{}:{}: invalid YAML: {}",
            error.line, error.column, error.message
        ))
    })?;
    let mut lines = HashMap::new();
    let value = to_json(&node, String::new(), &mut lines);
    if !value.is_object() {
        return Err(LoadError(format!(
            "{file}: expected a mapping at the top of the document"
        )));
    }
    Ok((value, lines))
}

/// Converts a YAML node to JSON with the YAML 1.2 core schema for plain
/// scalars, recording the line of each node by pointer.
fn to_json(node: &Node, pointer: String, lines: &mut HashMap<String, usize>) -> Value {
    lines.insert(pointer.clone(), node.line);
    match &node.value {
        YamlValue::Scalar { text, quoted: true } => Value::String(text.clone()),
        YamlValue::Scalar { text, .. } => plain_scalar(text),
        YamlValue::Sequence(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, item)| to_json(item, format!("{pointer}/{i}"), lines))
                .collect(),
        ),
        YamlValue::Mapping(entries) => {
            let mut map = Map::new();
            for (key, value) in entries {
                let name = match &key.value {
                    YamlValue::Scalar { text, .. } => text.clone(),
                    _ => continue,
                };
                let child_pointer = format!("{pointer}/{}", escape(&name));
                let child = to_json(value, child_pointer.clone(), lines);
                // A reader looks for the key, which may sit on the line
                // above a block value.
                lines.insert(child_pointer, key.line);
                map.insert(name, child);
            }
            Value::Object(map)
        }
    }
}

fn plain_scalar(text: &str) -> Value {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        _ => {}
    }
    if let Ok(integer) = text.parse::<i64>() {
        return Value::from(integer);
    }
    match text.parse::<f64>() {
        Ok(float) if float.is_finite() && text.contains(['.', 'e', 'E']) => Value::from(float),
        _ => Value::String(text.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "openapi: 3.1.0\ninfo: { title: Cards, version: '1' }\nsecurity: [{ oauth: [cards:read] }]\npaths:\n  /cards/{cardId}:\n    parameters:\n      - $ref: '#/components/parameters/CardId'\n    get:\n      operationId: getCard\n      responses:\n        '200':\n          content:\n            application/json:\n              schema: { $ref: '#/components/schemas/Card' }\n  /health:\n    get:\n      security: []\n      responses: { '204': { description: ok } }\ncomponents:\n  parameters:\n    CardId: { name: cardId, in: path, required: true, schema: { type: string } }\n  schemas:\n    Card:\n      type: object\n      properties:\n        pan: { type: string }\n        owner: { $ref: '#/components/schemas/Owner' }\n    Owner:\n      properties:\n        email: { type: string }\n        card: { $ref: '#/components/schemas/Card' }\n";

    #[test]
    fn operations_resolve_refs_and_security() {
        let doc = ApiDoc::parse(DOC, "cards.yaml").unwrap();
        assert_eq!(doc.title, "Cards");
        assert_eq!(doc.operations.len(), 2);
        let get_card = &doc.operations[0];
        assert_eq!(get_card.operation_id.as_deref(), Some("getCard"));
        assert_eq!(get_card.parameters[0].name, "cardId");
        assert_eq!(
            get_card.security[0][0],
            ("oauth".into(), vec!["cards:read".into()])
        );
        let health = &doc.operations[1];
        assert!(health.security.is_empty());
        assert!(health.security_explicit);
    }

    #[test]
    fn recursive_schema_walk_terminates() {
        let doc = ApiDoc::parse(DOC, "cards.yaml").unwrap();
        let (schema, pointer) = &doc.operations[0].response_schemas[0];
        let mut names = Vec::new();
        doc.walk_properties(schema, pointer, &mut |name, _, _| {
            names.push(name.to_string())
        });
        assert!(names.contains(&"pan".to_string()));
        assert!(names.contains(&"email".to_string()));
    }

    #[test]
    fn yaml_lines_kept() {
        let doc = ApiDoc::parse(DOC, "cards.yaml").unwrap();
        let location = doc.at(&doc.operations[0].pointer, Some(&doc.operations[0]));
        assert_eq!(location.line, 8);
        assert_eq!(location.method.as_deref(), Some("GET"));
    }

    #[test]
    fn unsupported_documents_rejected() {
        let cases = [
            (
                "Swagger 2.0",
                "swagger: '2.0'\npaths: {}\n",
                "Swagger 2.0 documents are not supported",
            ),
            ("no version", "info: {}\n", "the openapi field is missing"),
            (
                "version 4",
                "openapi: 4.0.0\n",
                "unsupported OpenAPI version \"4.0.0\"",
            ),
            ("invalid YAML", "openapi: [3.0\n", "invalid YAML"),
            ("invalid JSON", "{\"openapi\": ", "invalid JSON"),
            ("top-level list", "- openapi\n", "expected a mapping"),
        ];
        for (description, text, expected) in cases {
            let error = ApiDoc::parse(text, "d.yaml").err().expect(description);
            assert!(error.0.contains(expected), "{description}: {}", error.0);
        }
    }

    #[test]
    fn external_ref_noted_not_followed() {
        let text = "openapi: 3.0.3\ninfo: { title: T }\npaths:\n  /a:\n    get:\n      responses:\n        '200':\n          content:\n            application/json:\n              schema: { $ref: 'common.yaml#/Card' }\n";
        let doc = ApiDoc::parse(text, "t.yaml").unwrap();
        assert_eq!(doc.notes.len(), 1);
        assert!(doc.notes[0].contains("external $ref \"common.yaml#/Card\""));
        let (schema, pointer) = &doc.operations[0].response_schemas[0];
        let mut count = 0;
        doc.walk_properties(schema, pointer, &mut |_, _, _| count += 1);
        assert_eq!(count, 0);
    }

    #[test]
    fn json_document_read() {
        let text = r#"{"openapi": "3.0.0", "info": {"title": "J"}, "paths": {"/x": {"post": {"responses": {}}}}}"#;
        let doc = ApiDoc::parse(text, "j.json").unwrap();
        assert_eq!(doc.operations[0].method, "post");
        assert_eq!(doc.at("/paths/~1x/post", None).line, 0);
    }
}

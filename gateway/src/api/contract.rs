//! The parts of the OpenAPI document that no single handler's annotation
//! states, added in one pass over the finished document.
//!
//! Why a pass and not more attributes: some answers come from layers every
//! route shares (the rate limit, authentication, the request timeout, the
//! JSON extractor and the body limit), so each operation can give them;
//! writing them into ~50 annotations would let one drift. And some rules
//! are made of constants (the scopes, the internal collections) or of
//! other schemas (an event's `data` is a work-order body), which utoipa's
//! attributes cannot compute. The document is the contract a generated
//! client is built from, so it must state every answer and every rule the
//! server enforces; `gateway/scripts/schemathesis.sh` checks that it does.

use serde_json::{json, Map, Value};
use utoipa::openapi::extensions::Extensions;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::Operation;
use utoipa::openapi::schema::{Object, Schema, SchemaType, Type};
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, RefOr, Response, ResponseBuilder};

/// The media type of every error answer.
const PROBLEM: &str = "application/problem+json";

/// Complete `openapi`: shared answers on every operation, no `null` in
/// parameter schemas, and the schemas built from constants.
pub(super) fn complete(openapi: &mut OpenApi) {
    for (path, item) in openapi.paths.paths.iter_mut() {
        let methods = [
            ("get", &mut item.get),
            ("put", &mut item.put),
            ("post", &mut item.post),
            ("delete", &mut item.delete),
            ("patch", &mut item.patch),
        ];
        for (method, operation) in methods {
            if let Some(operation) = operation {
                parameters_not_null(operation);
                shared_answers(path, method, operation);
                if path == "/api/v1/entities/{erp}/{table}/reload" {
                    table_parameter(operation);
                }
                if path == "/api/v1/events" {
                    envelope_body(operation);
                }
            }
        }
    }
    if let Some(components) = openapi.components.as_mut() {
        let mut schemas: Map<String, Value> = components
            .schemas
            .iter()
            .map(|(name, schema)| (name.clone(), to_json(schema)))
            .collect();
        let before = schemas.clone();
        rules_from_constants(&mut schemas);
        for (name, schema) in schemas {
            if before.get(&name) != Some(&schema) {
                components.schemas.insert(name, RefOr::T(raw(schema)));
            }
        }
    }
}

fn to_json(value: &impl serde::Serialize) -> Value {
    serde_json::to_value(value).expect("OpenAPI parts serialize")
}

/// A schema written as JSON, as it is: utoipa's model has no room for
/// some keywords this document needs (`const`, `oneOf` beside
/// `properties`, `anyOf`), so the members ride in the object's
/// extensions, which serialize in place, and the type is left to them.
fn raw(value: Value) -> Schema {
    let mut object = Object::with_type(SchemaType::AnyValue);
    let mut extensions = Extensions::default();
    if let Value::Object(members) = value {
        extensions.extend(members);
    }
    object.extensions = Some(extensions);
    Schema::Object(object)
}

/// Edit a schema as JSON; it is replaced only when the edit changed it.
fn edit(schema: &mut RefOr<Schema>, change: impl FnOnce(&mut Value)) {
    let mut value = to_json(&*schema);
    let before = value.clone();
    change(&mut value);
    if value != before {
        *schema = RefOr::T(raw(value));
    }
}

/// Headers, paths and query strings carry text, never JSON `null`:
/// utoipa marks an optional header `string | null`, and a client that
/// sends the text `null` gets a 400. Only the bare type stays.
fn parameters_not_null(operation: &mut Operation) {
    for parameter in operation.parameters.iter_mut().flatten() {
        if let Some(schema) = parameter.schema.as_mut() {
            edit(schema, not_null);
        }
    }
}

fn not_null(schema: &mut Value) {
    let Some(object) = schema.as_object_mut() else {
        return;
    };
    if let Some(Value::Array(types)) = object.get_mut("type") {
        types.retain(|kind| kind != "null");
        if types.len() == 1 {
            let only = types.remove(0);
            object.insert("type".into(), only);
        }
    }
}

fn problem(description: &str) -> Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            PROBLEM,
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build(),
        )
        .build()
}

/// Add an answer unless the operation documents that status already.
fn answer(operation: &mut Operation, status: &str, response: Response) {
    operation
        .responses
        .responses
        .entry(status.to_string())
        .or_insert(RefOr::T(response));
}

/// The answers every operation of this shape can give, from the layers
/// and extractors all routes share (`lib.rs`, `auth.rs`, `error.rs`).
fn shared_answers(path: &str, method: &str, operation: &mut Operation) {
    let secured = operation.security.as_ref().is_some_and(|alternatives| {
        !alternatives.is_empty()
            && alternatives.iter().all(|alternative| {
                to_json(alternative)
                    .as_object()
                    .is_some_and(|o| !o.is_empty())
            })
    });
    let parameters = operation
        .parameters
        .as_ref()
        .is_some_and(|parameters| !parameters.is_empty());
    let body = operation.request_body.is_some();
    let json_schema = operation
        .request_body
        .as_ref()
        .and_then(|body| body.content.get("application/json"))
        .and_then(|content| content.schema.as_ref())
        .map(to_json);
    // A body schema that admits any JSON (a record's value) is never 422.
    let constrained_body = json_schema
        .as_ref()
        .is_some_and(|schema| schema.as_object().is_some_and(|o| !o.is_empty()));
    let writes = matches!(method, "post" | "put" | "patch" | "delete") && path != "/oauth/token";

    if secured {
        answer(
            operation,
            "401",
            problem("No token, or a bad, expired or revoked one (`WWW-Authenticate: Bearer`)"),
        );
    }
    if parameters || json_schema.is_some() {
        answer(
            operation,
            "400",
            problem("A malformed path segment, query parameter, header or JSON body"),
        );
    }
    if body {
        answer(
            operation,
            "413",
            problem("The body is over `[gateway] body_bytes_max` (256 KiB by default)"),
        );
        answer(
            operation,
            "415",
            problem("The body is not of the declared media type"),
        );
    }
    if constrained_body {
        answer(
            operation,
            "422",
            problem("The body is JSON but does not fit the schema; `detail` names the member"),
        );
    }
    let mut limited = problem("Over the client's request rate; retry after `Retry-After` seconds");
    limited.headers.insert(
        "Retry-After".into(),
        HeaderBuilder::new()
            .schema(Object::with_type(Type::Integer))
            .description(Some("Seconds to wait"))
            .build(),
    );
    answer(operation, "429", limited);
    if writes {
        answer(
            operation,
            "503",
            problem("The store is not taking writes now (closed or failed); retry later"),
        );
    }
    answer(
        operation,
        "504",
        problem("The request took longer than `[gateway] request_timeout_ms`"),
    );
}

/// `POST /api/v1/entities/{erp}/{table}/reload`'s `table`: a data
/// collection name in any letter case (a rule made of constants).
fn table_parameter(operation: &mut Operation) {
    for parameter in operation.parameters.iter_mut().flatten() {
        if parameter.name == "table" {
            if let Some(schema) = parameter.schema.as_mut() {
                edit(schema, |schema| {
                    schema["pattern"] = json!(outside_collection_pattern(&[]));
                });
            }
        }
    }
}

/// `POST /api/v1/events` takes the envelope (`EventEnvelope`).
fn envelope_body(operation: &mut Operation) {
    if let Some(content) = operation
        .request_body
        .as_mut()
        .and_then(|body| body.content.get_mut("application/json"))
    {
        content.schema = Some(RefOr::Ref(Ref::from_schema_name("EventEnvelope")));
    }
}

/// `[Xx]` for each letter: a case-insensitive spelling of `name` for
/// patterns (JSON Schema patterns have no flags).
fn any_case(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphabetic() {
                format!("[{}{}]", c.to_ascii_uppercase(), c.to_ascii_lowercase())
            } else {
                regex_escape(c)
            }
        })
        .collect()
}

fn regex_escape(c: char) -> String {
    if "\\^$.|?*+()[]{}-/".contains(c) {
        format!("\\{c}")
    } else {
        c.to_string()
    }
}

/// A name an outside system gives a data collection (an ERP table, an
/// event's `schemaName`): lower-cased it must be a collection name, and
/// neither reserved (`work_orders`) nor internal (`users`, ...), nor one of
/// `also` (names that mean something else there).
pub(super) fn outside_collection_pattern(also: &[&str]) -> String {
    let refused: Vec<String> = std::iter::once("work_orders")
        .chain(
            fieldsync_schemas::collection::INTERNAL_COLLECTIONS
                .iter()
                .copied(),
        )
        .chain(also.iter().copied())
        .map(any_case)
        .collect();
    format!("^(?!(?:{})$)[A-Za-z0-9_-]{{1,64}}$", refused.join("|"))
}

/// A record key: 1 to 512 bytes (the schema counts characters) without
/// control characters.
pub(super) fn record_key_schema() -> Value {
    json!({
        "type": "string",
        "minLength": 1,
        "maxLength": 512,
        "pattern": "^[^\\u0000-\\u001F\\u007F-\\u009F]*$",
    })
}

/// Rules utoipa's attributes cannot state: those made of constants (the
/// roles and scopes a user may hold, the scopes a token may ask for, the
/// collection names outside systems may use), a few the batch rules
/// demand, and the event envelope, made of the other schemas.
fn rules_from_constants(schemas: &mut Map<String, Value>) {
    use fieldsync_schemas::{Role, Scope};
    let scopes: Vec<&str> = Scope::ALL.iter().map(|scope| scope.as_str()).collect();
    let roles: Vec<&str> = Role::ALL.iter().map(|role| role.as_str()).collect();
    if let Some(user) = schemas.get_mut("NewUser") {
        user["properties"]["role"] = json!({
            "type": "string",
            "enum": roles,
            "description": "`operator`, `technician` or `integration`.",
        });
        user["properties"]["scopes"]["items"] = json!({"type": "string", "enum": scopes});
        // Only integration clients hold scopes.
        user["oneOf"] = json!([
            {"properties": {"role": {"const": "integration"}}},
            {"properties": {
                "role": {"enum": ["operator", "technician"]},
                "scopes": {"maxItems": 0},
            }},
        ]);
    }
    // A patch names at least one member (see `PatchWorkOrder`).
    if let Some(patch) = schemas
        .get_mut("PatchWorkOrder")
        .and_then(Value::as_object_mut)
    {
        patch.remove("maxProperties");
        patch.insert("minProperties".into(), json!(1));
    }
    if let Some(form) = schemas.get_mut("TokenRequest") {
        let one = format!("(?:{})", scopes.join("|"));
        form["properties"]["scope"]["pattern"] =
            json!(format!("^[ \\t]*(?:{one}(?:[ \\t]+{one})*)?[ \\t]*$"));
    }
    // ERP tables name data collections (any letter case).
    let table = json!(outside_collection_pattern(&[]));
    if let Some(message) = schemas.get_mut("BatchMessage") {
        message["properties"]["tableName"]["pattern"] = table.clone();
        // The batch rules' own demands: rows are keyed by a primary key.
        add_required(message, "schema");
    }
    if let Some(schema) = schemas.get_mut("BatchSchema") {
        add_required(schema, "primaryKey");
        schema["properties"]["primaryKey"] = json!({"$ref": "#/components/schemas/PrimaryKey"});
    }
    if let Some(key) = schemas.get_mut("PrimaryKey") {
        key["properties"]["columns"]["minItems"] = json!(1);
    }
    if let Some(query) = schemas.get_mut("EntityQuery") {
        query["properties"]["table"]["pattern"] = table;
    }
    if let Some(hook) = schemas.get_mut("NewWebhook") {
        hook["properties"]["collections"]["items"]["pattern"] = json!("^[a-z0-9_-]{1,64}$");
    }
    let envelope = super::events::envelope_schema(schemas);
    schemas.insert("EventEnvelope".into(), envelope);
}

fn add_required(schema: &mut Value, member: &str) {
    let required = schema
        .as_object_mut()
        .expect("a schema object")
        .entry("required")
        .or_insert_with(|| json!([]));
    if let Some(list) = required.as_array_mut() {
        if !list.iter().any(|name| name == member) {
            list.push(json!(member));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_refused_in_any_case() {
        let pattern = outside_collection_pattern(&["work_order"]);
        assert!(pattern.contains("[Uu][Ss][Ee][Rr][Ss]"), "{pattern}");
        assert!(
            pattern.contains("[Ww][Oo][Rr][Kk]_[Oo][Rr][Dd][Ee][Rr][Ss]"),
            "{pattern}"
        );
        assert_eq!(any_case("a-1"), "[Aa]\\-1");
    }

    #[test]
    fn optional_headers_are_not_nullable() {
        let mut schema = json!({"type": ["string", "null"], "pattern": "x"});
        not_null(&mut schema);
        assert_eq!(schema, json!({"type": "string", "pattern": "x"}));
    }

    #[test]
    fn raw_schemas_serialize_as_written() {
        let written = json!({"oneOf": [{"const": 1}], "properties": {"a": {}}});
        assert_eq!(to_json(&raw(written.clone())), written);
    }

    #[test]
    fn every_operation_lists_the_shared_answers() {
        let document = crate::openapi();
        let text = document.to_json().expect("the document serializes");
        let document: Value = serde_json::from_str(&text).expect("JSON");
        let paths = document["paths"].as_object().expect("paths");
        for (path, item) in paths {
            for (method, operation) in item.as_object().expect("a path item") {
                let responses = operation["responses"].as_object().expect("responses");
                for status in ["429", "504"] {
                    assert!(responses.contains_key(status), "{method} {path}: {status}");
                }
                if operation.get("requestBody").is_some() {
                    assert!(responses.contains_key("413"), "{method} {path}: 413");
                }
            }
        }
        let user = &document["components"]["schemas"]["NewUser"];
        assert_eq!(
            user["properties"]["role"]["enum"][2], "integration",
            "{user}"
        );
        assert!(
            document["components"]["schemas"]["EventEnvelope"]["properties"]["content"]["oneOf"]
                .is_array()
        );
    }
}

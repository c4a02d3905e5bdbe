//! The wire format: top-level messages and the expression encoding of values.
//!
//! Decoding turns JSON into an [`Expr`], resolving references to exports and imports through a
//! [`Resolver`] at the moment the message arrives (the tables change with every message).
//! Encoding turns a value back into JSON, exporting stubs through an [`Exporter`]. Anything
//! malformed is a [`ProtocolError`], which ends the session.

use crate::eval::{Base, Expr};
use crate::stub::Stub;
use crate::value::{RpcError, RpcValue};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::{Map, Value, json};
use std::cell::RefCell;

/// Longest bigint, in digits (the reference implementation's limit).
pub const MAX_BIGINT_DIGITS: usize = 16_384;
/// Deepest nesting of a path.
pub const MAX_PATH: usize = 64;

/// A message the peer must not send; the session is aborted with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad RPC message: {0}")]
pub struct ProtocolError(pub String);

pub(crate) fn bad(message: impl Into<String>) -> ProtocolError {
    ProtocolError(message.into())
}

/// A top-level message, as received.
#[derive(Debug)]
pub enum Message {
    Push(Value),
    /// A push that is pulled at once and released after it settles.
    Stream(Value),
    Pull(i64),
    Resolve(i64, Value),
    Reject(i64, Value),
    Release(i64, u32),
    Abort(Value),
}

/// Parses one message (one line of a batch, one WebSocket frame).
pub fn parse_message(text: &str) -> Result<Message, ProtocolError> {
    if let Some(m) = parse_small(text) {
        return Ok(m);
    }
    let v: Value = serde_json::from_str(text).map_err(|e| bad(format!("invalid JSON: {e}")))?;
    let Value::Array(mut parts) = v else {
        return Err(bad("a message is a JSON array"));
    };
    let tag = match parts.first_mut() {
        Some(Value::String(t)) => std::mem::take(t),
        _ => return Err(bad("a message starts with its type")),
    };
    let id = |parts: &[Value]| -> Result<i64, ProtocolError> {
        parts
            .get(1)
            .and_then(Value::as_i64)
            .ok_or_else(|| bad(format!("`{tag}` needs an integer id")))
    };
    let want = |n: usize| -> Result<(), ProtocolError> {
        if parts.len() == n {
            Ok(())
        } else {
            Err(bad(format!("`{tag}` has {} parts, not {n}", parts.len())))
        }
    };
    Ok(match tag.as_str() {
        "push" => {
            want(2)?;
            Message::Push(parts.swap_remove(1))
        }
        "stream" => {
            want(2)?;
            Message::Stream(parts.swap_remove(1))
        }
        "pull" => {
            want(2)?;
            Message::Pull(id(&parts)?)
        }
        "resolve" | "reject" => {
            want(3)?;
            let id = id(&parts)?;
            let value = parts.swap_remove(2);
            if tag == "resolve" {
                Message::Resolve(id, value)
            } else {
                Message::Reject(id, value)
            }
        }
        "release" => {
            want(3)?;
            let id = id(&parts)?;
            let count = parts[2]
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .filter(|n| *n > 0)
                .ok_or_else(|| bad("`release` needs a positive count"))?;
            Message::Release(id, count)
        }
        "abort" => {
            want(2)?;
            Message::Abort(parts.swap_remove(1))
        }
        "pipe" => return Err(bad("pipes (streams) are not supported by this server")),
        other => return Err(bad(format!("unknown message type `{other}`"))),
    })
}

/// What decoding needs from the session: its tables.
pub(crate) trait Resolver {
    /// The receiver's export `id`, named by `["import"|"pipeline", id, …]`.
    fn export(&mut self, id: i64) -> Result<Base, ProtocolError>;
    /// A stub for the peer's export `id` (`["export", id]`).
    fn import_stub(&mut self, id: i64) -> Result<Stub, ProtocolError>;
    /// The peer's promise `id` (`["promise", id]`), which it will settle unasked.
    fn import_promise(&mut self, id: i64) -> Result<Expr, ProtocolError>;
}

/// Resolves ids inside `remap` instructions: they name slots, not exports.
struct MapperScope<'a> {
    outer: &'a mut dyn Resolver,
}

impl Resolver for MapperScope<'_> {
    fn export(&mut self, id: i64) -> Result<Base, ProtocolError> {
        Ok(Base::Slot(id))
    }
    fn import_stub(&mut self, id: i64) -> Result<Stub, ProtocolError> {
        self.outer.import_stub(id)
    }
    fn import_promise(&mut self, _id: i64) -> Result<Expr, ProtocolError> {
        Err(bad("`promise` is not allowed in a map instruction"))
    }
}

/// Object keys the reference implementation drops, so they can never reach a prototype.
fn is_forbidden_key(k: &str) -> bool {
    matches!(
        k,
        "__proto__"
            | "constructor"
            | "toString"
            | "toLocaleString"
            | "valueOf"
            | "hasOwnProperty"
            | "isPrototypeOf"
            | "propertyIsEnumerable"
            | "__defineGetter__"
            | "__defineSetter__"
            | "__lookupGetter__"
            | "__lookupSetter__"
            | "toJSON"
    )
}

pub(crate) fn decode(v: Value, r: &mut dyn Resolver) -> Result<Expr, ProtocolError> {
    Ok(match v {
        Value::Null => Expr::Lit(RpcValue::Null),
        Value::Bool(b) => Expr::Lit(RpcValue::Bool(b)),
        Value::Number(n) => Expr::Lit(RpcValue::Number(n)),
        Value::String(s) => Expr::Lit(RpcValue::String(s)),
        Value::Object(map) => {
            let mut fields = Vec::with_capacity(map.len());
            for (k, v) in map {
                if !is_forbidden_key(&k) {
                    fields.push((k, decode(v, r)?));
                }
            }
            literal_or(Expr::Object(fields))
        }
        Value::Array(parts) => decode_array(parts, r)?,
    })
}

/// Folds a composite whose parts are all literal into one literal.
fn literal_or(e: Expr) -> Expr {
    match e {
        Expr::Object(fields) if fields.iter().all(|(_, e)| matches!(e, Expr::Lit(_))) => {
            Expr::Lit(RpcValue::Object(
                fields
                    .into_iter()
                    .map(|(k, e)| (k, e.into_literal()))
                    .collect(),
            ))
        }
        Expr::Array(items) if items.iter().all(|e| matches!(e, Expr::Lit(_))) => Expr::Lit(
            RpcValue::Array(items.into_iter().map(Expr::into_literal).collect()),
        ),
        other => other,
    }
}

fn decode_array(mut parts: Vec<Value>, r: &mut dyn Resolver) -> Result<Expr, ProtocolError> {
    if parts.len() == 1 && parts[0].is_array() {
        let Some(Value::Array(items)) = parts.pop() else {
            return Err(bad("unreachable"));
        };
        let items = items
            .into_iter()
            .map(|v| decode(v, r))
            .collect::<Result<_, _>>()?;
        return Ok(literal_or(Expr::Array(items)));
    }
    // The tag is moved out, not copied: the first part is not looked at again.
    let tag = match parts.first_mut() {
        Some(Value::String(t)) => std::mem::take(t),
        _ => {
            return Err(bad(
                "unknown special value (an array must be escaped as [[…]])",
            ));
        }
    };
    let n = parts.len();
    let arity = |lo: usize, hi: usize| -> Result<(), ProtocolError> {
        if (lo..=hi).contains(&n) {
            Ok(())
        } else {
            Err(bad(format!("`{tag}` has {n} parts")))
        }
    };
    let int = |v: &Value, what: &str| -> Result<i64, ProtocolError> {
        v.as_i64()
            .ok_or_else(|| bad(format!("`{tag}`: {what} must be an integer")))
    };
    Ok(match tag.as_str() {
        "undefined" => {
            arity(1, 1)?;
            Expr::Lit(RpcValue::Undefined)
        }
        "inf" => Expr::Lit(RpcValue::Infinity),
        "-inf" => Expr::Lit(RpcValue::NegInfinity),
        "nan" => Expr::Lit(RpcValue::NaN),
        "bigint" => {
            arity(2, 2)?;
            let digits = parts[1]
                .as_str()
                .ok_or_else(|| bad("`bigint` holds a string"))?;
            let body = digits.strip_prefix('-').unwrap_or(digits);
            if body.is_empty() || !body.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad("`bigint` holds decimal digits"));
            }
            if body.len() > MAX_BIGINT_DIGITS {
                return Err(bad(format!(
                    "a bigint has at most {MAX_BIGINT_DIGITS} digits"
                )));
            }
            Expr::Lit(RpcValue::BigInt(digits.to_string()))
        }
        "date" => {
            arity(2, 2)?;
            match &parts[1] {
                Value::Null => Expr::Lit(RpcValue::Date(None)),
                Value::Number(n) => Expr::Lit(RpcValue::Date(n.as_f64())),
                _ => return Err(bad("`date` holds epoch milliseconds or null")),
            }
        }
        "bytes" => {
            arity(2, 3)?;
            let text = parts[1]
                .as_str()
                .ok_or_else(|| bad("`bytes` holds base64"))?;
            let bytes = base64_decode(text).ok_or_else(|| bad("`bytes` holds invalid base64"))?;
            let kind = match parts.get(2) {
                None => None,
                Some(Value::String(k)) => Some(k.clone()),
                Some(_) => return Err(bad("`bytes` type must be a string")),
            };
            Expr::Lit(RpcValue::Bytes(bytes, kind))
        }
        "error" => {
            arity(3, 5)?;
            let (Some(name), Some(message)) = (parts[1].as_str(), parts[2].as_str()) else {
                return Err(bad("`error` holds a name and a message"));
            };
            let props = match parts.get(4) {
                None | Some(Value::Null) => None,
                Some(Value::Object(m)) => Some(m.clone()),
                Some(_) => return Err(bad("`error` properties must be an object")),
            };
            Expr::Lit(RpcValue::Error(RpcError {
                name: name.to_string(),
                message: message.to_string(),
                props,
            }))
        }
        "url" => {
            arity(2, 2)?;
            let href = parts[1]
                .as_str()
                .ok_or_else(|| bad("`url` holds a string"))?;
            Expr::Lit(RpcValue::Url(href.to_string()))
        }
        "import" | "pipeline" => {
            arity(2, 4)?;
            let id = int(&parts[1], "the id")?;
            let path = match parts.get_mut(2).map(Value::take) {
                None | Some(Value::Null) => Vec::new(),
                Some(p) => decode_path(p)?,
            };
            let args = match parts.get_mut(3).map(Value::take) {
                None | Some(Value::Null) => None,
                Some(Value::Array(args)) => Some(
                    args.into_iter()
                        .map(|a| decode(a, r))
                        .collect::<Result<Vec<_>, _>>()?,
                ),
                Some(_) => return Err(bad(format!("`{tag}` arguments must be a list"))),
            };
            Expr::Ref {
                base: r.export(id)?,
                path,
                args,
            }
        }
        "export" => {
            arity(2, 2)?;
            Expr::Lit(RpcValue::Stub(r.import_stub(int(&parts[1], "the id")?)?))
        }
        "promise" => {
            arity(2, 2)?;
            r.import_promise(int(&parts[1], "the id")?)?
        }
        "remap" => {
            arity(5, 5)?;
            let base = r.export(int(&parts[1], "the id")?)?;
            let path = decode_path(parts[2].take())?;
            let Value::Array(captures) = parts[3].take() else {
                return Err(bad("`remap` captures must be a list"));
            };
            let mut bases = Vec::with_capacity(captures.len());
            for c in captures {
                bases.push(decode_capture(c, r)?);
            }
            let Value::Array(instructions) = parts[4].take() else {
                return Err(bad("`remap` instructions must be a list"));
            };
            if instructions.is_empty() {
                return Err(bad("`remap` needs at least one instruction"));
            }
            let mut scope = MapperScope { outer: r };
            let instructions = instructions
                .into_iter()
                .map(|i| decode(i, &mut scope))
                .collect::<Result<Vec<_>, _>>()?;
            Expr::Remap {
                base,
                path,
                captures: bases,
                instructions: instructions.into(),
            }
        }
        "headers" | "request" | "response" | "blob" | "readable" | "writable" => {
            return Err(bad(format!(
                "`{tag}` values are not supported by this server"
            )));
        }
        other => return Err(bad(format!("unknown special value `{other}`"))),
    })
}

fn decode_capture(c: Value, r: &mut dyn Resolver) -> Result<Base, ProtocolError> {
    let Value::Array(parts) = &c else {
        return Err(bad("a `remap` capture is [\"import\"|\"export\", id]"));
    };
    let id = parts.get(1).and_then(Value::as_i64);
    match (parts.first().and_then(Value::as_str), id, parts.len()) {
        (Some("import"), Some(id), 2) => r.export(id),
        (Some("export"), Some(id), 2) => Ok(Base::Value(RpcValue::Stub(r.import_stub(id)?))),
        _ => Err(bad("a `remap` capture is [\"import\"|\"export\", id]")),
    }
}

fn decode_path(v: Value) -> Result<Vec<String>, ProtocolError> {
    let Value::Array(parts) = v else {
        return Err(bad("a path is a list of property names"));
    };
    if parts.len() > MAX_PATH {
        return Err(bad(format!("a path has at most {MAX_PATH} parts")));
    }
    parts
        .into_iter()
        .map(|p| match p {
            Value::String(s) => Ok(s),
            Value::Number(n) => Ok(n.to_string()),
            _ => Err(bad("a path holds strings and numbers")),
        })
        .collect()
}

/// How encoding exports a stub: it returns the wire form (`["export", -k]` for a new export,
/// `["import", id]` for the peer's own stub).
pub(crate) trait Exporter {
    fn export_stub(&mut self, stub: &Stub) -> Value;
}

/// `["pull",id]` and `["release",id,count]` exactly as clients write them, read without
/// building a JSON tree: most messages of a pipelined session are these. Anything else
/// (spacing, other forms, bad values) is left to the full parser and its errors.
fn parse_small(text: &str) -> Option<Message> {
    fn int(s: &str) -> Option<i64> {
        let digits = s.strip_prefix('-').unwrap_or(s);
        let plain = !digits.is_empty()
            && digits.len() <= 15
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !(digits.len() > 1 && digits.starts_with('0'));
        if !plain {
            return None;
        }
        s.parse().ok()
    }
    let body = text.strip_suffix(']')?;
    if let Some(id) = body.strip_prefix("[\"pull\",") {
        return Some(Message::Pull(int(id)?));
    }
    let (id, count) = body.strip_prefix("[\"release\",")?.split_once(',')?;
    let count = u32::try_from(int(count)?).ok().filter(|n| *n > 0)?;
    Some(Message::Release(int(id)?, count))
}

/// Encodes a value. Arrays are escaped; special values get their tags.
pub(crate) fn encode(v: &RpcValue, x: &mut dyn Exporter) -> Value {
    match v {
        RpcValue::Null => Value::Null,
        RpcValue::Bool(b) => Value::Bool(*b),
        RpcValue::Number(n) => Value::Number(n.clone()),
        RpcValue::String(s) => Value::String(s.clone()),
        RpcValue::Array(items) => json!([items.iter().map(|i| encode(i, x)).collect::<Vec<_>>()]),
        RpcValue::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(k, v)| (k.clone(), encode(v, x)))
                .collect::<Map<_, _>>(),
        ),
        RpcValue::Undefined => json!(["undefined"]),
        RpcValue::Infinity => json!(["inf"]),
        RpcValue::NegInfinity => json!(["-inf"]),
        RpcValue::NaN => json!(["nan"]),
        RpcValue::BigInt(d) => json!(["bigint", d]),
        RpcValue::Date(Some(ms)) if ms.fract() == 0.0 && ms.abs() < 9e15 => {
            json!(["date", *ms as i64])
        }
        RpcValue::Date(ms) => json!(["date", ms]),
        RpcValue::Bytes(b, None) => json!(["bytes", base64_encode(b)]),
        RpcValue::Bytes(b, Some(kind)) => json!(["bytes", base64_encode(b), kind]),
        RpcValue::Error(e) => encode_error(e),
        RpcValue::Url(href) => json!(["url", href]),
        RpcValue::Stub(s) => x.export_stub(s),
    }
}

/// `["resolve", id, value]` as text, written straight from the value: no JSON tree in
/// between, which is most of the cost of a large answer.
pub(crate) fn resolve_text(id: i64, v: &RpcValue, x: &mut dyn Exporter) -> String {
    let x = RefCell::new(x);
    serde_json::to_string(&("resolve", id, Wire { v, x: &x })).unwrap_or_else(|e| {
        json!(["reject", id, encode_error(&RpcError::error(e.to_string()))]).to_string()
    })
}

/// A value in its wire form, for serde: the same output as [`encode`].
struct Wire<'a, 'x> {
    v: &'a RpcValue,
    x: &'a RefCell<&'x mut dyn Exporter>,
}

impl Serialize for Wire<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let wire = |v| Wire { v, x: self.x };
        match self.v {
            RpcValue::Null => s.serialize_unit(),
            RpcValue::Bool(b) => s.serialize_bool(*b),
            RpcValue::Number(n) => n.serialize(s),
            RpcValue::String(t) => s.serialize_str(t),
            // An array is escaped by wrapping it in another.
            RpcValue::Array(items) => {
                let mut outer = s.serialize_seq(Some(1))?;
                outer.serialize_element(&Items(items, self.x))?;
                outer.end()
            }
            RpcValue::Object(fields) => {
                let mut m = s.serialize_map(Some(fields.len()))?;
                for (k, v) in fields {
                    m.serialize_entry(k, &wire(v))?;
                }
                m.end()
            }
            RpcValue::Stub(stub) => self.x.borrow_mut().export_stub(stub).serialize(s),
            other => encode(other, *self.x.borrow_mut()).serialize(s),
        }
    }
}

struct Items<'a, 'x>(&'a [RpcValue], &'a RefCell<&'x mut dyn Exporter>);

impl Serialize for Items<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for v in self.0 {
            seq.serialize_element(&Wire { v, x: self.1 })?;
        }
        seq.end()
    }
}

/// An error's wire form; errors never carry stubs.
pub(crate) fn encode_error(e: &RpcError) -> Value {
    match &e.props {
        None => json!(["error", e.name, e.message]),
        Some(props) => json!(["error", e.name, e.message, null, props]),
    }
}

/// Standard base64 without padding, as the reference client writes it.
pub(crate) fn base64_encode(b: &[u8]) -> String {
    STANDARD_NO_PAD.encode(b)
}

/// Standard base64, padded or not.
pub(crate) fn base64_decode(s: &str) -> Option<Vec<u8>> {
    STANDARD_NO_PAD
        .decode(s)
        .ok()
        .or_else(|| STANDARD.decode(s).ok())
}

/// Decodes an error value from a `reject` or `abort`; anything else becomes a plain `Error`
/// carrying the value's JSON text.
pub(crate) fn decode_error(v: &Value) -> RpcError {
    if let Value::Array(parts) = v
        && parts.first().and_then(Value::as_str) == Some("error")
        && let (Some(name), Some(message)) = (
            parts.get(1).and_then(Value::as_str),
            parts.get(2).and_then(Value::as_str),
        )
    {
        return RpcError {
            name: name.to_string(),
            message: message.to_string(),
            props: parts.get(4).and_then(Value::as_object).cloned(),
        };
    }
    RpcError::error(v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Numbers stubs as `["export", -k]`, like a session.
    struct Counting(i64);

    impl Exporter for Counting {
        fn export_stub(&mut self, _: &Stub) -> Value {
            self.0 -= 1;
            json!(["export", self.0])
        }
    }

    struct Nothing;

    #[crate::async_trait]
    impl crate::RpcTarget for Nothing {
        async fn call(&self, method: &str, _: Vec<RpcValue>) -> crate::RpcResult {
            Err(RpcError::not_a_function(method))
        }
    }

    #[test]
    fn small_messages_parse_as_the_full_parser_does() {
        for text in [
            r#"["pull",3]"#,
            r#"["pull",-1]"#,
            r#"["release",4,1]"#,
            r#"["release",-2,7]"#,
        ] {
            let fast = format!("{:?}", parse_small(text).expect(text));
            let full: Value = serde_json::from_str(text).unwrap();
            assert_eq!(
                fast,
                format!("{:?}", parse_message(&full.to_string()).unwrap())
            );
        }
        // Left to the full parser, which accepts or refuses them with its own errors.
        for text in [
            r#"["pull", 3]"#,
            r#"["pull",3.5]"#,
            r#"["pull","3"]"#,
            r#"["pull",]"#,
            r#"["pull",03]"#,
            r#"["pull",-]"#,
            r#"["pull",99999999999999999999]"#,
            r#"["release",4,0]"#,
            r#"["release",4,-1]"#,
            r#"["release",4]"#,
            r#"["release",4,1,2]"#,
            r#"["push",1]"#,
        ] {
            assert!(parse_small(text).is_none(), "{text}");
        }
        assert!(parse_message(r#"["release",4,0]"#).is_err());
        assert!(matches!(
            parse_message(r#"["pull", 3]"#),
            Ok(Message::Pull(3))
        ));
    }

    #[test]
    fn resolve_text_is_the_encoded_value() {
        let v = RpcValue::Object(vec![
            (
                "a".into(),
                RpcValue::Array(vec![RpcValue::from(json!(1)), RpcValue::NaN]),
            ),
            ("quote\"d".into(), RpcValue::str("line\nbreak")),
            (
                "nested".into(),
                RpcValue::Array(vec![RpcValue::Array(vec![])]),
            ),
            ("undefined".into(), RpcValue::Undefined),
            (
                "big".into(),
                RpcValue::BigInt("-12345678901234567890".into()),
            ),
            ("bytes".into(), RpcValue::Bytes(vec![1, 2, 3], None)),
            ("date".into(), RpcValue::Date(Some(1.5))),
            ("stub".into(), RpcValue::Stub(Stub::new(Nothing))),
            ("other".into(), RpcValue::Stub(Stub::new(Nothing))),
            ("err".into(), RpcValue::Error(RpcError::type_error("no"))),
        ]);
        let text = resolve_text(7, &v, &mut Counting(0));
        let parsed: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed, json!(["resolve", 7, encode(&v, &mut Counting(0))]));
    }
}

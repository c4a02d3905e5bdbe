//! Values that cross a Cap'n Web session: JSON plus the types JSON lacks (undefined, non-finite
//! numbers, bigints, dates, bytes, errors) and stubs, which are references to remote or local
//! targets.

use crate::stub::Stub;
use serde_json::{Map, Number, Value};

/// One value as the protocol sees it.
#[derive(Clone, Debug)]
pub enum RpcValue {
    Null,
    Bool(bool),
    Number(Number),
    String(String),
    Array(Vec<RpcValue>),
    Object(Vec<(String, RpcValue)>),
    Undefined,
    Infinity,
    NegInfinity,
    NaN,
    /// A bigint as its decimal digits (with an optional leading `-`).
    BigInt(String),
    /// A date as epoch milliseconds; `None` is an invalid date.
    Date(Option<f64>),
    /// Bytes, with the typed-array class they came from when it was not a plain `Uint8Array`.
    Bytes(Vec<u8>, Option<String>),
    Error(RpcError),
    Url(String),
    Stub(Stub),
}

impl RpcValue {
    /// A string value.
    pub fn str(s: impl Into<String>) -> Self {
        RpcValue::String(s.into())
    }

    /// A number; non-finite numbers become their special values.
    pub fn number(n: f64) -> Self {
        if n.is_nan() {
            RpcValue::NaN
        } else if n == f64::INFINITY {
            RpcValue::Infinity
        } else if n == f64::NEG_INFINITY {
            RpcValue::NegInfinity
        } else if n.fract() == 0.0 && n.abs() < 9_007_199_254_740_992.0 {
            RpcValue::Number(Number::from(n as i64))
        } else {
            Number::from_f64(n).map_or(RpcValue::NaN, RpcValue::Number)
        }
    }

    /// The value as an `f64`, if it is a number.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            RpcValue::Number(n) => n.as_f64(),
            RpcValue::Infinity => Some(f64::INFINITY),
            RpcValue::NegInfinity => Some(f64::NEG_INFINITY),
            RpcValue::NaN => Some(f64::NAN),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            RpcValue::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_stub(&self) -> Option<&Stub> {
        match self {
            RpcValue::Stub(s) => Some(s),
            _ => None,
        }
    }

    /// True for `null` and `undefined`.
    pub fn is_nullish(&self) -> bool {
        matches!(self, RpcValue::Null | RpcValue::Undefined)
    }

    /// A field of an object value.
    pub fn field(&self, key: &str) -> Option<&RpcValue> {
        match self {
            RpcValue::Object(fields) => fields.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The value as plain JSON, the way `JSON.stringify` would write it: `undefined` fields
    /// are left out (and are `null` in arrays), non-finite numbers are `null`, dates are epoch
    /// milliseconds, bytes are base64, bigints are numbers when they fit and strings when not.
    /// Stubs cannot be JSON, so they are an error.
    pub fn to_json(&self) -> Result<Value, RpcError> {
        Ok(match self {
            RpcValue::Null
            | RpcValue::Undefined
            | RpcValue::Infinity
            | RpcValue::NegInfinity
            | RpcValue::NaN => Value::Null,
            RpcValue::Bool(b) => Value::Bool(*b),
            RpcValue::Number(n) => Value::Number(n.clone()),
            RpcValue::String(s) | RpcValue::Url(s) => Value::String(s.clone()),
            RpcValue::Array(items) => Value::Array(
                items
                    .iter()
                    .map(RpcValue::to_json)
                    .collect::<Result<_, _>>()?,
            ),
            RpcValue::Object(fields) => {
                let mut map = Map::new();
                for (k, v) in fields {
                    if !matches!(v, RpcValue::Undefined) {
                        map.insert(k.clone(), v.to_json()?);
                    }
                }
                Value::Object(map)
            }
            RpcValue::BigInt(digits) => digits
                .parse::<i64>()
                .map(Value::from)
                .unwrap_or_else(|_| Value::String(digits.clone())),
            RpcValue::Date(ms) => ms
                .and_then(Number::from_f64)
                .map_or(Value::Null, Value::Number),
            RpcValue::Bytes(bytes, _) => Value::String(crate::codec::base64_encode(bytes)),
            RpcValue::Error(e) => serde_json::json!({ "name": e.name, "message": e.message }),
            RpcValue::Stub(_) => {
                return Err(RpcError::type_error(
                    "a stub cannot be stored or sent as JSON",
                ));
            }
        })
    }

    /// Plain JSON as a value (every JSON value is one).
    pub fn from_json(v: Value) -> RpcValue {
        match v {
            Value::Null => RpcValue::Null,
            Value::Bool(b) => RpcValue::Bool(b),
            Value::Number(n) => RpcValue::Number(n),
            Value::String(s) => RpcValue::String(s),
            Value::Array(items) => {
                RpcValue::Array(items.into_iter().map(RpcValue::from_json).collect())
            }
            Value::Object(map) => RpcValue::Object(
                map.into_iter()
                    .map(|(k, v)| (k, RpcValue::from_json(v)))
                    .collect(),
            ),
        }
    }
}

impl From<Value> for RpcValue {
    fn from(v: Value) -> Self {
        RpcValue::from_json(v)
    }
}

impl From<Stub> for RpcValue {
    fn from(s: Stub) -> Self {
        RpcValue::Stub(s)
    }
}

impl From<RpcError> for RpcValue {
    fn from(e: RpcError) -> Self {
        RpcValue::Error(e)
    }
}

/// An error as the protocol carries it: a JavaScript error class name, a message and extra
/// properties (`code`, `status`, …) the client sees as fields of the error.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{name}: {message}")]
pub struct RpcError {
    pub name: String,
    pub message: String,
    pub props: Option<Map<String, Value>>,
}

impl RpcError {
    pub fn new(name: impl Into<String>, message: impl Into<String>) -> Self {
        RpcError {
            name: name.into(),
            message: message.into(),
            props: None,
        }
    }

    /// A plain `Error`.
    pub fn error(message: impl Into<String>) -> Self {
        Self::new("Error", message)
    }

    /// A `TypeError`: the call or its arguments do not fit the target.
    pub fn type_error(message: impl Into<String>) -> Self {
        Self::new("TypeError", message)
    }

    /// A `RangeError`: an argument is out of its allowed range.
    pub fn range_error(message: impl Into<String>) -> Self {
        Self::new("RangeError", message)
    }

    /// `'<path>' is not a function.`, as the reference implementation words it.
    pub fn not_a_function(path: &str) -> Self {
        Self::type_error(format!("'{path}' is not a function."))
    }

    /// Adds a property the client sees on the error (`e.code`, `e.status`).
    pub fn with_prop(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.props
            .get_or_insert_with(Map::new)
            .insert(key.to_string(), value.into());
        self
    }
}

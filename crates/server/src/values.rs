//! JSON forms of stored values. Bytes travel as `{ "$bytes": "<base64>" }` both ways.

use crate::error::ApiError;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use dotdo_runtime::storage_api::{KvValue, SqlValue};
use serde_json::{Value, json};

pub fn bytes_json(b: &[u8]) -> Value {
    json!({ "$bytes": STANDARD.encode(b) })
}

fn as_bytes(v: &Value) -> Option<Result<Vec<u8>, ApiError>> {
    let obj = v.as_object()?;
    if obj.len() != 1 {
        return None;
    }
    let b64 = obj.get("$bytes")?.as_str()?;
    Some(
        STANDARD
            .decode(b64)
            .map_err(|e| ApiError::bad_request(format!("invalid base64 in $bytes: {e}"))),
    )
}

pub fn kv_to_json(v: &KvValue) -> Value {
    match v {
        KvValue::Json(j) => j.clone(),
        KvValue::Bytes(b) => bytes_json(b),
    }
}

pub fn sql_to_json(v: &SqlValue) -> Value {
    match v {
        SqlValue::Null => Value::Null,
        SqlValue::Integer(i) => json!(i),
        SqlValue::Real(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
        SqlValue::Text(s) => json!(s),
        SqlValue::Blob(b) => bytes_json(b),
    }
}

/// A SQL result as JSON: `{ columns, rows, rowsRead, rowsWritten }`, the same on every
/// transport.
pub fn sql_result_json(r: &dotdo_storage::SqlResult) -> Value {
    let rows: Vec<Vec<Value>> = r
        .rows
        .iter()
        .map(|row| row.iter().map(sql_to_json).collect())
        .collect();
    json!({
        "columns": r.columns,
        "rows": rows,
        "rowsRead": r.rows_read,
        "rowsWritten": r.rows_written,
    })
}

/// A bound parameter from JSON: null, booleans (0/1), numbers, strings and `$bytes`.
pub fn json_to_sql(v: &Value, index: usize) -> Result<SqlValue, ApiError> {
    Ok(match v {
        Value::Null => SqlValue::Null,
        Value::Bool(b) => SqlValue::Integer(i64::from(*b)),
        Value::Number(n) => match n.as_i64() {
            Some(i) => SqlValue::Integer(i),
            None => SqlValue::Real(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => SqlValue::Text(s.clone()),
        other => match as_bytes(other) {
            Some(b) => SqlValue::Blob(b?),
            None => {
                return Err(ApiError::bad_request(format!(
                    "params[{index}]: a parameter is null, a boolean, a number, a string or \
                     {{\"$bytes\": \"<base64>\"}}; encode objects and arrays as JSON strings"
                )));
            }
        },
    })
}

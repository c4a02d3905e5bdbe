//! Which first path segments can name an object (SPEC §4).

use crate::error::ApiError;
use dotdo_runtime::MAX_NAME_BYTES;

/// First segments that are never object names.
pub const RESERVED: &[&str] = &[
    "app",
    "admin",
    "docs",
    "blog",
    "health",
    "metrics",
    "rpc",
    "mcp",
    "openapi.json",
];

pub fn check_object_name(name: &str, builtin: bool) -> Result<(), ApiError> {
    if name.is_empty() || name.len() > MAX_NAME_BYTES {
        return Err(ApiError::bad_request(format!(
            "an object name is 1 to {MAX_NAME_BYTES} bytes of UTF-8 (got {} bytes)",
            name.len()
        )));
    }
    if builtin {
        if name.starts_with('_') || name.starts_with('.') {
            return Err(ApiError::bad_request(
                "an object name must not start with `_` or `.`",
            ));
        }
        if RESERVED.contains(&name) {
            return Err(ApiError::bad_request(format!(
                "`{name}` is a reserved path, not an object name"
            )));
        }
    }
    Ok(())
}

/// Characters an object name cannot carry as they are in one path segment.
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'\\')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

/// An object name as a path segment: `acme-inc` stays `acme-inc`, `a/b` becomes `a%2Fb`.
pub fn encode(name: &str) -> String {
    percent_encoding::utf8_percent_encode(name, SEGMENT).to_string()
}

/// The object name a path segment spells, if it is valid UTF-8.
pub fn decode(segment: &str) -> Option<String> {
    percent_encoding::percent_decode_str(segment)
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}

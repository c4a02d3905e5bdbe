//! Names and ids: collection names, thing ids (given, or generated short and URL-safe), field
//! paths.

use crate::error::{Result, StoreError};
use dotdo_storage::rusqlite::{Connection, params};
use sqids::Sqids;
use std::sync::OnceLock;

/// Words that cannot name a collection: they are routes of every object.
pub const RESERVED_COLLECTIONS: &[&str] = &["rpc", "mcp", "sync", "health"];

/// `contacts`, `line-items`: 1 to 64 lower-case letters, digits, `-`, `_`, starting with a
/// letter; not a reserved route.
pub fn check_collection(name: &str) -> Result<()> {
    let ok = (1..=64).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !ok {
        return Err(StoreError::bad(format!(
            "collection `{name}` must be 1 to 64 lower-case letters, digits, `-` or `_`, starting with a letter"
        )));
    }
    if RESERVED_COLLECTIONS.contains(&name) {
        return Err(StoreError::bad(format!(
            "`{name}` is a reserved route, not a collection"
        )));
    }
    Ok(())
}

/// 1 to 256 URL-safe characters (letters, digits, `-`, `_`, `.`, `~`), not starting with `_`
/// or `.`.
pub fn check_id(id: &str) -> Result<()> {
    let ok = (1..=256).contains(&id.len())
        && !id.starts_with(['_', '.'])
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '~'));
    if ok {
        Ok(())
    } else {
        Err(StoreError::bad(format!(
            "id `{id}` must be 1 to 256 letters, digits, `-`, `_`, `.` or `~`, not starting with `_` or `.`"
        )))
    }
}

/// A field of a thing's data: `status`, `address.city` (letters, digits, `_`; dots nest).
pub fn check_field(path: &str) -> Result<()> {
    let ok = (1..=128).contains(&path.len())
        && path.split('.').all(|seg| {
            !seg.is_empty() && seg.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        });
    if ok {
        Ok(())
    } else {
        Err(StoreError::bad(format!(
            "field `{path}` must be letters, digits and `_`, with `.` between nested names"
        )))
    }
}

fn sqids() -> &'static Sqids {
    static S: OnceLock<Sqids> = OnceLock::new();
    S.get_or_init(|| Sqids::builder().min_length(8).build().unwrap_or_default())
}

/// A new id for a thing of this object: short, URL-safe, never repeated in the object.
pub fn generate(c: &Connection) -> Result<String> {
    let n: i64 = c
        .prepare_cached(
            "INSERT INTO _do_ids(key, value) VALUES ('thing', 1) \
             ON CONFLICT(key) DO UPDATE SET value = value + 1 RETURNING value",
        )?
        .query_row(params![], |r| r.get(0))?;
    let n = u64::try_from(n).unwrap_or(0);
    sqids()
        .encode(&[n])
        .map_err(|e| StoreError::bad(format!("cannot make an id: {e}")))
}

//! The SQLite authorizer that fences user SQL off the runtime's own state.
//!
//! It is installed once per connection and consulted only while `user_mode` is set, i.e. while a
//! user statement is being prepared. Internal statements are prepared with the flag clear.

use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Prefix of every table the runtime owns inside an object's database.
pub(crate) const RESERVED_PREFIX: &str = "_do_";

/// Pragmas a user may run (read-only introspection, plus foreign key enforcement).
const ALLOWED_PRAGMAS: &[&str] = &[
    "table_info",
    "table_xinfo",
    "table_list",
    "index_list",
    "index_info",
    "index_xinfo",
    "foreign_key_list",
    "foreign_key_check",
    "foreign_keys",
    "page_count",
    "page_size",
    "integrity_check",
    "quick_check",
    "collation_list",
    "function_list",
];

pub(crate) fn install(conn: &mut rusqlite::Connection) -> rusqlite::Result<Arc<AtomicBool>> {
    let user_mode = Arc::new(AtomicBool::new(false));
    let flag = user_mode.clone();
    conn.authorizer(Some(move |ctx: AuthContext<'_>| {
        if !flag.load(Ordering::Relaxed) {
            return Authorization::Allow;
        }
        authorize_user(&ctx)
    }))?;
    Ok(user_mode)
}

fn reserved(table: &str) -> bool {
    let lower = table.to_ascii_lowercase();
    lower.starts_with(RESERVED_PREFIX)
}

fn authorize_user(ctx: &AuthContext<'_>) -> Authorization {
    use AuthAction as A;
    let deny_if = |cond: bool| {
        if cond {
            Authorization::Deny
        } else {
            Authorization::Allow
        }
    };
    match ctx.action {
        A::Transaction { .. } | A::Savepoint { .. } | A::Attach { .. } | A::Detach { .. } => {
            Authorization::Deny
        }
        A::Pragma { pragma_name, .. } => {
            deny_if(!ALLOWED_PRAGMAS.contains(&pragma_name.to_ascii_lowercase().as_str()))
        }
        A::Read { table_name, .. }
        | A::Insert { table_name }
        | A::Update { table_name, .. }
        | A::Delete { table_name }
        | A::CreateTable { table_name }
        | A::DropTable { table_name }
        | A::CreateTempTable { table_name }
        | A::DropTempTable { table_name } => deny_if(reserved(table_name)),
        A::CreateIndex { table_name, .. }
        | A::DropIndex { table_name, .. }
        | A::CreateTrigger { table_name, .. }
        | A::DropTrigger { table_name, .. }
        | A::CreateTempIndex { table_name, .. }
        | A::CreateTempTrigger { table_name, .. } => deny_if(reserved(table_name)),
        A::AlterTable { table_name, .. } => deny_if(reserved(table_name)),
        A::CreateView { view_name } | A::DropView { view_name } => deny_if(reserved(view_name)),
        _ => Authorization::Allow,
    }
}

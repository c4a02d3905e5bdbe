//! Storage on real SQLite files in a temp dir.
#![allow(clippy::unwrap_used)]

use dotdo_storage::*;
use serde_json::json;

fn open(dir: &tempfile::TempDir) -> Storage {
    Storage::open(&dir.path().join("o.sqlite"), &StorageOptions::default()).unwrap()
}

fn j(v: serde_json::Value) -> KvValue {
    KvValue::Json(v)
}

#[test]
fn kv_round_trip_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(&dir);
    s.put("a", &j(json!({"n": 1}))).unwrap();
    s.put("b", &KvValue::Bytes(vec![0, 1, 2])).unwrap();
    assert!(s.commit().unwrap(), "a commit with writes reports them");
    s.close().unwrap();
    let mut s = open(&dir);
    assert_eq!(s.get("a").unwrap(), Some(j(json!({"n": 1}))));
    assert_eq!(s.get("b").unwrap(), Some(KvValue::Bytes(vec![0, 1, 2])));
    assert_eq!(s.get("c").unwrap(), None);
    assert!(s.delete("a").unwrap());
    assert!(!s.delete("a").unwrap());
    assert_eq!(s.get_many(&["a".into(), "b".into()]).unwrap().len(), 1);
}

#[test]
fn rollback_discards_the_turn() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(&dir);
    s.put("a", &j(json!(1))).unwrap();
    s.commit().unwrap();
    s.put("a", &j(json!(2))).unwrap();
    s.rollback();
    assert_eq!(s.get("a").unwrap(), Some(j(json!(1))));
    assert!(
        !s.commit().unwrap(),
        "a read-only transaction reports no writes"
    );
}

#[test]
fn list_orders_by_key_with_prefix_range_reverse_limit() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(&dir);
    for k in ["a", "b/1", "b/2", "b/3", "c", "é"] {
        s.put(k, &j(json!(k))).unwrap();
    }
    let keys = |v: Vec<(String, KvValue)>| v.into_iter().map(|(k, _)| k).collect::<Vec<_>>();
    assert_eq!(
        keys(s.list(&ListOptions::default()).unwrap()),
        ["a", "b/1", "b/2", "b/3", "c", "é"]
    );
    let prefix = ListOptions {
        prefix: Some("b/".into()),
        ..Default::default()
    };
    assert_eq!(keys(s.list(&prefix).unwrap()), ["b/1", "b/2", "b/3"]);
    let rev = ListOptions {
        prefix: Some("b/".into()),
        reverse: true,
        limit: Some(2),
        ..Default::default()
    };
    assert_eq!(keys(s.list(&rev).unwrap()), ["b/3", "b/2"]);
    let range = ListOptions {
        start: Some("b/2".into()),
        end: Some("c".into()),
        ..Default::default()
    };
    assert_eq!(keys(s.list(&range).unwrap()), ["b/2", "b/3"]);
}

#[test]
fn limits_are_enforced_with_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(&dir);
    let long_key = "k".repeat(MAX_KEY_BYTES + 1);
    assert!(matches!(
        s.put(&long_key, &j(json!(1))),
        Err(StorageError::KeyTooLarge { .. })
    ));
    assert!(matches!(
        s.put("", &j(json!(1))),
        Err(StorageError::EmptyKey)
    ));
    let big = KvValue::Bytes(vec![7; MAX_VALUE_BYTES + 1]);
    assert!(matches!(
        s.put("big", &big),
        Err(StorageError::ValueTooLarge { .. })
    ));
    s.put("ok", &KvValue::Bytes(vec![7; MAX_VALUE_BYTES]))
        .unwrap();
    s.commit().unwrap();
    assert_eq!(s.kv_count().unwrap(), 1);
}

#[test]
fn size_limit_is_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let opts = StorageOptions {
        max_size_bytes: 256 * 1024,
        ..Default::default()
    };
    let mut s = Storage::open(&dir.path().join("o.sqlite"), &opts).unwrap();
    let mut hit = None;
    for i in 0..100 {
        if let Err(e) = s.put(&format!("k{i}"), &KvValue::Bytes(vec![1; 16 * 1024])) {
            hit = Some(e);
            break;
        }
    }
    assert!(
        matches!(hit, Some(StorageError::SizeLimit { .. })),
        "{hit:?}"
    );
    assert!(s.size_bytes().unwrap() <= 256 * 1024);
}

#[test]
fn a_repeated_statement_counts_each_call_alone() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(&dir);
    s.exec(
        "CREATE TABLE t(n INTEGER); INSERT INTO t VALUES (1), (2), (3)",
        &[],
    )
    .unwrap();
    let mut first = None;
    for _ in 0..3 {
        // A full scan: the same figures every time, though the statement is cached after
        // the first call.
        let r = s.exec("SELECT count(*) FROM t WHERE n > 0", &[]).unwrap();
        assert_eq!(r.rows, vec![vec![SqlValue::Integer(3)]]);
        assert!(r.rows_read > 1);
        assert_eq!(r.rows_read, *first.get_or_insert(r.rows_read));
        let r = s.exec("UPDATE t SET n = n + 1 RETURNING n", &[]).unwrap();
        assert_eq!((r.rows.len(), r.rows_written), (3, 3));
    }
    // Several statements still run one after the other, with the last one's rows.
    let r = s
        .exec("UPDATE t SET n = 0; SELECT sum(n) FROM t", &[])
        .unwrap();
    assert_eq!(r.rows, vec![vec![SqlValue::Integer(0)]]);
}

#[test]
fn sql_with_params_counts_rows() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(&dir);
    s.exec(
        "CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT, score REAL, pic BLOB)",
        &[],
    )
    .unwrap();
    for i in 0..5 {
        let r = s
            .exec(
                "INSERT INTO t(name, score, pic) VALUES (?1, ?2, ?3)",
                &[
                    SqlValue::Text(format!("n{i}")),
                    SqlValue::Real(i as f64 / 2.0),
                    SqlValue::Blob(vec![i]),
                ],
            )
            .unwrap();
        assert_eq!(r.rows_written, 1);
    }
    let r = s
        .exec(
            "SELECT id, name, score FROM t WHERE id > ?1 ORDER BY id",
            &[SqlValue::Integer(3)],
        )
        .unwrap();
    assert_eq!(r.columns, ["id", "name", "score"]);
    assert_eq!(
        r.rows,
        vec![
            vec![
                SqlValue::Integer(4),
                SqlValue::Text("n3".into()),
                SqlValue::Real(1.5)
            ],
            vec![
                SqlValue::Integer(5),
                SqlValue::Text("n4".into()),
                SqlValue::Real(2.0)
            ],
        ]
    );
    assert!(r.rows_read >= 2);
    let r = s
        .exec("SELECT count(*) FROM t WHERE name LIKE 'n%'", &[])
        .unwrap();
    assert_eq!(r.rows[0][0], SqlValue::Integer(5));
    assert!(
        r.rows_read >= 5,
        "a full scan counts the rows it visits: {}",
        r.rows_read
    );
}

#[test]
fn failing_sql_changes_nothing_and_leaves_the_object_usable() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(&dir);
    s.exec(
        "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT NOT NULL)",
        &[],
    )
    .unwrap();
    s.exec("INSERT INTO t VALUES (1, 'a')", &[]).unwrap();
    let err = s
        .exec(
            "INSERT INTO t VALUES (2, 'b'); INSERT INTO t VALUES (1, 'dup')",
            &[],
        )
        .unwrap_err();
    assert!(
        matches!(&err, StorageError::Sql(m) if m.contains("UNIQUE")),
        "{err:?}"
    );
    let err = s.exec("SELEC nonsense", &[]).unwrap_err();
    assert!(
        matches!(&err, StorageError::Sql(m) if m.contains("syntax")),
        "{err:?}"
    );
    let r = s.exec("SELECT count(*) FROM t", &[]).unwrap();
    assert_eq!(
        r.rows[0][0],
        SqlValue::Integer(1),
        "the failed batch left no row behind"
    );
    s.commit().unwrap();
}

#[test]
fn user_sql_cannot_touch_runtime_state() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(&dir);
    for sql in [
        "SELECT * FROM _do_kv",
        "DELETE FROM _do_meta",
        "DROP TABLE _do_kv",
        "BEGIN",
        "COMMIT",
        "SAVEPOINT x",
        "PRAGMA journal_mode = DELETE",
        "PRAGMA synchronous = OFF",
        "ATTACH DATABASE '/tmp/x.db' AS x",
        "CREATE TABLE _do_mine(x)",
    ] {
        let err = s.exec(sql, &[]).unwrap_err();
        assert!(matches!(err, StorageError::NotAllowed(_)), "{sql}: {err:?}");
    }
    assert!(s.exec("PRAGMA table_list", &[]).is_ok());
    // The very text of statements the runtime caches for itself is still refused to users
    // (user statements have a cache of their own).
    s.put("k", &KvValue::Json(serde_json::json!(1))).unwrap();
    s.get("k").unwrap();
    for sql in [
        "SELECT value FROM _do_kv WHERE key = ?1",
        "SAVEPOINT _do_exec",
        "RELEASE _do_exec",
    ] {
        let params = if sql.contains("?1") {
            vec![SqlValue::Text("k".into())]
        } else {
            vec![]
        };
        let err = s.exec(sql, &params).unwrap_err();
        assert!(matches!(err, StorageError::NotAllowed(_)), "{sql}: {err:?}");
    }
    let err = s
        .exec("SELECT ?1, ?2", &[SqlValue::Integer(1)])
        .unwrap_err();
    assert!(matches!(err, StorageError::InvalidArgument(_)));
}

#[test]
fn nested_transactions_roll_back_alone() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(&dir);
    s.put("outer", &j(json!(1))).unwrap();
    let r: Result<(), _> = s.transaction(|s| {
        s.put("inner", &j(json!(2)))?;
        Err(StorageError::InvalidArgument("boom".into()))
    });
    assert!(r.is_err());
    s.transaction(|s| s.put("kept", &j(json!(3)))).unwrap();
    s.commit().unwrap();
    assert_eq!(s.get("outer").unwrap(), Some(j(json!(1))));
    assert_eq!(s.get("inner").unwrap(), None);
    assert_eq!(s.get("kept").unwrap(), Some(j(json!(3))));
}

#[test]
fn alarm_slot_and_delete_all() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(&dir);
    assert_eq!(s.get_alarm().unwrap(), None);
    s.set_alarm(1_000).unwrap();
    assert!(s.take_alarm_changed());
    s.alarm_failed(2, 5_000).unwrap();
    s.alarm_fired(900).unwrap();
    s.commit().unwrap();
    assert_eq!(
        s.alarm_state().unwrap(),
        AlarmState {
            at: Some(5_000),
            last_fired_at: Some(900),
            retries: 2
        }
    );
    s.exec("CREATE TABLE t(x); CREATE VIEW v AS SELECT * FROM t", &[])
        .unwrap();
    s.put("k", &j(json!(1))).unwrap();
    s.delete_all().unwrap();
    s.commit().unwrap();
    assert_eq!(s.get_alarm().unwrap(), None);
    assert_eq!(s.kv_count().unwrap(), 0);
    let r = s
        .exec(
            "SELECT count(*) FROM sqlite_schema WHERE name IN ('t','v')",
            &[],
        )
        .unwrap();
    assert_eq!(r.rows[0][0], SqlValue::Integer(0));
}

#[test]
fn deferred_sync_mode_is_durable_after_wal_sync_and_close() {
    let dir = tempfile::tempdir().unwrap();
    let opts = StorageOptions {
        sync: SyncMode::Deferred,
        ..Default::default()
    };
    let path = dir.path().join("o.sqlite");
    let mut s = Storage::open(&path, &opts).unwrap();
    for i in 0..2000 {
        s.put(&format!("k{i:05}"), &KvValue::Bytes(vec![1; 1024]))
            .unwrap();
        s.commit().unwrap();
        if i % 100 == 0 {
            s.wal_file().unwrap().sync_data().unwrap();
            s.checkpoint().unwrap();
        }
    }
    s.close().unwrap();
    let mut s = Storage::open(&path, &opts).unwrap();
    assert_eq!(s.kv_count().unwrap(), 2000);
}

#[test]
fn read_only_sql_refuses_any_statement_that_writes() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(&dir);
    s.exec("CREATE TABLE t (n INTEGER); INSERT INTO t VALUES (1)", &[])
        .unwrap();
    s.commit().unwrap();
    let r = s
        .exec_read_only("SELECT n + ? FROM t", &[SqlValue::Integer(1)])
        .unwrap();
    assert_eq!(r.rows, vec![vec![SqlValue::Integer(2)]]);
    for write in [
        "INSERT INTO t VALUES (2)",
        "UPDATE t SET n = 5",
        "DELETE FROM t",
        "DROP TABLE t",
        "CREATE TABLE u (x)",
        "SELECT 1; DELETE FROM t",
        "WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x",
    ] {
        let e = s.exec_read_only(write, &[]).unwrap_err();
        assert!(e.to_string().contains("writes"), "{write}: {e}");
    }
    s.commit().unwrap();
    let r = s.exec("SELECT count(*), sum(n) FROM t", &[]).unwrap();
    assert_eq!(
        r.rows,
        vec![vec![SqlValue::Integer(1), SqlValue::Integer(1)]]
    );
}

#[test]
fn cached_statements_are_not_planned_again_on_each_call() {
    use dotdo_storage::rusqlite::StatementStatus;
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(&dir);
    s.exec("CREATE TABLE t(a TEXT, b TEXT, UNIQUE (a, b))", &[])
        .unwrap();
    // A parameter beside an ORDER BY: SQLite would otherwise re-plan it on every call.
    let sql = "SELECT DISTINCT b FROM t WHERE a = ?1 ORDER BY b";
    for _ in 0..3 {
        s.internal_read(|c| Ok(c.prepare_cached(sql)?.query_map(["a"], |_| Ok(()))?.count()))
            .unwrap();
    }
    let reprepared = s
        .internal_read(|c| {
            Ok(c.prepare_cached(sql)?
                .get_status(StatementStatus::RePrepare))
        })
        .unwrap();
    assert_eq!(reprepared, 0);
}

#[test]
fn a_segment_rolls_back_alone_inside_the_shared_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(&dir);
    s.begin_segment().unwrap();
    s.put("a", &j(json!(1))).unwrap();
    s.end_segment().unwrap();
    s.begin_segment().unwrap();
    s.put("a", &j(json!(2))).unwrap();
    s.put("b", &j(json!(2))).unwrap();
    s.rollback_segment();
    assert!(
        s.is_dirty(),
        "the first segment's write still waits to commit"
    );
    s.begin_segment().unwrap();
    s.put("c", &j(json!(3))).unwrap();
    s.end_segment().unwrap();
    assert!(s.commit().unwrap());
    s.close().unwrap();
    let mut s = open(&dir);
    assert_eq!(s.get("a").unwrap(), Some(j(json!(1))));
    assert_eq!(s.get("b").unwrap(), None);
    assert_eq!(s.get("c").unwrap(), Some(j(json!(3))));
}

#[test]
fn a_segment_that_reads_first_still_undoes_its_writes_alone() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(&dir);
    s.put("earlier", &j(json!(1))).unwrap();
    // The savepoint is made at the segment's first write, after its reads.
    s.begin_segment().unwrap();
    assert_eq!(s.get("earlier").unwrap(), Some(j(json!(1))));
    s.put("mine", &j(json!(2))).unwrap();
    s.transaction(|s| s.put("nested", &j(json!(3)))).unwrap();
    s.rollback_segment();
    // A segment that only read: undoing it undoes nothing.
    s.begin_segment().unwrap();
    assert_eq!(s.get("mine").unwrap(), None);
    s.rollback_segment();
    // A nested transaction as the first write.
    s.begin_segment().unwrap();
    s.transaction(|s| s.put("first", &j(json!(4)))).unwrap();
    s.rollback_segment();
    assert!(s.is_dirty(), "the earlier write still waits to commit");
    assert!(s.commit().unwrap());
    s.close().unwrap();
    let mut s = open(&dir);
    assert_eq!(s.get("earlier").unwrap(), Some(j(json!(1))));
    for gone in ["mine", "nested", "first"] {
        assert_eq!(s.get(gone).unwrap(), None, "{gone}");
    }
}

#[test]
fn a_schema_an_internal_read_creates_outlives_the_undone_segment() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(&dir);
    s.put("earlier", &j(json!(1))).unwrap();
    s.begin_segment().unwrap();
    s.internal_read(|c| c.execute_batch("CREATE TABLE IF NOT EXISTS _do_made(x)"))
        .unwrap();
    s.put("mine", &j(json!(2))).unwrap();
    s.rollback_segment();
    assert!(s.commit().unwrap());
    s.close().unwrap();
    let mut s = open(&dir);
    assert_eq!(s.get("earlier").unwrap(), Some(j(json!(1))));
    assert_eq!(s.get("mine").unwrap(), None);
    let made = s
        .internal_read(|c| c.query_row("SELECT count(*) FROM _do_made", [], |r| r.get::<_, i64>(0)))
        .unwrap();
    assert_eq!(made, 0, "the table is there, empty");
}

#[test]
fn a_segment_knows_whether_it_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(&dir);
    s.begin_segment().unwrap();
    s.put("a", &j(json!(1))).unwrap();
    assert!(s.segment_wrote());
    s.end_segment().unwrap();
    // Inside the open transaction: a read, and an internal read that changed nothing.
    s.begin_segment().unwrap();
    assert_eq!(s.get("a").unwrap(), Some(j(json!(1))));
    s.internal_read(|c| c.query_row("SELECT count(*) FROM _do_kv", [], |r| r.get::<_, i64>(0)))
        .unwrap();
    assert!(!s.segment_wrote(), "reads are not writes");
    s.exec("CREATE TABLE t(x)", &[]).unwrap();
    assert!(s.segment_wrote(), "schema changes are writes");
    s.end_segment().unwrap();
    s.begin_segment().unwrap();
    assert!(!s.segment_wrote(), "a new segment starts clean");
    s.end_segment().unwrap();
    assert!(s.commit().unwrap());
}

#[test]
fn a_segment_that_loses_the_transaction_fails_the_shared_commit() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(&dir);
    s.exec("CREATE TABLE t(id INTEGER PRIMARY KEY)", &[])
        .unwrap();
    s.exec("INSERT INTO t VALUES (1)", &[]).unwrap();
    s.commit().unwrap();
    s.put("earlier", &j(json!(1))).unwrap();
    s.begin_segment().unwrap();
    // ON CONFLICT ROLLBACK makes SQLite drop the whole transaction, earlier work included.
    s.exec("INSERT OR ROLLBACK INTO t VALUES (1)", &[])
        .unwrap_err();
    s.rollback_segment();
    assert!(s.is_aborted());
    assert!(
        matches!(s.commit(), Err(StorageError::TransactionAborted)),
        "the earlier segment's write is gone, and the commit says so"
    );
    assert_eq!(s.get("earlier").unwrap(), None);
    s.put("after", &j(json!(1))).unwrap();
    assert!(s.commit().unwrap(), "the object is usable again");
}

#[test]
fn a_failed_exec_undoes_its_own_writes_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(&dir);
    s.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)", &[])
        .unwrap();
    s.exec("INSERT INTO t VALUES (1, 'a')", &[]).unwrap();
    s.commit().unwrap();
    // OR FAIL keeps the rows written before the failing one: the exec itself must undo them.
    let failing = "INSERT OR FAIL INTO t VALUES (10, 'x'), (1, 'dup')";
    let ids = |s: &mut Storage| -> Vec<SqlValue> {
        let r = s.exec("SELECT id FROM t ORDER BY id", &[]).unwrap();
        r.rows.into_iter().map(|mut row| row.remove(0)).collect()
    };

    // First in a transaction that holds no writes.
    s.begin_segment().unwrap();
    s.get("nothing").unwrap();
    s.exec(failing, &[]).unwrap_err();
    s.exec("INSERT INTO t VALUES (2, 'b')", &[]).unwrap();
    s.end_segment().unwrap();

    // First in a segment, after an earlier segment's writes.
    s.begin_segment().unwrap();
    s.exec(failing, &[]).unwrap_err();
    s.exec("INSERT INTO t VALUES (3, 'c')", &[]).unwrap();
    s.end_segment().unwrap();

    // After the segment's own writes.
    s.begin_segment().unwrap();
    s.exec("INSERT INTO t VALUES (4, 'd')", &[]).unwrap();
    s.exec(failing, &[]).unwrap_err();
    s.end_segment().unwrap();

    // A segment whose exec failed can still be undone whole.
    s.begin_segment().unwrap();
    s.exec(failing, &[]).unwrap_err();
    s.exec("INSERT INTO t VALUES (5, 'e')", &[]).unwrap();
    s.rollback_segment();

    assert!(s.commit().unwrap());
    s.close().unwrap();
    let mut s = open(&dir);
    let want: Vec<SqlValue> = [1, 2, 3, 4].into_iter().map(SqlValue::Integer).collect();
    assert_eq!(ids(&mut s), want);
}

#[test]
fn a_grown_wal_is_due_for_a_checkpoint_and_the_checkpoint_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("o.sqlite");
    let mut s = open(&dir);
    let mut commits = 0;
    while !s.checkpoint_due() {
        s.put(&format!("k{commits:05}"), &KvValue::Bytes(vec![7; 4000]))
            .unwrap();
        s.commit().unwrap();
        commits += 1;
        assert!(commits < 10_000, "the WAL never grew due");
    }
    // SQLite checkpoints nothing on its own: the caller decides where it waits for the disk.
    s.put("during", &j(json!(1))).unwrap();
    assert!(!s.checkpoint_due(), "not inside a transaction");
    s.commit().unwrap();
    s.checkpoint().unwrap();
    assert!(!s.checkpoint_due());
    s.put("after", &j(json!(2))).unwrap();
    s.commit().unwrap();
    let wal = std::fs::metadata(path.with_extension("sqlite-wal"))
        .unwrap()
        .len();
    // It had grown past 16 MiB; after the checkpoint it is cut back to the size limit.
    assert!(wal <= 4 * 1024 * 1024, "the WAL is cut back: {wal} bytes");
    s.close().unwrap();
    let mut s = open(&dir);
    assert_eq!(s.kv_count().unwrap(), commits + 2);
}

//! Tests for `voicegate audit ...` (the functions the main CLI calls).

// Inside `mod audit` so that `cargo test audit` selects these tests too.
mod audit {
    use std::path::{Path, PathBuf};

    use chrono::{DateTime, TimeZone, Utc};
    use clap::Parser;
    use rusqlite::Connection;
    use serde_json::{Value, json};
    use tempfile::TempDir;
    use voicegate::audit::cli::{AuditCommand, ExportFormat, run};
    use voicegate::audit::{AuditError, AuditEvent, AuditLog, AuditOutcome};

    /// A stand-in for the main CLI, to check the clap definitions.
    #[derive(Debug, Parser)]
    struct TestCli {
        #[command(subcommand)]
        cmd: AuditCommand,
    }

    fn parse(args: &[&str]) -> Result<AuditCommand, clap::Error> {
        TestCli::try_parse_from(std::iter::once("audit").chain(args.iter().copied())).map(|c| c.cmd)
    }

    /// 2025-01-31T09:00:00Z plus `secs`.
    fn at(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_738_314_000 + secs, 0)
            .single()
            .expect("valid time")
    }

    fn now() -> DateTime<Utc> {
        at(3 * 86_400)
    }

    /// Three events: a purchase yesterday and last week, with awkward text.
    fn sample_log() -> (TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit.db");
        let log = AuditLog::open(&path).expect("open");
        let mut e = AuditEvent::new(
            "3f2a9c1b-0000-4000-8000-000000000001",
            "OrderItem",
            "order \"oat\" milk, two\nplease",
            AuditOutcome::Requested,
        );
        e.slots.insert("item".into(), json!("oat milk"));
        e.confidence = Some(0.93);
        e.wake_score = Some(0.71);
        e.amount = Some("12.50".into());
        e.currency = Some("EUR".into());
        log.append(&e, at(0)).expect("append");
        let confirmed = AuditEvent {
            reply_transcript: Some("yes".into()),
            ..e.next(AuditOutcome::Confirmed, None)
        };
        log.append(&confirmed, at(2 * 86_400 + 60)).expect("append");
        let refused = e.next(
            AuditOutcome::Refused,
            Some("over the daily spend cap; '); DROP TABLE audit; --".into()),
        );
        log.append(&refused, at(2 * 86_400 + 120)).expect("append");
        (dir, path)
    }

    fn run_to_string(args: &[&str], db: &Path, json: bool) -> (i32, String) {
        let cmd = parse(args).expect("parse");
        let mut out = Vec::new();
        let code = run(cmd, db, json, now(), &mut out).expect("run");
        (code, String::from_utf8(out).expect("utf-8"))
    }

    #[test]
    fn verify_reports_intact_and_broken() {
        let (_dir, db) = sample_log();
        assert_eq!(
            run_to_string(&["verify"], &db, false),
            (0, "audit log intact: 3 rows\n".to_string())
        );
        let (code, text) = run_to_string(&["verify"], &db, true);
        let report: Value = serde_json::from_str(&text).expect("json");
        assert_eq!(
            (code, &report["intact"], &report["rows"]),
            (0, &json!(true), &json!(3))
        );

        let conn = Connection::open(&db).expect("raw");
        conn.execute_batch(
            "DROP TRIGGER audit_no_update; UPDATE audit SET amount = '1.25' WHERE id = 2",
        )
        .expect("tamper");
        drop(conn);
        assert_eq!(
            run_to_string(&["verify"], &db, false),
            (
                1,
                "audit log BROKEN at row 2: edited (hash mismatch)\n".to_string()
            )
        );
        let (code, text) = run_to_string(&["verify"], &db, true);
        let report: Value = serde_json::from_str(&text).expect("json");
        assert_eq!(code, 1);
        assert_eq!(
            report,
            json!({
                "intact": false,
                "row": 2,
                "problem": "edited",
                "message": "audit log BROKEN at row 2: edited (hash mismatch)",
            })
        );
    }

    #[test]
    fn list_prints_a_table_with_escaped_text() {
        let (_dir, db) = sample_log();
        let (code, text) = run_to_string(&["list"], &db, false);
        assert_eq!(code, 0);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5, "{text}");
        assert!(lines[0].starts_with("ID  TIME"), "{text}");
        assert!(lines[1].starts_with(
            "1   2025-01-31T09:00:00.000Z  requested  OrderItem  12.50 EUR  3f2a9c1b"
        ));
        // The newline in the transcript is shown escaped, not as a line break.
        assert!(
            lines[1].contains(r#"order "oat" milk, two\nplease"#),
            "{text}"
        );
        assert!(
            lines[3].ends_with("over the daily spend cap; '); DROP TABL…"),
            "{text}"
        );
        assert_eq!(lines[4], "3 rows");
    }

    #[test]
    fn list_filters_and_json_lines() {
        let (_dir, db) = sample_log();
        let ids = |args: &[&str]| -> Vec<i64> {
            let (code, text) = run_to_string(args, &db, true);
            assert_eq!(code, 0);
            text.lines()
                .map(|l| {
                    let v: Value = serde_json::from_str(l).expect("json line");
                    v["id"].as_i64().expect("id")
                })
                .collect()
        };
        let cases: [(&[&str], &[i64]); 7] = [
            (&["list"], &[1, 2, 3]),
            (&["list", "--since", "24h"], &[2, 3]),
            (&["list", "--since", "2025-02-02"], &[2, 3]),
            (&["list", "--since", "2025-02-02T09:01:30Z"], &[3]),
            (&["list", "--outcome", "refused"], &[3]),
            (&["list", "--outcome", "executed"], &[]),
            (&["list", "--action", "nope"], &[]),
        ];
        for (args, expected) in cases {
            assert_eq!(ids(args), expected, "{args:?}");
        }
        let (_, text) = run_to_string(&["list", "--outcome", "declined"], &db, false);
        assert_eq!(text, "no matching rows\n");
    }

    #[test]
    fn show_prints_every_field() {
        let (_dir, db) = sample_log();
        let (code, text) = run_to_string(&["show", "2"], &db, false);
        assert_eq!(code, 0);
        let labels: Vec<&str> = text
            .lines()
            .map(|l| l.split(':').next().unwrap_or(""))
            .collect();
        assert_eq!(
            labels,
            [
                "id",
                "time",
                "action id",
                "intent",
                "slots",
                "transcript",
                "reply transcript",
                "confidence",
                "wake score",
                "amount",
                "currency",
                "outcome",
                "detail",
                "previous hash",
                "hash"
            ]
        );
        assert!(text.contains("reply transcript: yes\n"), "{text}");
        assert!(text.contains("confidence:       0.93\n"), "{text}");
        assert!(text.contains("detail:           (none)\n"), "{text}");

        let (code, text) = run_to_string(&["show", "2"], &db, true);
        let row: Value = serde_json::from_str(&text).expect("json");
        assert_eq!(
            (code, &row["outcome"], &row["amount"]),
            (0, &json!("confirmed"), &json!("12.50"))
        );

        assert_eq!(
            run_to_string(&["show", "9"], &db, false),
            (
                1,
                format!("no row 9 in the audit log at {}\n", db.display())
            )
        );
        assert_eq!(
            run_to_string(&["show", "9"], &db, true),
            (1, "null\n".to_string())
        );
    }

    /// A minimal RFC 4180 reader, to check the export round-trips.
    fn read_csv(text: &str) -> Vec<Vec<String>> {
        let mut records = Vec::new();
        let mut record = Vec::new();
        let mut field = String::new();
        let mut chars = text.chars().peekable();
        let mut quoted = false;
        while let Some(c) = chars.next() {
            match (quoted, c) {
                (true, '"') if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                (true, '"') => quoted = false,
                (true, c) => field.push(c),
                (false, '"') => quoted = true,
                (false, ',') => record.push(std::mem::take(&mut field)),
                (false, '\r') => assert_eq!(chars.next(), Some('\n'), "bare CR"),
                (false, '\n') => panic!("bare LF outside quotes"),
                (false, c) => field.push(c),
            }
            if !quoted && c == '\r' {
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
            }
        }
        assert!(field.is_empty() && record.is_empty(), "unterminated record");
        records
    }

    #[test]
    fn export_csv_and_json() {
        let (_dir, db) = sample_log();
        let log = AuditLog::open_read_only(&db).expect("open");
        let rows = log.list(&Default::default()).expect("list");

        let (code, text) = run_to_string(&["export"], &db, false);
        assert_eq!(code, 0);
        let records = read_csv(&text);
        assert_eq!(records.len(), 4);
        assert_eq!(
            records[0].join(","),
            "id,time,action_id,intent,slots,transcript,reply_transcript,confidence,wake_score,amount,currency,outcome,detail,prev_hash,hash"
        );
        for (record, row) in records[1..].iter().zip(&rows) {
            assert_eq!(record.len(), 15);
            assert_eq!(record[0], row.id.to_string());
            assert_eq!(record[4], r#"{"item":"oat milk"}"#);
            assert_eq!(record[5], row.event.transcript);
            assert_eq!(
                record[6],
                row.event.reply_transcript.clone().unwrap_or_default()
            );
            assert_eq!(record[12], row.event.detail.clone().unwrap_or_default());
            assert_eq!(record[14], row.hash);
        }

        for args in [&["export", "--format", "json"][..], &["export"][..]] {
            // `--json` picks JSON when no format is given.
            let (code, text) = run_to_string(args, &db, true);
            assert_eq!(code, 0);
            let value: Value = serde_json::from_str(&text).expect("json");
            let expected: Vec<Value> = rows.iter().map(|r| r.to_json()).collect();
            assert_eq!(value, Value::Array(expected));
        }
        assert!(matches!(
            parse(&["export", "--format", "csv"]),
            Ok(AuditCommand::Export {
                format: Some(ExportFormat::Csv)
            })
        ));
    }

    #[test]
    fn a_missing_log_reads_as_empty_and_is_never_created() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("audit.db");
        let missing = format!("no audit log at {} yet", db.display());
        let cases: [(&[&str], bool, i32, String); 8] = [
        (&["list"], false, 0, format!("{missing}\n")),
        (&["list"], true, 0, String::new()),
        (&["show", "1"], false, 1, format!("{missing}\n")),
        (&["show", "1"], true, 1, "null\n".into()),
        (&["verify"], false, 0, format!("{missing}: nothing to verify (0 rows)\n")),
        (&["verify"], true, 0, "{\"intact\":true,\"rows\":0,\"missing\":true}\n".into()),
        (&["export"], false, 0, "id,time,action_id,intent,slots,transcript,reply_transcript,confidence,wake_score,amount,currency,outcome,detail,prev_hash,hash\r\n".into()),
        (&["export"], true, 0, "[]\n".into()),
    ];
        for (args, json, code, output) in cases {
            assert_eq!(
                run_to_string(args, &db, json),
                (code, output),
                "{args:?} json={json}"
            );
        }
        assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 0);
    }

    #[test]
    fn bad_arguments_are_reported() {
        let (_dir, db) = sample_log();
        let cmd = parse(&["list", "--since", "yesterday"]).expect("parse");
        let err = run(cmd, &db, false, now(), &mut Vec::new()).expect_err("bad since");
        assert!(matches!(err, AuditError::Usage(_)), "{err:?}");
        assert!(
            err.to_string()
                .contains("invalid --since value \"yesterday\""),
            "{err}"
        );

        for args in [
            &["list", "--outcome", "bogus"][..],
            &["show", "x"][..],
            &["export", "--format", "xml"][..],
            &["frobnicate"][..],
        ] {
            assert!(parse(args).is_err(), "{args:?}");
        }
    }

    #[test]
    fn head_prints_the_anchor_and_verify_checks_it() {
        let (_dir, db) = sample_log();
        let last = AuditLog::open_read_only(&db)
            .expect("open")
            .get(3)
            .expect("get")
            .expect("row 3")
            .hash;
        let anchor = format!("3:{last}");
        let (code, text) = run_to_string(&["head"], &db, false);
        assert_eq!(code, 0);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(lines[0], anchor);
        assert!(
            lines[1].starts_with("3 rows; keep this anchor elsewhere"),
            "{text}"
        );
        assert!(
            lines[1].ends_with(&format!("--expect-head {anchor}`")),
            "{text}"
        );
        let (code, text) = run_to_string(&["head"], &db, true);
        let report: Value = serde_json::from_str(&text).expect("json");
        assert_eq!((code, report), (0, json!({ "count": 3, "hash": last })));

        let intact = format!("audit log intact: 3 rows; it extends the anchor {anchor}\n");
        assert_eq!(
            run_to_string(&["verify", "--expect-head", &anchor], &db, false),
            (0, intact)
        );
        let (code, text) = run_to_string(&["verify", "--expect-head", &last], &db, true);
        let report: Value = serde_json::from_str(&text).expect("json");
        assert_eq!(
            (code, report),
            (
                0,
                json!({ "intact": true, "rows": 3, "last_hash": last, "extends": last })
            )
        );

        // Another log's anchor: intact, but it does not extend it.
        let other = format!("2:{}", "e".repeat(64));
        let expected = format!(
            "audit log BROKEN at row 2: does not extend the anchor: its hash is {}, the anchor's {} \
             (this row or an earlier one was rewritten, or the log replaced)\n",
            AuditLog::open_read_only(&db)
                .expect("open")
                .get(2)
                .expect("get")
                .expect("row 2")
                .hash,
            "e".repeat(64)
        );
        assert_eq!(
            run_to_string(&["verify", "--expect-head", &other], &db, false),
            (1, expected)
        );
        let (code, text) = run_to_string(&["verify", "--expect-head", &other], &db, true);
        let report: Value = serde_json::from_str(&text).expect("json");
        assert_eq!(code, 1);
        assert_eq!(
            (&report["intact"], &report["row"], &report["problem"]),
            (&json!(false), &json!(2), &json!("rewritten"))
        );
        // An anchor beyond the end.
        let (code, text) = run_to_string(
            &["verify", "--expect-head", &format!("4:{last}")],
            &db,
            false,
        );
        assert_eq!(code, 1);
        assert!(
            text.contains("the anchor records 4 rows, the log has 3"),
            "{text}"
        );
    }

    #[test]
    fn head_and_expect_head_of_a_missing_log() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("audit.db");
        let zeros = "0".repeat(64);
        let (code, text) = run_to_string(&["head"], &db, false);
        assert_eq!(code, 0);
        assert_eq!(text.lines().next(), Some(format!("0:{zeros}").as_str()));
        let (code, text) = run_to_string(&["head"], &db, true);
        let report: Value = serde_json::from_str(&text).expect("json");
        assert_eq!(
            (code, report),
            (0, json!({ "count": 0, "hash": zeros, "missing": true }))
        );
        let (code, _) = run_to_string(
            &["verify", "--expect-head", &format!("0:{zeros}")],
            &db,
            false,
        );
        assert_eq!(code, 0);
        // A log that had rows and is now gone does not extend their anchor.
        let anchor = format!("2:{}", "a".repeat(64));
        let (code, text) = run_to_string(&["verify", "--expect-head", &anchor], &db, false);
        assert_eq!(code, 1);
        assert!(
            text.starts_with(&format!("no audit log at {}: ", db.display())),
            "{text}"
        );
        assert!(
            text.contains("the anchor records 2 rows, the log has 0"),
            "{text}"
        );
        let (code, text) = run_to_string(&["verify", "--expect-head", &"a".repeat(64)], &db, true);
        let report: Value = serde_json::from_str(&text).expect("json");
        assert_eq!(code, 1);
        assert_eq!(
            (&report["intact"], &report["missing"], &report["problem"]),
            (&json!(false), &json!(true), &json!("rewritten"))
        );
        assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 0);
    }

    #[test]
    fn a_bad_anchor_is_a_usage_error() {
        for bad in ["", "3", "3:abc", "x:", "1:2:", "3:'); DROP TABLE audit; --"] {
            let err = parse(&["verify", "--expect-head", bad]).expect_err(bad);
            assert_eq!(
                err.kind(),
                clap::error::ErrorKind::ValueValidation,
                "{bad}: {err}"
            );
            assert!(err.to_string().contains("invalid anchor"), "{bad}: {err}");
        }
        assert!(matches!(
            parse(&["verify"]),
            Ok(AuditCommand::Verify { expect_head: None })
        ));
    }
}

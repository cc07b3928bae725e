use super::*;
use crate::offload::Job;

fn req<'a>(callid: &'a str, cseq: u32) -> RegisterInfo<'a> {
    RegisterInfo {
        callid,
        cseq,
        user_agent: "ua",
        received: None,
    }
}

fn cu(contact: &str, expires: u32, q: u16) -> ContactUpdate<'_> {
    ContactUpdate {
        contact,
        expires,
        q,
    }
}

fn contacts(r: &Record) -> Vec<&str> {
    r.bindings.iter().map(|b| b.contact.as_ref()).collect()
}

const NOW: u64 = 1_700_000_000;

fn mode(db_mode: i64) -> UsrlocConfig {
    UsrlocConfig {
        db_mode,
        ..UsrlocConfig::default()
    }
}

/// A sink whose writes the test reads back.
fn sink() -> (DbSink, crossbeam_channel::Receiver<DbWrite>) {
    let (tx, rx) = crossbeam_channel::bounded(1000);
    (DbSink::new(tx), rx)
}

fn save(
    ul: &Usrloc,
    cfg: &UsrlocConfig,
    db: &DbSink,
    key: &str,
    r: RegisterInfo<'_>,
    c: &[ContactUpdate<'_>],
    now: u64,
) -> Result<Option<(Record, Vec<Change>)>, Reject> {
    ul.update("location", key.as_bytes(), cfg, db, |cur, room| {
        let empty = Record::new(key, "");
        cur.unwrap_or(&empty).apply(&r, c, now, room).map(Some)
    })
}

#[test]
fn apply_adds_refreshes_removes_and_orders_by_q() {
    let r = Record::new("alice", "");
    let (r, ch) = r
        .apply(
            &req("c1", 1),
            &[cu("sip:a@1.1.1.1", 60, 500), cu("sip:b@2.2.2.2", 60, 900)],
            NOW,
            10,
        )
        .unwrap();
    assert_eq!(contacts(&r), ["sip:a@1.1.1.1", "sip:b@2.2.2.2"]);
    assert_eq!(ch.len(), 2);
    let order: Vec<&str> = r
        .ordered(NOW, false)
        .iter()
        .map(|&i| r.bindings[i].contact.as_ref())
        .collect();
    assert_eq!(order, ["sip:b@2.2.2.2", "sip:a@1.1.1.1"]);
    // Same Call-ID, older or equal CSeq: ignored.
    let (r2, ch) = r
        .apply(&req("c1", 1), &[cu("sip:a@1.1.1.1", 0, 0)], NOW, 10)
        .unwrap();
    assert_eq!(contacts(&r2).len(), 2);
    assert!(ch.is_empty());
    // Higher CSeq, expires 0: removed (URI equality per §19.1.4: host case does not matter).
    let (r3, ch) = r
        .apply(&req("c1", 2), &[cu("sip:a@1.1.1.1", 0, 0)], NOW, 10)
        .unwrap();
    assert_eq!(contacts(&r3), ["sip:b@2.2.2.2"]);
    assert_eq!(ch, vec![Change::Delete("sip:a@1.1.1.1".into())]);
    // Another Call-ID always wins; the refresh updates expires.
    let (r4, _) = r
        .apply(
            &req("other", 1),
            &[cu("sip:b@2.2.2.2;newparam=1", 120, 100)],
            NOW + 10,
            10,
        )
        .unwrap();
    let b = r4
        .bindings
        .iter()
        .find(|b| b.callid.as_ref() == "other")
        .unwrap();
    assert_eq!(b.expires, NOW + 130);
    assert_eq!(b.q, 100);
    assert_eq!(r4.bindings.len(), 2);
}

#[test]
fn star_removes_all_but_newer_same_callid() {
    let (r, _) = Record::new("alice", "")
        .apply(&req("c1", 5), &[cu("sip:a@h", 60, 0)], NOW, 10)
        .unwrap();
    let (r, _) = r
        .apply(&req("c2", 1), &[cu("sip:b@h", 60, 0)], NOW, 10)
        .unwrap();
    let (gone, ch) = r.remove_all(&req("c1", 3), NOW);
    // c1's binding has CSeq 5 > 3: kept; c2's is removed.
    assert_eq!(contacts(&gone), ["sip:a@h"]);
    assert_eq!(ch, vec![Change::Delete("sip:b@h".into())]);
    let (gone, _) = r.remove_all(&req("c1", 6), NOW);
    assert!(gone.bindings.is_empty());
}

#[test]
fn limits_refuse_without_partial_change() {
    let mut r = Record::new("alice", "");
    let many: Vec<String> = (0..MAX_CONTACTS_PER_AOR)
        .map(|i| format!("sip:u@10.0.0.{i}"))
        .collect();
    let ups: Vec<ContactUpdate<'_>> = many.iter().map(|c| cu(c, 60, 0)).collect();
    r = r.apply(&req("c", 1), &ups, NOW, usize::MAX).unwrap().0;
    assert_eq!(r.bindings.len(), MAX_CONTACTS_PER_AOR);
    assert_eq!(
        r.apply(&req("c", 2), &[cu("sip:one@more", 60, 0)], NOW, usize::MAX),
        Err(Reject::TooManyContacts)
    );
    assert_eq!(
        Record::new("b", "").apply(
            &req("c", 1),
            &[cu("sip:x@y", 60, 0), cu("sip:z@y", 60, 0)],
            NOW,
            1
        ),
        Err(Reject::StoreFull)
    );
    let ul = Usrloc::with_limit(1);
    let db = DbSink::default();
    assert!(save(
        &ul,
        &mode(0),
        &db,
        "a",
        req("c", 1),
        &[cu("sip:a@h", 60, 0)],
        NOW
    )
    .is_ok());
    assert_eq!(
        save(
            &ul,
            &mode(0),
            &db,
            "b",
            req("c", 1),
            &[cu("sip:b@h", 60, 0)],
            NOW
        ),
        Err(Reject::StoreFull)
    );
    assert_eq!(ul.binding_count(), 1);
}

#[test]
fn store_reads_hide_expired_and_timer_removes_them() {
    let ul = Usrloc::default();
    let db = DbSink::default();
    let cfg = mode(0);
    save(
        &ul,
        &cfg,
        &db,
        "alice",
        req("c", 1),
        &[cu("sip:a@h", 10, 0), cu("sip:b@h", 100, 0)],
        NOW,
    )
    .unwrap();
    assert_eq!(ul.show("location", b"alice", NOW + 5).unwrap().len(), 2);
    assert_eq!(ul.show("location", b"alice", NOW + 50).unwrap().len(), 1);
    assert_eq!(ul.stats(NOW + 50)[0].expired, 1);
    assert_eq!(ul.timer(NOW + 50, &cfg, &db), 1);
    assert_eq!(ul.binding_count(), 1);
    assert_eq!(ul.timer(NOW + 200, &cfg, &db), 1);
    assert_eq!(ul.binding_count(), 0);
    assert!(ul.show("location", b"alice", NOW).is_none());
    assert_eq!(ul.stats(NOW)[0].records, 0);
}

#[test]
fn db_mode_1_posts_every_change() {
    let ul = Usrloc::default();
    let (db, rx) = sink();
    let cfg = mode(1);
    save(
        &ul,
        &cfg,
        &db,
        "alice",
        req("c", 1),
        &[cu("sip:a@h", 60, 500)],
        NOW,
    )
    .unwrap();
    let w = rx.try_recv().unwrap();
    let DbWrite::Upsert {
        table, keys, row, ..
    } = w
    else {
        panic!("{w:?}")
    };
    assert_eq!(table, "location");
    assert_eq!(
        keys,
        vec![
            ("username".to_string(), "alice".to_string()),
            ("contact".to_string(), "sip:a@h".to_string())
        ]
    );
    let col = |n: &str| {
        row.iter()
            .find(|(c, _)| c == n)
            .and_then(|(_, v)| v.clone())
    };
    assert_eq!(col("expires").as_deref(), Some("2023-11-14 22:14:20"));
    assert_eq!(col("q").as_deref(), Some("0.50"));
    assert_eq!(col("callid").as_deref(), Some("c"));
    assert_eq!(col("cseq").as_deref(), Some("1"));
    assert_eq!(col("user_agent").as_deref(), Some("ua"));
    save(
        &ul,
        &cfg,
        &db,
        "alice",
        req("c", 2),
        &[cu("sip:a@h", 0, 0)],
        NOW,
    )
    .unwrap();
    assert!(matches!(rx.try_recv().unwrap(), DbWrite::Delete { keys, .. } if keys.len() == 2));
    // Expiry by the timer is written through too.
    save(
        &ul,
        &cfg,
        &db,
        "bob",
        req("d", 1),
        &[cu("sip:b@h", 60, 0)],
        NOW,
    )
    .unwrap();
    let _ = rx.try_recv().unwrap();
    assert_eq!(ul.timer(NOW + 61, &cfg, &db), 1);
    assert!(matches!(rx.try_recv().unwrap(), DbWrite::Delete { .. }));
    assert!(rx.try_recv().is_err());
}

#[test]
fn db_mode_2_writes_back_on_the_timer_only() {
    let ul = Usrloc::default();
    let (db, rx) = sink();
    let cfg = mode(2);
    save(
        &ul,
        &cfg,
        &db,
        "alice",
        req("c", 1),
        &[cu("sip:a@h", 60, 0), cu("sip:b@h", 60, 0)],
        NOW,
    )
    .unwrap();
    save(
        &ul,
        &cfg,
        &db,
        "alice",
        req("c", 2),
        &[cu("sip:a@h", 0, 0)],
        NOW,
    )
    .unwrap();
    assert!(rx.try_recv().is_err(), "nothing posted per message");
    ul.timer(NOW + 1, &cfg, &db);
    let writes: Vec<DbWrite> = rx.try_iter().collect();
    assert_eq!(writes.len(), 2, "{writes:?}");
    assert!(
        matches!(&writes[0], DbWrite::Delete { keys, .. } if keys == &vec![("username".to_string(), "alice".to_string())])
    );
    assert!(matches!(&writes[1], DbWrite::Upsert { keys, .. } if keys[1].1 == "sip:b@h"));
    // Nothing changed since: nothing written.
    ul.timer(NOW + 2, &cfg, &db);
    assert!(rx.try_recv().is_err());
    // Expiry makes the AOR dirty; the flush deletes its rows.
    ul.timer(NOW + 100, &cfg, &db);
    let writes: Vec<DbWrite> = rx.try_iter().collect();
    assert_eq!(writes.len(), 1, "{writes:?}");
    assert!(matches!(&writes[0], DbWrite::Delete { .. }));
}

#[test]
fn db_mode_2_keeps_dirty_when_the_queue_refuses() {
    let ul = Usrloc::default();
    let db = DbSink::default(); // no database: every post refused
    let cfg = mode(2);
    save(
        &ul,
        &cfg,
        &db,
        "alice",
        req("c", 1),
        &[cu("sip:a@h", 60, 0)],
        NOW,
    )
    .unwrap();
    ul.flush(&cfg, &db);
    let (db2, rx) = sink();
    assert_eq!(ul.flush(&cfg, &db2), 1);
    assert_eq!(rx.try_iter().count(), 2);
}

#[test]
fn load_rows_rebuilds_a_table() {
    let ul = Usrloc::default();
    let cfg = UsrlocConfig {
        use_domain: true,
        ..mode(1)
    };
    let row =
        |user: &str, contact: &str, expires: &str, q: &str, flags: &str| -> Vec<Option<String>> {
            vec![
                Some(user.into()),
                Some("Example.COM".into()),
                Some(contact.into()),
                Some(expires.into()),
                Some(q.into()),
                Some("cid".into()),
                Some("7".into()),
                Some(flags.into()),
                Some("phone".into()),
                None,
                Some("2023-11-14 22:00:00".into()),
            ]
        };
    let rows = vec![
        row("alice", "sip:a@h", "2023-11-14 23:00:00", "0.7", "0"),
        row("alice", "sip:b@h", "2023-11-14 22:00:00", "1", "0"), // expired
        row("alice", "sip:p@h", "1970-01-01 00:00:00", "0", "128"), // permanent
        vec![None, None, None],
    ];
    assert_eq!(ul.load_rows("location", &cfg, &rows, NOW), 2);
    let b = ul.show("location", b"alice@example.com", NOW).unwrap();
    assert_eq!(b.len(), 2);
    assert_eq!(b[0].contact.as_ref(), "sip:a@h");
    assert_eq!(b[0].q, 700);
    assert_eq!(b[0].cseq, 7);
    assert_eq!(b[0].expires_in(NOW), 2800);
    assert!(b[1].is_permanent());
    assert_eq!(b[1].contact_value(NOW), "<sip:p@h>;q=0;expires=0");
    assert_eq!(b[0].fifo_line(NOW), "<sip:a@h>;q=0.70;expires=2800");
    // Loading wrote nothing back.
    assert_eq!(cfg.columns().len(), 11);
}

#[test]
fn select_job_for_db_mode_3() {
    let cfg = UsrlocConfig {
        use_domain: true,
        db_url: "postgres://x/y".into(),
        ..mode(3)
    };
    let Job::Db {
        url,
        table,
        keys,
        columns,
    } = cfg.select_job("location", Some(("alice", "example.com")))
    else {
        panic!()
    };
    assert_eq!(url, "postgres://x/y");
    assert_eq!(table, "location");
    assert_eq!(keys.len(), 2);
    assert_eq!(columns[2], "contact");
}

#[test]
fn management_api() {
    let ul = Usrloc::default();
    let (db, rx) = sink();
    let cfg = mode(1);
    let (key, user, domain) = aor_of_text("Bob@Example.com", false, false);
    assert_eq!(&key[..], b"bob");
    ul.add(
        "location",
        &key,
        &user,
        &domain,
        "sip:bob@10.0.0.9",
        0,
        1000,
        NOW,
        &cfg,
        &db,
    )
    .unwrap();
    ul.add(
        "location",
        &key,
        &user,
        &domain,
        "sip:bob@10.0.0.8",
        30,
        500,
        NOW,
        &cfg,
        &db,
    )
    .unwrap();
    assert_eq!(rx.try_iter().count(), 2);
    let shown = ul.show("location", &key, NOW + 1_000_000).unwrap();
    assert_eq!(shown.len(), 1, "the permanent one survives any time");
    let d = ul.dump(NOW);
    assert_eq!(d[0].table, "location");
    assert_eq!(d[0].aors[0].0, "bob");
    assert_eq!(d[0].aors[0].1.len(), 2);
    assert!(ul.remove_contact("location", &key, "sip:bob@10.0.0.8", &cfg, &db));
    assert!(!ul.remove_contact("location", &key, "sip:nobody@x", &cfg, &db));
    assert!(ul.remove_aor("location", &key, &cfg, &db));
    assert!(!ul.remove_aor("location", &key, &cfg, &db));
    assert_eq!(rx.try_iter().count(), 2);
    assert_eq!(ul.binding_count(), 0);
    assert_eq!(q_text(500), "0.5");
    assert_eq!(q_text(1000), "1");
    assert_eq!(q_text(0), "0");
    assert_eq!(q_text(125), "0.125");
    assert_eq!(q_text(100), "0.1");
    assert_eq!(q_text(120), "0.12");
    assert_eq!(q_text(50), "0.05");
    assert_eq!(q_text(5), "0.005");
    assert_eq!(q_text(1200), "1");
}

#[test]
fn concurrent_saves_of_one_aor_lose_nothing() {
    let ul = std::sync::Arc::new(Usrloc::default());
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let ul = ul.clone();
            std::thread::spawn(move || {
                let db = DbSink::default();
                for i in 0..10 {
                    let c = format!("sip:u@10.0.{t}.{i}");
                    let cid = format!("call-{t}");
                    save(
                        &ul,
                        &mode(0),
                        &db,
                        "shared",
                        req(&cid, i + 1),
                        &[cu(&c, 60, 0)],
                        NOW,
                    )
                    .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(ul.show("location", b"shared", NOW).unwrap().len(), 40);
    assert_eq!(ul.binding_count(), 40);
}

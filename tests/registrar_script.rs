//! registrar `save`/`lookup` run by the interpreter over compiled scripts, against the shared
//! location store, with an environment that records the replies ser would send (status, reason,
//! header lines) and the database work it hands out (the writes posted in db_mode 1/2, the jobs a
//! db_mode 3 script suspends on).
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use controlplane::cfg::compile_str;
use dataplane::offload::{DbSink, DbWrite, Job, JobResult};
use dataplane::script::env::{ActionResult, Env, Target};
use dataplane::script::ir::{Program, Proto};
use dataplane::script::{exec, resume, Ctx, Outcome};
use dataplane::services::Services;
use dataplane::wire::Message;

struct Reply {
    code: u16,
    reason: String,
    headers: String,
}

struct RegEnv {
    services: Services,
    program: Arc<Program>,
    replies: Vec<Reply>,
    logs: Vec<String>,
}

impl RegEnv {
    fn new(script: &str) -> RegEnv {
        RegEnv::with_services(script, Services::default())
    }
    fn with_services(script: &str, services: Services) -> RegEnv {
        let mut program = compile_str("test.cfg", script)
            .unwrap_or_else(|d| panic!("{}", d.render()))
            .program;
        program.options.debug = 9;
        RegEnv {
            services,
            program: Arc::new(program),
            replies: Vec::new(),
            logs: Vec::new(),
        }
    }
    fn last(&self) -> &Reply {
        self.replies.last().expect("a reply")
    }
}

impl Env for RegEnv {
    fn forward(&mut self, _: &mut Ctx, _: &Target<'_>, _: Option<Proto>) -> ActionResult {
        ActionResult::Ret(1)
    }
    fn send(&mut self, _: &mut Ctx, _: &Target<'_>, _: Option<Proto>) -> ActionResult {
        ActionResult::Ret(1)
    }
    fn log(&mut self, _level: i32, msg: &[u8]) {
        self.logs.push(String::from_utf8_lossy(msg).into_owned());
    }
    fn now(&self) -> Instant {
        Instant::now()
    }
    fn reply(&mut self, ctx: &mut Ctx, code: u16, reason: &[u8]) -> ActionResult {
        self.replies.push(Reply {
            code,
            reason: String::from_utf8_lossy(reason).into_owned(),
            headers: String::from_utf8_lossy(&ctx.reply_headers).into_owned(),
        });
        ActionResult::Ret(1)
    }
    fn services(&self) -> Option<&Services> {
        Some(&self.services)
    }
    fn program(&self) -> Option<&Program> {
        Some(&self.program)
    }
}

const MODULES: &str = r#"
loadmodule "sl.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
"#;

const ROUTE: &str = r#"
route {
	if (method == "REGISTER") {
		save("location");
		break;
	};
	if (!lookup("location")) {
		sl_send_reply("404", "Not Found");
		break;
	};
	sl_send_reply("302", "Moved");
}
"#;

fn script(params: &str) -> String {
    format!("{MODULES}{params}{ROUTE}")
}

/// A REGISTER for `to` with `extra` header lines (Contact, Expires…).
fn register(to: &str, call_id: &str, cseq: u32, extra: &str) -> Message {
    let text = format!(
        "REGISTER sip:example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.4:5060;branch=z9hG4bK-{call_id}-{cseq}\r\n\
Max-Forwards: 70\r\n\
To: <{to}>\r\n\
From: <{to}>;tag=72\r\n\
Call-ID: {call_id}\r\n\
CSeq: {cseq} REGISTER\r\n\
User-Agent: test-phone/1.0\r\n\
{extra}\
Content-Length: 0\r\n\r\n"
    );
    Message::parse(Bytes::from(text)).unwrap()
}

fn invite(ruri: &str) -> Message {
    let text = format!(
        "INVITE {ruri} SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bK-inv\r\n\
Max-Forwards: 70\r\n\
To: <{ruri}>\r\n\
From: <sip:caller@example.org>;tag=1\r\n\
Call-ID: inv-1\r\n\
CSeq: 1 INVITE\r\n\
Content-Length: 0\r\n\r\n"
    );
    Message::parse(Bytes::from(text)).unwrap()
}

fn run(env: &mut RegEnv, msg: Message) -> (Ctx, Outcome) {
    let mut ctx = Ctx::new(
        msg,
        "192.0.2.4:5060".parse().unwrap(),
        "192.0.2.1:5060".parse().unwrap(),
        Proto::Udp,
    );
    let program = env.program.clone();
    let out = exec(&program, &mut ctx, env);
    (ctx, out)
}

fn resume_with(env: &mut RegEnv, ctx: &mut Ctx, r: JobResult) -> Outcome {
    let program = env.program.clone();
    resume(&program, ctx, env, r)
}

/// `run`, answering every database write the script waits for (db_mode 1's write-through) as
/// done, after handing it to the services' writer queue so the test sees the rows.
fn run_writing(env: &mut RegEnv, msg: Message) -> (Ctx, Outcome) {
    let (mut ctx, mut out) = run(env, msg);
    while let Outcome::Suspended(Job::DbWrite(w)) = out {
        env.services.db.post(w);
        out = resume_with(env, &mut ctx, JobResult::Rows(vec![]));
    }
    (ctx, out)
}

fn contacts_of(headers: &str) -> Vec<String> {
    headers
        .lines()
        .filter_map(|l| l.strip_prefix("Contact: "))
        .map(str::to_string)
        .collect()
}

fn expires_of(contact: &str) -> u64 {
    contact.rsplit_once(";expires=").unwrap().1.parse().unwrap()
}

#[test]
fn save_replies_200_with_every_binding_and_their_expires() {
    let mut env = RegEnv::new(&script(""));
    run(
        &mut env,
        register(
            "sip:alice@example.com",
            "c1",
            1,
            "Contact: <sip:alice@192.0.2.4:5060>;q=0.5, <sip:alice@198.51.100.7>;expires=120\r\n",
        ),
    );
    let r = env.last();
    assert_eq!((r.code, r.reason.as_str()), (200, "OK"));
    let c = contacts_of(&r.headers);
    assert_eq!(c.len(), 2, "{}", r.headers);
    assert!(
        c[0].starts_with("<sip:alice@192.0.2.4:5060>;q=0.5;expires="),
        "{c:?}"
    );
    assert!(
        (3595..=3600).contains(&expires_of(&c[0])),
        "default_expires: {c:?}"
    );
    assert!(
        c[1].starts_with("<sip:alice@198.51.100.7>;q=0;expires="),
        "{c:?}"
    );
    assert!((115..=120).contains(&expires_of(&c[1])));
    assert!(
        r.headers.contains("\r\nDate: ") && r.headers.contains(" GMT\r\n"),
        "{}",
        r.headers
    );
    // A query (no Contact) lists the same bindings.
    run(&mut env, register("sip:alice@example.com", "c2", 1, ""));
    assert_eq!(contacts_of(&env.last().headers).len(), 2);
}

#[test]
fn expires_header_min_max_and_removal() {
    let mut env = RegEnv::new(&script(
        "modparam(\"registrar\", \"min_expires\", 60)\nmodparam(\"registrar\", \"max_expires\", 600)\n",
    ));
    // The Expires header applies to contacts without their own expires; max caps it.
    run(
        &mut env,
        register(
            "sip:bob@example.com",
            "c",
            1,
            "Contact: <sip:bob@192.0.2.5>\r\nExpires: 7200\r\n",
        ),
    );
    let c = contacts_of(&env.last().headers);
    assert!((595..=600).contains(&expires_of(&c[0])), "{c:?}");
    // Too brief: 423 with Min-Expires, nothing stored.
    run(
        &mut env,
        register(
            "sip:bob@example.com",
            "c",
            2,
            "Contact: <sip:bob@192.0.2.6>;expires=10\r\n",
        ),
    );
    let r = env.last();
    assert_eq!((r.code, r.reason.as_str()), (423, "Interval Too Brief"));
    assert!(r.headers.contains("Min-Expires: 60\r\n"), "{}", r.headers);
    run(&mut env, register("sip:bob@example.com", "c", 3, ""));
    assert_eq!(contacts_of(&env.last().headers).len(), 1);
    // expires=0 removes.
    run(
        &mut env,
        register(
            "sip:bob@example.com",
            "c",
            4,
            "Contact: <sip:bob@192.0.2.5>;expires=0\r\n",
        ),
    );
    assert_eq!(env.last().code, 200);
    assert!(contacts_of(&env.last().headers).is_empty());
}

#[test]
fn older_cseq_is_ignored_and_star_removes_all() {
    let mut env = RegEnv::new(&script(""));
    let c = "Contact: <sip:carol@192.0.2.7>\r\n";
    run(&mut env, register("sip:carol@example.com", "same", 10, c));
    run(
        &mut env,
        register(
            "sip:carol@example.com",
            "other",
            1,
            "Contact: <sip:carol@192.0.2.8>\r\n",
        ),
    );
    // Same Call-ID, lower CSeq, expires 0: ignored, the binding stays.
    run(
        &mut env,
        register(
            "sip:carol@example.com",
            "same",
            9,
            "Contact: <sip:carol@192.0.2.7>;expires=0\r\n",
        ),
    );
    assert_eq!(env.last().code, 200);
    assert_eq!(contacts_of(&env.last().headers).len(), 2);
    // * needs Expires: 0.
    run(
        &mut env,
        register("sip:carol@example.com", "x", 1, "Contact: *\r\n"),
    );
    assert_eq!(env.last().code, 400);
    run(
        &mut env,
        register(
            "sip:carol@example.com",
            "x",
            1,
            "Contact: *, <sip:a@b>\r\nExpires: 0\r\n",
        ),
    );
    assert_eq!(env.last().code, 400);
    run(
        &mut env,
        register(
            "sip:carol@example.com",
            "x",
            1,
            "Contact: *\r\nExpires: 0\r\n",
        ),
    );
    assert_eq!(env.last().code, 200);
    assert!(contacts_of(&env.last().headers).is_empty());
    let (_, _) = run(&mut env, invite("sip:carol@example.com"));
    assert_eq!(env.last().code, 404);
}

#[test]
fn malformed_requests_get_400_with_the_reason() {
    let mut env = RegEnv::new(&script(""));
    run(
        &mut env,
        register(
            "sip:dave@example.com",
            "c",
            1,
            "Contact: <sip:dave@192.0.2.1>;q=2\r\n",
        ),
    );
    assert_eq!(
        (env.last().code, env.last().reason.as_str()),
        (400, "Bad Contact: malformed q")
    );
    run(
        &mut env,
        register(
            "sip:dave@example.com",
            "c",
            1,
            "Contact: <sip:dave@192.0.2.1\r\n",
        ),
    );
    assert_eq!(
        (env.last().code, env.last().reason.as_str()),
        (400, "Bad Contact")
    );
    run(
        &mut env,
        register("sip:example.com", "c", 1, "Contact: <sip:x@192.0.2.1>\r\n"),
    );
    assert_eq!(env.last().code, 400);
    assert!(
        env.last().reason.contains("no user part"),
        "{}",
        env.last().reason
    );
    assert_eq!(env.services.usrloc.binding_count(), 0);
}

#[test]
fn lookup_rewrites_the_uri_and_forks_by_q() {
    let mut env = RegEnv::new(&script(""));
    run(
        &mut env,
        register(
            "sip:erin@example.com",
            "c",
            1,
            "Contact: <sip:erin@10.0.0.1>;q=0.1, <sip:erin@10.0.0.2>;q=0.9, <sip:erin@10.0.0.3>;q=0.5\r\n",
        ),
    );
    // Case-insensitive AOR by default, the domain ignored without use_domain.
    let (ctx, _) = run(&mut env, invite("sip:ERIN@elsewhere.net"));
    assert_eq!(ctx.uri(), b"sip:erin@10.0.0.2");
    let dset: Vec<&[u8]> = ctx.dset().iter().collect();
    assert_eq!(dset, vec![&b"sip:erin@10.0.0.3"[..], b"sip:erin@10.0.0.1"]);
    assert_eq!(env.last().code, 302);
    let (ctx, _) = run(&mut env, invite("sip:nobody@example.com"));
    assert_eq!(ctx.uri(), b"sip:nobody@example.com");
    assert_eq!(env.last().code, 404);
}

#[test]
fn lookup_parameters_append_branches_desc_time_order_use_domain_case_sensitive() {
    let mut env = RegEnv::new(&script(
        "modparam(\"registrar\", \"append_branches\", 0)\nmodparam(\"registrar\", \"use_domain\", 1)\nmodparam(\"registrar\", \"case_sensitive\", 1)\n",
    ));
    run(
        &mut env,
        register(
            "sip:Frank@example.com",
            "c",
            1,
            "Contact: <sip:f@10.0.0.1>;q=0.1, <sip:f@10.0.0.2>;q=0.9\r\n",
        ),
    );
    let (ctx, _) = run(&mut env, invite("sip:Frank@EXAMPLE.com"));
    assert_eq!(ctx.uri(), b"sip:f@10.0.0.2");
    assert!(ctx.dset().is_empty(), "append_branches=0 keeps one contact");
    run(&mut env, invite("sip:frank@example.com"));
    assert_eq!(env.last().code, 404, "case-sensitive user");
    run(&mut env, invite("sip:Frank@example.org"));
    assert_eq!(
        env.last().code,
        404,
        "use_domain: another domain is another AOR"
    );

    let mut env = RegEnv::new(&script("modparam(\"registrar\", \"desc_time_order\", 1)\n"));
    run(
        &mut env,
        register(
            "sip:gina@example.com",
            "c",
            1,
            "Contact: <sip:g@10.0.0.1>;q=1\r\n",
        ),
    );
    std::thread::sleep(std::time::Duration::from_millis(1100));
    run(
        &mut env,
        register(
            "sip:gina@example.com",
            "c",
            2,
            "Contact: <sip:g@10.0.0.2>;q=0.1\r\n",
        ),
    );
    let (ctx, _) = run(&mut env, invite("sip:gina@example.com"));
    assert_eq!(ctx.uri(), b"sip:g@10.0.0.2", "freshest first");
    assert_eq!(
        ctx.dset().iter().collect::<Vec<_>>(),
        vec![&b"sip:g@10.0.0.1"[..]]
    );
}

#[test]
fn several_tables_are_separate() {
    let script = format!(
        "{MODULES}route {{ if (method == \"REGISTER\") {{ if (uri =~ \"aliases\") {{ save(\"aliases\"); }} else {{ save(\"location\"); }}; break; }}; lookup(\"aliases\"); if (!lookup(\"location\")) {{ sl_send_reply(\"404\", \"Not Found\"); break; }}; sl_send_reply(\"302\", \"Moved\"); }}"
    );
    let mut env = RegEnv::new(&script);
    let mut alias = register(
        "sip:sales@example.com",
        "a",
        1,
        "Contact: <sip:henry@example.com>\r\n",
    );
    alias.set_request_uri(b"sip:aliases.example.com").unwrap();
    let alias = Message::parse(alias.to_bytes()).unwrap();
    run(&mut env, alias);
    run(
        &mut env,
        register(
            "sip:henry@example.com",
            "h",
            1,
            "Contact: <sip:henry@10.1.1.1>\r\n",
        ),
    );
    let (ctx, _) = run(&mut env, invite("sip:sales@example.com"));
    assert_eq!(ctx.uri(), b"sip:henry@10.1.1.1");
    let stats = env
        .services
        .usrloc
        .stats(dataplane::usrloc::time::now_unix());
    assert_eq!(
        stats
            .iter()
            .map(|s| (s.table.as_str(), s.contacts))
            .collect::<Vec<_>>(),
        vec![("aliases", 1), ("location", 1)]
    );
}

fn db_services() -> (Services, crossbeam_channel::Receiver<DbWrite>) {
    let (tx, rx) = crossbeam_channel::bounded(100);
    (
        Services {
            db: DbSink::new(tx),
            ..Services::default()
        },
        rx,
    )
}

#[test]
fn db_mode_1_writes_through_before_the_200() {
    let (services, rx) = db_services();
    let mut env =
        RegEnv::with_services(&script("modparam(\"usrloc\", \"db_mode\", 1)\n"), services);
    let ivy = |cseq| {
        register(
            "sip:ivy@example.com",
            "c",
            cseq,
            "Contact: <sip:ivy@10.0.0.1>\r\n",
        )
    };
    let (mut ctx, out) = run(&mut env, ivy(1));
    // The 200 waits for the write (an acknowledged binding is in the database).
    let Outcome::Suspended(Job::DbWrite(w)) = out else {
        panic!("{out:?}")
    };
    assert!(
        matches!(&w, DbWrite::Upsert { table, keys, .. } if table == "location" && keys[0].1 == "ivy")
    );
    assert!(env.replies.is_empty());
    assert!(rx.try_recv().is_err());
    resume_with(&mut env, &mut ctx, JobResult::Rows(vec![]));
    assert_eq!(env.last().code, 200);
    // A database that refuses the write: the REGISTER is answered all the same and the write
    // waits in the background writer's queue.
    let (mut ctx, out) = run(&mut env, ivy(2));
    assert!(
        matches!(out, Outcome::Suspended(Job::DbWrite(_))),
        "{out:?}"
    );
    resume_with(&mut env, &mut ctx, JobResult::Failed("db down".into()));
    assert_eq!(env.last().code, 200);
    let queued: Vec<DbWrite> = rx.try_iter().collect();
    assert_eq!(queued.len(), 1, "{queued:?}");
}

#[test]
fn db_mode_2_posts_nothing_per_message() {
    let (services, rx) = db_services();
    let mut env =
        RegEnv::with_services(&script("modparam(\"usrloc\", \"db_mode\", 2)\n"), services);
    run(
        &mut env,
        register(
            "sip:jack@example.com",
            "c",
            1,
            "Contact: <sip:jack@10.0.0.1>\r\n",
        ),
    );
    assert_eq!(env.last().code, 200);
    assert!(rx.try_recv().is_err());
    let cfg = dataplane::usrloc::UsrlocConfig::from_program(Some(&env.program));
    assert_eq!(cfg.db_mode, 2);
    env.services
        .usrloc
        .timer(dataplane::usrloc::time::now_unix(), &cfg, &env.services.db);
    assert_eq!(
        rx.try_iter().count(),
        2,
        "delete + upsert of the changed AOR"
    );
}

#[test]
fn db_mode_3_save_selects_writes_then_replies_and_lookup_reads_the_db() {
    let mut env = RegEnv::new(&script(
        "modparam(\"usrloc\", \"db_mode\", 3)\nmodparam(\"usrloc\", \"db_url\", \"postgres://ser@127.0.0.1/ser\")\n",
    ));
    let (mut ctx, out) = run(
        &mut env,
        register(
            "sip:kim@example.com",
            "c",
            5,
            "Contact: <sip:kim@10.0.0.1>;expires=300\r\n",
        ),
    );
    let Outcome::Suspended(Job::Db {
        url,
        table,
        keys,
        columns,
    }) = out
    else {
        panic!("{out:?}")
    };
    assert_eq!(
        (url.as_str(), table.as_str()),
        ("postgres://ser@127.0.0.1/ser", "location")
    );
    assert_eq!(keys, vec![("username".to_string(), "kim".to_string())]);
    assert!(env.replies.is_empty());
    // The DB has one older binding of another phone.
    let old = dataplane::usrloc::time::datetime(dataplane::usrloc::time::now_unix() + 100);
    let row = vec![
        Some("kim".into()),
        Some("".into()),
        Some("sip:kim@10.0.0.9".into()),
        Some(old),
        Some("1.00".into()),
        Some("other".into()),
        Some("1".into()),
        Some("0".into()),
        Some("".into()),
        None,
        None,
    ];
    assert_eq!(columns.len(), row.len());
    let out = resume_with(&mut env, &mut ctx, JobResult::Rows(vec![row.clone()]));
    let Outcome::Suspended(Job::DbWrite(DbWrite::Upsert { keys, row: w, .. })) = out else {
        panic!("{out:?}")
    };
    assert_eq!(keys[1].1, "sip:kim@10.0.0.1");
    assert!(w
        .iter()
        .any(|(c, v)| c == "cseq" && v.as_deref() == Some("5")));
    assert!(env.replies.is_empty(), "no reply before the write is done");
    let out = resume_with(&mut env, &mut ctx, JobResult::Rows(vec![]));
    assert!(matches!(out, Outcome::Done(_)), "{out:?}");
    assert_eq!(env.last().code, 200);
    assert_eq!(contacts_of(&env.last().headers).len(), 2);
    assert_eq!(
        env.services.usrloc.binding_count(),
        0,
        "db_mode 3 keeps nothing in memory"
    );

    // A failed write answers 500.
    let (mut ctx, _) = run(
        &mut env,
        register(
            "sip:kim@example.com",
            "c",
            6,
            "Contact: <sip:kim@10.0.0.2>\r\n",
        ),
    );
    resume_with(&mut env, &mut ctx, JobResult::Rows(vec![]));
    resume_with(&mut env, &mut ctx, JobResult::Failed("db down".into()));
    assert_eq!(env.last().code, 500);

    // lookup: select, then the request URI is the DB's contact.
    let (mut ctx, out) = run(&mut env, invite("sip:kim@example.com"));
    assert!(matches!(out, Outcome::Suspended(Job::Db { .. })), "{out:?}");
    resume_with(&mut env, &mut ctx, JobResult::Rows(vec![row]));
    assert_eq!(ctx.uri(), b"sip:kim@10.0.0.9");
    assert_eq!(env.last().code, 302);
    let (mut ctx, _) = run(&mut env, invite("sip:kim@example.com"));
    resume_with(&mut env, &mut ctx, JobResult::Rows(vec![]));
    assert_eq!(env.last().code, 404);
}

#[test]
fn start_jobs_load_the_tables_the_script_uses() {
    let env = RegEnv::new(&format!(
        "{MODULES}modparam(\"usrloc\", \"db_mode\", 2)\nroute {{ save(\"location\"); lookup(\"aliases\"); lookup(\"location\"); }}"
    ));
    assert_eq!(
        dataplane::modules::registrar::script_tables(&env.program),
        ["aliases", "location"]
    );
    let jobs = dataplane::modules::usrloc::start_jobs(&env.program);
    assert_eq!(jobs.len(), 2);
    assert!(
        matches!(&jobs[1], (t, Job::Db { table, keys, .. }) if t == "location" && table == "location" && keys.is_empty())
    );
    let env = RegEnv::new(&script(""));
    assert!(
        dataplane::modules::usrloc::start_jobs(&env.program).is_empty(),
        "db_mode 0 loads nothing"
    );
}

/// A table standing in for the database: the writes applied in order, read back as rows.
#[derive(Default)]
struct FakeTable {
    rows: Vec<Vec<(String, Option<String>)>>,
}

impl FakeTable {
    fn apply(&mut self, w: DbWrite) {
        let matches = |row: &Vec<(String, Option<String>)>, keys: &[(String, String)]| {
            keys.iter().all(|(k, v)| {
                row.iter()
                    .any(|(c, x)| c == k && x.as_deref() == Some(v.as_str()))
            })
        };
        match w {
            DbWrite::Upsert { keys, row, .. } => {
                self.rows.retain(|r| !matches(r, &keys));
                let mut r: Vec<(String, Option<String>)> =
                    keys.into_iter().map(|(k, v)| (k, Some(v))).collect();
                r.extend(row);
                self.rows.push(r);
            }
            DbWrite::Delete { keys, .. } => self.rows.retain(|r| !matches(r, &keys)),
            DbWrite::Insert { row, .. } => self.rows.push(row),
        }
    }
    fn select(&self, columns: &[String]) -> Vec<Vec<Option<String>>> {
        self.rows
            .iter()
            .map(|r| {
                columns
                    .iter()
                    .map(|c| r.iter().find(|(n, _)| n == c).and_then(|(_, v)| v.clone()))
                    .collect()
            })
            .collect()
    }
}

#[test]
fn bindings_survive_a_restart_through_the_written_rows() {
    for mode in [1, 2] {
        let (services, rx) = db_services();
        let cfg_text = script(&format!("modparam(\"usrloc\", \"db_mode\", {mode})\n"));
        let mut env = RegEnv::with_services(&cfg_text, services);
        run_writing(
            &mut env,
            register(
                "sip:lee@example.com",
                "c",
                1,
                "Contact: <sip:lee@10.0.0.1>;q=0.3, <sip:lee@10.0.0.2>;q=0.6\r\n",
            ),
        );
        run_writing(
            &mut env,
            register(
                "sip:lee@example.com",
                "c",
                2,
                "Contact: <sip:lee@10.0.0.1>;expires=0\r\n",
            ),
        );
        run_writing(
            &mut env,
            register(
                "sip:max@example.com",
                "m",
                1,
                "Contact: <sip:max@10.0.0.3>\r\n",
            ),
        );
        let ul = dataplane::usrloc::UsrlocConfig::from_program(Some(&env.program));
        if mode == 2 {
            env.services
                .usrloc
                .timer(dataplane::usrloc::time::now_unix(), &ul, &env.services.db);
        }
        let mut db = FakeTable::default();
        for w in rx.try_iter() {
            db.apply(w);
        }
        // "Restart": a new server loads the table and finds the bindings.
        let mut env2 = RegEnv::new(&cfg_text);
        let (table, job) = dataplane::modules::usrloc::start_jobs(&env2.program).remove(0);
        let Job::Db { columns, .. } = job else {
            panic!()
        };
        let rows = db.select(&columns);
        assert_eq!(
            env2.services
                .usrloc
                .load_rows(&table, &ul, &rows, dataplane::usrloc::time::now_unix()),
            2,
            "mode {mode}"
        );
        let (ctx, _) = run(&mut env2, invite("sip:lee@example.com"));
        assert_eq!(ctx.uri(), b"sip:lee@10.0.0.2", "mode {mode}");
        assert!(ctx.dset().is_empty());
        let (ctx, _) = run(&mut env2, invite("sip:max@example.com"));
        assert_eq!(ctx.uri(), b"sip:max@10.0.0.3");
    }
}

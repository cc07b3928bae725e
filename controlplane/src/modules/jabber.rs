//! Module jabber's network half: the SIP-XMPP gateway's client connections (XMPP c2s, RFC 6120/
//! 6121, XEP-0045 for rooms), one per SIP user with a Jabber account, on a thread of its own
//! (`ser-jabber`, a tokio runtime started by the first [`JabberJob`]).
//!
//! - The pool: at most `workers * max_jobs` connections (SER's worker processes and their jobs);
//!   a command for a new user beyond that fails ("gateway full"). A connection unused for
//!   `cache_time` seconds is closed (checked every `sleep_time`); `jab_go_offline` closes it at
//!   once.
//! - Login: TCP to `jaddress:jport` (at most `delay_time` seconds, the time SER kept a message
//!   waiting for its connection, and never over 30 s since the script waits), stream to the `jab_id`'s domain, SASL PLAIN, resource bind,
//!   session, available presence. TLS: when the server offers STARTTLS (RFC 6120 §5) the
//!   gateway takes it before SASL, and the server's certificate must chain to a CA of the
//!   `tls_ca` PEM file and name the Jabber domain (rustls, ring; no OpenSSL); a failed check
//!   or a refused STARTTLS fails the login with the reason in the log. A server that offers no
//!   STARTTLS is spoken to in plaintext (SER spoke plaintext only).
//! - Reconnects: a lost connection (the server stopped, a stream error, malformed XML — logged,
//!   never a panic) is dropped; the next command logs in again, and an on-line user's
//!   connection (`jab_go_online`) is re-opened every `check_time` seconds until it is back.
//! - IM transports (SER's aliases to AIM, ICQ, MSN, Yahoo): a transport is a JID without `@`
//!   whose domain starts `aim.`, `icq`, `msn.` or `yahoo.` (SER's prefixes). After login the
//!   roster is fetched; a transport on it is *allowed* (the user registered with it), one that
//!   sent available presence is *ready*. A message to `user@<transport>` goes at once when
//!   ready, waits (at most `delay_time`, ≤ 30 s, 64 per connection) while only allowed or
//!   while the roster is not known yet, and is refused when the transport is not on the roster
//!   ("not registered with the IM gateway"). Roster pushes add and remove transports. SER's
//!   `sip_jab` tables `aim`, `icq`, `msn`, `yahoo` were never read by its module, nor here: the
//!   registration with a transport lives on the XMPP server.
//! - Inbound: XMPP messages become SIP MESSAGEs through tm (`TmShared::uac`) to the user's
//!   `home` (proxy or this server, so the script routes them); presence goes to
//!   [`dataplane::modules::jabber::Presences`] and pa notifies the watchers; when a session ends
//!   (lost, idle, off line) the users it saw available are closed for the watchers until a
//!   session sees them again.
//!
//! Stanzas are cut from the stream by a small framer ([`Framer`]: depth counting with quoted
//! attributes, bounded size) and each is parsed by roxmltree. tokio-xmpp was not used: its
//! current release brings its own DNS resolver and TLS stack versions beside ours, and the
//! gateway needs only these few stanzas.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use base64::Engine as _;
use dataplane::modules::jabber::{bare, JabberJob, JabberOp, JabberSettings, Presences};
use dataplane::offload::JobResult;
use dataplane::proxy::server::Shared;
use dataplane::ser_log;
use dataplane::shard::log::{L_DBG, L_ERR, L_NOTICE, L_WARN};
use dataplane::txn::table::{UacRequest, UacResult};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// The resource the gateway binds (SER's).
const RESOURCE: &str = "serXjab";
/// Largest stanza accepted; a bigger one resets the connection.
const MAX_STANZA: usize = 256 * 1024;
/// Commands waiting for the gateway at most.
const QUEUE: usize = 4096;
/// The id of the gateway's roster request.
const ROSTER_ID: &str = "roster1";

type Done = Box<dyn FnOnce(JobResult) + Send>;

/// A connection to the Jabber server: TCP, or TLS over it after STARTTLS.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}
type Conn = Box<dyn Io>;

struct Cmd {
    job: JabberJob,
    done: Done,
}

static SHARED: OnceLock<Weak<Shared>> = OnceLock::new();
static GATEWAY: OnceLock<Option<mpsc::Sender<Cmd>>> = OnceLock::new();

/// Gives the gateway the proxy it delivers SIP requests and presence to (once, at start-up).
pub fn attach(shared: Weak<Shared>) {
    let _ = SHARED.set(shared);
}

fn shared() -> Option<Arc<Shared>> {
    SHARED.get().and_then(Weak::upgrade)
}

/// Hands `job` to the gateway; `done` gets the answer (at once when the gateway cannot take it).
pub fn submit(job: JabberJob, done: impl FnOnce(JobResult) + Send + 'static) {
    let tx = GATEWAY.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Cmd>(QUEUE);
        match std::thread::Builder::new()
            .name("ser-jabber".into())
            .spawn(move || run(rx))
        {
            Ok(_) => Some(tx),
            Err(e) => {
                ser_log!(L_ERR, "jabber: cannot start the gateway thread: {e}");
                None
            }
        }
    });
    let Some(tx) = tx else {
        done(JobResult::Failed(
            "jabber: the gateway is not running".into(),
        ));
        return;
    };
    if let Err(e) = tx.try_send(Cmd {
        job,
        done: Box::new(done),
    }) {
        let c = match e {
            mpsc::error::TrySendError::Full(c) | mpsc::error::TrySendError::Closed(c) => c,
        };
        (c.done)(JobResult::Failed(
            "jabber: the gateway is overloaded".into(),
        ));
    }
}

/// What a connection task hears.
enum Input {
    Cmd(Cmd),
    /// From the reader of session `gen`.
    Xmpp(u64, Result<String, String>),
}

/// A connection task's handle in the pool.
struct Handle {
    tx: mpsc::UnboundedSender<Input>,
    id: u64,
}

/// A connection task that ended, with the commands it had not taken yet.
struct Gone {
    sip_id: String,
    id: u64,
    left: Vec<Cmd>,
}

fn run(mut rx: mpsc::Receiver<Cmd>) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            while let Some(c) = rx.blocking_recv() {
                (c.done)(JobResult::Failed(format!("jabber: no runtime: {e}")));
            }
            return;
        }
    };
    rt.block_on(async move {
        let mut pool: HashMap<String, Handle> = HashMap::new();
        let (gone_tx, mut gone_rx) = mpsc::unbounded_channel::<Gone>();
        let mut next_id = 0u64;
        loop {
            let cmds: Vec<Cmd> = tokio::select! {
                c = rx.recv() => match c { Some(c) => vec![c], None => break },
                g = gone_rx.recv() => match g {
                    Some(g) => {
                        if pool.get(&g.sip_id).is_some_and(|h| h.id == g.id) {
                            pool.remove(&g.sip_id);
                        }
                        g.left
                    }
                    None => Vec::new(),
                },
            };
            for c in cmds {
                let sip_id = c.job.sip_id.clone();
                if !pool.contains_key(&sip_id) {
                    if matches!(c.job.op, JabberOp::GoOffline) {
                        // Nothing open: off line already.
                        (c.done)(JobResult::Rows(vec![]));
                        continue;
                    }
                    if pool.len() >= c.job.settings.max_connections {
                        ser_log!(
                            L_WARN,
                            "jabber: {} connections open (workers * max_jobs): {sip_id} refused",
                            pool.len()
                        );
                        (c.done)(JobResult::Failed("jabber: the gateway is full".into()));
                        continue;
                    }
                    next_id += 1;
                    let (tx, crx) = mpsc::unbounded_channel();
                    tokio::spawn(connection(
                        sip_id.clone(),
                        next_id,
                        tx.clone(),
                        crx,
                        gone_tx.clone(),
                    ));
                    pool.insert(sip_id.clone(), Handle { tx, id: next_id });
                }
                if let Some(h) = pool.get(&sip_id) {
                    if let Err(e) = h.tx.send(Input::Cmd(c)) {
                        if let Input::Cmd(c) = e.0 {
                            (c.done)(JobResult::Failed("jabber: connection gone".into()));
                        }
                    }
                }
            }
        }
    });
}

/// One logged-in XMPP session.
struct Session {
    w: tokio::io::WriteHalf<Conn>,
    reader: tokio::task::JoinHandle<()>,
    gen: u64,
    /// Our full JID.
    jid: String,
    /// Rooms joined: bare room JID → nickname.
    rooms: HashMap<String, String>,
    /// Jabber users whose presence this session reported available.
    seen_open: std::collections::HashSet<String>,
    /// IM transports on the user's roster (SER's `allowed`, [`network`] bits).
    allowed: u8,
    /// IM transports that sent available presence (SER's `ready`).
    ready: u8,
    /// The roster answer was seen, so `allowed` is known.
    roster: bool,
    /// Messages to a transport that is allowed (or not known yet) but not on line: they wait
    /// for it, each until its deadline (SER's message queue of `delay_time`).
    waiting: Vec<Waiting>,
}

/// A message held for an IM transport.
struct Waiting {
    to: String,
    body: String,
    until: Instant,
    done: Done,
}

/// Messages that wait for IM transports, per connection, at most.
const WAITING: usize = 64;

/// SER's IM transports, recognised by the prefix of the transport's domain (XJ_AIM_NAME…).
const NETWORKS: [(&str, u8); 4] = [("aim.", 1), ("icq", 2), ("msn.", 4), ("yahoo.", 8)];

/// The transport bit of an address's domain (`user@icq.example` or the transport's own
/// `icq.example`), 0 for plain Jabber.
fn network(jid: &str) -> u8 {
    let b = bare(jid);
    let domain = b.rsplit_once('@').map_or(b.as_str(), |(_, d)| d);
    let d = domain.to_ascii_lowercase();
    NETWORKS
        .iter()
        .find(|(p, _)| d.starts_with(p))
        .map_or(0, |(_, bit)| *bit)
}

impl Drop for Session {
    fn drop(&mut self) {
        self.reader.abort();
        for w in self.waiting.drain(..) {
            (w.done)(JobResult::Failed(format!(
                "jabber: the connection was lost before the IM gateway of {} came on line",
                w.to
            )));
        }
        // What this session saw can no longer be vouched for (SER notified `terminated`):
        // watchers see those users closed until a session reports them again.
        if let Some(sh) = shared() {
            let p = sh.services.store::<Presences>();
            for jid in self.seen_open.drain() {
                if p.set(&jid, false) {
                    dataplane::modules::pa::jabber_changed(&sh, &jid);
                }
            }
        }
    }
}

impl Session {
    async fn send(&mut self, xml: &str) -> Result<(), String> {
        self.w
            .write_all(xml.as_bytes())
            .await
            .map_err(|e| format!("jabber: write to the Jabber server failed: {e}"))
    }

    /// Sends the held messages whose transport came on line, refuses those whose transport
    /// the roster does not have, and those past their deadline (SER: "not registered with
    /// this IM gateway", "something wrong during transmitting").
    async fn flush(&mut self, sip_id: &str) -> Result<(), String> {
        let now = Instant::now();
        let mut keep = Vec::new();
        for w in std::mem::take(&mut self.waiting) {
            let net = network(&w.to);
            if self.ready & net != 0 {
                let r = self.send(&chat(&w.to, &w.body)).await;
                let lost = r.is_err();
                (w.done)(match r {
                    Ok(()) => JobResult::Rows(vec![]),
                    Err(e) => JobResult::Failed(e),
                });
                if lost {
                    return Err("write failed".into());
                }
            } else if self.roster && self.allowed & net == 0 {
                ser_log!(
                    L_WARN,
                    "jabber: {sip_id} is not registered with the IM gateway of {}",
                    w.to
                );
                (w.done)(JobResult::Failed(format!(
                    "jabber: {sip_id} is not registered with the IM gateway of {}",
                    w.to
                )));
            } else if now >= w.until {
                ser_log!(
                    L_WARN,
                    "jabber: {sip_id}: the IM gateway of {} did not come on line in time",
                    w.to
                );
                (w.done)(JobResult::Failed(format!(
                    "jabber: the IM gateway of {} is not on line",
                    w.to
                )));
            } else {
                keep.push(w);
            }
        }
        self.waiting = keep;
        Ok(())
    }

    /// Takes the transports of roster `items` (no `@` in the JID) into `allowed`.
    fn roster_items(&mut self, query: roxmltree::Node) {
        for item in query.children().filter(|c| c.has_tag_name("item")) {
            let Some(jid) = item.attribute("jid") else {
                continue;
            };
            if jid.contains('@') {
                continue;
            }
            let net = network(jid);
            if item.attribute("subscription") == Some("remove") {
                self.allowed &= !net;
                self.ready &= !net;
            } else {
                self.allowed |= net;
            }
        }
    }
}

/// A chat message stanza.
fn chat(to: &str, body: &str) -> String {
    format!(
        "<message to='{}' type='chat'><body>{}</body></message>",
        esc(to),
        esc(body)
    )
}

/// The connection of one SIP user: takes its commands in order, logs in when needed, delivers
/// what the server sends.
async fn connection(
    sip_id: String,
    id: u64,
    me: mpsc::UnboundedSender<Input>,
    mut rx: mpsc::UnboundedReceiver<Input>,
    gone: mpsc::UnboundedSender<Gone>,
) {
    let mut session: Option<Session> = None;
    let mut settings: Option<Arc<JabberSettings>> = None;
    let mut login: Option<(String, String, String)> = None; // jab_id, passwd, home
    let mut online = false;
    let mut last_used = Instant::now();
    let mut last_try = Instant::now();
    let mut gen = 0u64;
    loop {
        let mut tick = Duration::from_secs(
            settings
                .as_ref()
                .map_or(20, |s| s.sleep_time.min(s.check_time))
                .clamp(1, 600),
        );
        // A message held for an IM transport is answered at its deadline.
        if let Some(first) = session
            .as_ref()
            .and_then(|x| x.waiting.iter().map(|w| w.until).min())
        {
            tick = tick.min(
                first
                    .saturating_duration_since(Instant::now())
                    .max(Duration::from_millis(50)),
            );
        }
        let input = match tokio::time::timeout(tick, rx.recv()).await {
            Ok(Some(i)) => Some(i),
            Ok(None) => break,
            Err(_) => None,
        };
        let Some(s) = settings.clone() else {
            // The first input is always a command (it made this task).
            match input {
                Some(Input::Cmd(c)) => {
                    settings = Some(Arc::clone(&c.job.settings));
                    handle_cmd(
                        c,
                        &sip_id,
                        &me,
                        &mut session,
                        &mut login,
                        &mut online,
                        &mut gen,
                    )
                    .await;
                    last_used = Instant::now();
                    if session.is_none() && !online {
                        break;
                    }
                }
                _ => break,
            }
            continue;
        };
        match input {
            Some(Input::Cmd(c)) => {
                settings = Some(Arc::clone(&c.job.settings));
                last_used = Instant::now();
                let offline = matches!(c.job.op, JabberOp::GoOffline);
                handle_cmd(
                    c,
                    &sip_id,
                    &me,
                    &mut session,
                    &mut login,
                    &mut online,
                    &mut gen,
                )
                .await;
                if offline || (session.is_none() && !online) {
                    break;
                }
            }
            Some(Input::Xmpp(g, r)) => {
                if session.as_ref().is_none_or(|x| x.gen != g) {
                    continue; // from a session already dropped
                }
                match r {
                    Ok(stanza) => {
                        let home = login.as_ref().map(|l| l.2.clone()).unwrap_or_default();
                        if let Some(x) = session.as_mut() {
                            if let Err(e) = inbound(x, &s, &sip_id, &home, &stanza).await {
                                ser_log!(L_WARN, "jabber: {sip_id}: {e}: connection reset");
                                session = None;
                            }
                        }
                    }
                    Err(e) => {
                        ser_log!(L_WARN, "jabber: {sip_id}: connection lost: {e}");
                        session = None;
                        last_try = Instant::now();
                    }
                }
                if session.is_none() && !online {
                    break;
                }
            }
            None => {}
        }
        if let Some(x) = session.as_mut() {
            if !x.waiting.is_empty() && x.flush(&sip_id).await.is_err() {
                ser_log!(L_WARN, "jabber: {sip_id}: write failed: connection reset");
                session = None;
            }
        }
        let now = Instant::now();
        if now.duration_since(last_used) >= Duration::from_secs(s.cache_time) {
            ser_log!(L_DBG, "jabber: {sip_id}: idle for cache_time: closed");
            if let Some(mut x) = session.take() {
                let _ = x
                    .send("<presence type='unavailable'/></stream:stream>")
                    .await;
            }
            break;
        }
        if session.is_none()
            && online
            && now.duration_since(last_try) >= Duration::from_secs(s.check_time)
        {
            last_try = now;
            if let Some((j, p, _)) = login.clone() {
                gen += 1;
                match connect(&s, &j, &p, &me, gen).await {
                    Ok(x) => {
                        ser_log!(L_NOTICE, "jabber: {sip_id}: reconnected as {}", x.jid);
                        session = Some(x);
                    }
                    Err(e) => ser_log!(L_DBG, "jabber: {sip_id}: reconnect failed: {e}"),
                }
            }
        }
    }
    drop(session);
    rx.close();
    let mut left = Vec::new();
    while let Ok(i) = rx.try_recv() {
        if let Input::Cmd(c) = i {
            left.push(c);
        }
    }
    let _ = gone.send(Gone { sip_id, id, left });
}

#[allow(clippy::too_many_arguments)]
async fn handle_cmd(
    c: Cmd,
    sip_id: &str,
    me: &mpsc::UnboundedSender<Input>,
    session: &mut Option<Session>,
    login: &mut Option<(String, String, String)>,
    online: &mut bool,
    gen: &mut u64,
) {
    let Cmd { job, done } = c;
    if matches!(job.op, JabberOp::GoOffline) {
        *online = false;
        if let Some(mut x) = session.take() {
            let _ = x
                .send("<presence type='unavailable'/></stream:stream>")
                .await;
        }
        done(JobResult::Rows(vec![]));
        return;
    }
    *login = Some((job.jab_id.clone(), job.passwd.clone(), job.home.clone()));
    if session.is_none() {
        *gen += 1;
        match connect(&job.settings, &job.jab_id, &job.passwd, me, *gen).await {
            Ok(x) => {
                ser_log!(L_DBG, "jabber: {sip_id}: logged in as {}", x.jid);
                *session = Some(x);
            }
            Err(e) => {
                ser_log!(L_WARN, "jabber: {sip_id}: {e}");
                done(JobResult::Failed(e));
                return;
            }
        }
    }
    let Some(x) = session.as_mut() else {
        done(JobResult::Failed("jabber: no connection".into()));
        return;
    };
    let r = match &job.op {
        JabberOp::Message {
            to,
            body,
            groupchat,
        } => {
            let net = if *groupchat { 0 } else { network(to) };
            if *groupchat && !x.rooms.contains_key(&bare(to)) {
                Err(format!(
                    "jabber: {sip_id} has not joined the conference {to}"
                ))
            } else if net != 0 && x.ready & net == 0 {
                // SER's xj_jcon_is_ready: a transport on the roster but not on line holds
                // the message; one not on the roster refuses it (once the roster is known).
                if x.roster && x.allowed & net == 0 {
                    ser_log!(
                        L_WARN,
                        "jabber: {sip_id} is not registered with the IM gateway of {to}"
                    );
                    Err(format!(
                        "jabber: {sip_id} is not registered with the IM gateway of {to}"
                    ))
                } else if x.waiting.len() >= WAITING {
                    Err(format!(
                        "jabber: {sip_id}: {WAITING} messages wait for IM gateways already"
                    ))
                } else {
                    ser_log!(
                        L_DBG,
                        "jabber: {sip_id}: the message to {to} waits for its IM gateway"
                    );
                    x.waiting.push(Waiting {
                        to: to.clone(),
                        body: body.clone(),
                        until: Instant::now()
                            + Duration::from_secs(job.settings.delay_time.min(30)),
                        done,
                    });
                    return;
                }
            } else if *groupchat {
                x.send(&format!(
                    "<message to='{}' type='groupchat'><body>{}</body></message>",
                    esc(to),
                    esc(body)
                ))
                .await
            } else {
                x.send(&chat(to, body)).await
            }
        }
        JabberOp::GoOnline => {
            *online = true;
            Ok(())
        }
        JabberOp::GoOffline => Ok(()),
        JabberOp::Join { room, nick } => {
            let r = x
                .send(&format!(
                    "<presence to='{}/{}'><x xmlns='http://jabber.org/protocol/muc'/></presence>",
                    esc(room),
                    esc(nick)
                ))
                .await;
            if r.is_ok() {
                x.rooms.insert(bare(room), nick.clone());
            }
            r
        }
        JabberOp::Exit { room, nick } => {
            x.rooms.remove(&bare(room));
            x.send(&format!(
                "<presence to='{}/{}' type='unavailable'/>",
                esc(room),
                esc(nick)
            ))
            .await
        }
        JabberOp::Watch { jid } => {
            x.send(&format!(
                "<presence to='{}' type='subscribe'/>",
                esc(&bare(jid))
            ))
            .await
        }
    };
    match r {
        Ok(()) => done(JobResult::Rows(vec![])),
        Err(e) => {
            if e.contains("write to") {
                *session = None;
            }
            done(JobResult::Failed(e));
        }
    }
}

/// Answers or delivers one stanza from the server; an error resets the connection.
async fn inbound(
    x: &mut Session,
    s: &JabberSettings,
    sip_id: &str,
    home: &str,
    stanza: &str,
) -> Result<(), String> {
    let wrapped = wrap(stanza);
    let doc = roxmltree::Document::parse(&wrapped).map_err(|e| format!("malformed XML: {e}"))?;
    let Some(el) = doc.root_element().first_element_child() else {
        return Ok(());
    };
    let from = el.attribute("from").unwrap_or("");
    let kind = el.attribute("type").unwrap_or("");
    match el.tag_name().name() {
        "message" => {
            let body = el
                .children()
                .find(|c| c.has_tag_name("body"))
                .and_then(|b| b.text())
                .unwrap_or("");
            if kind == "error" {
                ser_log!(L_WARN, "jabber: {sip_id}: error message from {from}");
                return Ok(());
            }
            if body.is_empty() || from.is_empty() {
                return Ok(()); // chat states, receipts…
            }
            let sip_from = if kind == "groupchat" {
                let (room, nick) = from.split_once('/').unwrap_or((from, ""));
                if x.rooms.get(&bare(room)).is_some_and(|n| n == nick) {
                    return Ok(()); // the room's echo of our own message
                }
                s.room_to_sip(from)
            } else {
                s.to_sip(from)
            };
            deliver(sip_id, home, &sip_from, body);
        }
        "presence" => {
            let b = bare(from);
            if b.is_empty() || x.rooms.contains_key(&b) || b == bare(&x.jid) {
                return Ok(());
            }
            let net = if b.contains('@') { 0 } else { network(&b) };
            if net != 0 && kind != "subscribe" {
                // An IM transport itself (SER: "network ready").
                match kind {
                    "" => {
                        ser_log!(L_DBG, "jabber: {sip_id}: IM gateway {b} on line");
                        x.ready |= net;
                    }
                    "unavailable" => x.ready &= !net,
                    _ => {}
                }
                return Ok(());
            }
            let open = match kind {
                "" => true,
                "unavailable" => false,
                "subscribe" => {
                    // The gateway's users share their presence with whoever asks.
                    x.send(&format!("<presence to='{}' type='subscribed'/>", esc(&b)))
                        .await?;
                    return Ok(());
                }
                _ => return Ok(()),
            };
            if open {
                x.seen_open.insert(b.clone());
            } else {
                x.seen_open.remove(&b);
            }
            if let Some(sh) = shared() {
                if sh.services.store::<Presences>().set(&b, open) {
                    dataplane::modules::pa::jabber_changed(&sh, &b);
                }
            }
        }
        "iq" if kind == "get" || kind == "set" => {
            let id = el.attribute("id").unwrap_or("");
            let to = if from.is_empty() {
                String::new()
            } else {
                format!(" to='{}'", esc(from))
            };
            let ping = el
                .first_element_child()
                .is_some_and(|c| c.tag_name().namespace() == Some("urn:xmpp:ping"));
            let roster = el
                .first_element_child()
                .is_some_and(|c| c.tag_name().namespace() == Some("jabber:iq:roster"));
            if roster && kind == "set" {
                // A roster push: a transport added (the user registered with it) or removed.
                if let Some(q) = el.first_element_child() {
                    x.roster_items(q);
                }
            }
            let reply = if ping || (roster && kind == "set") {
                format!("<iq type='result' id='{}'{to}/>", esc(id))
            } else {
                format!(
                    "<iq type='error' id='{}'{to}><error type='cancel'>\
                     <service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>",
                    esc(id)
                )
            };
            x.send(&reply).await?;
        }
        "iq" if kind == "result" && el.attribute("id") == Some(ROSTER_ID) => {
            if let Some(q) = el
                .first_element_child()
                .filter(|c| c.tag_name().namespace() == Some("jabber:iq:roster"))
            {
                x.roster_items(q);
            }
            x.roster = true;
        }
        "iq" if kind == "error" && el.attribute("id") == Some(ROSTER_ID) => {
            ser_log!(L_WARN, "jabber: {sip_id}: the server refused the roster");
            x.roster = true;
        }
        "error" => return Err(format!("stream error: {}", compact(stanza))),
        _ => {}
    }
    Ok(())
}

/// Sends an XMPP message to the SIP user as a MESSAGE (statefully, through tm).
fn deliver(sip_id: &str, home: &str, from: &str, body: &str) {
    let Some(sh) = shared() else {
        return;
    };
    let tag = format!(
        "xj{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    );
    // The sender's address goes into a header: nothing that could end or split it.
    let from: String = from
        .chars()
        .filter(|c| !c.is_control() && !matches!(c, '<' | '>' | '"' | ' '))
        .collect();
    let to = format!("sip:{sip_id}");
    let req = UacRequest {
        method: "MESSAGE".into(),
        ruri: to.clone(),
        headers: format!(
            "From: <{from}>;tag={tag}\r\nTo: <{to}>\r\nContent-Type: text/plain; charset=UTF-8\r\n"
        ),
        body: body.as_bytes().to_vec(),
        next_hop: (!home.is_empty()).then(|| home.to_string()),
        done: Box::new(|r: UacResult| {
            if r.code >= 300 {
                ser_log!(
                    L_DBG,
                    "jabber: a message to the SIP side was answered {} {}",
                    r.code,
                    r.reason
                );
            }
        }),
    };
    if sh.tm.uac(req).is_err() {
        ser_log!(
            L_ERR,
            "ERROR: jabber: no shard took the MESSAGE for {sip_id}"
        );
    }
}

/// A stanza inside an element declaring the stream's namespaces, for roxmltree.
fn wrap(stanza: &str) -> String {
    format!("<w xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>{stanza}</w>")
}

fn compact(s: &str) -> String {
    s.chars().take(200).collect()
}

/// XML escaping for attribute values and text; characters XML 1.0 forbids (controls other than
/// tab, CR, LF) are dropped, as a server closes the stream on them.
fn esc(s: &str) -> String {
    s.chars()
        .filter(|&c| !c.is_control() || matches!(c, '\t' | '\r' | '\n'))
        .collect::<String>()
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('\'', "&apos;")
        .replace('"', "&quot;")
}

/// What the framer cuts from the stream.
#[derive(Debug, PartialEq, Eq)]
enum Unit {
    /// `<stream:stream ...>` (the opening tag).
    Open(String),
    /// One complete top-level element.
    Stanza(String),
    /// `</stream:stream>`.
    Close,
}

/// Cuts an XMPP stream into units: depth counting over tags (quoted attributes honoured), XML
/// declarations skipped, comments and DTDs refused (RFC 6120 §11.1), size bounded.
#[derive(Default)]
struct Framer {
    buf: Vec<u8>,
    /// Inside the stream element.
    open: bool,
}

impl Framer {
    fn feed(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next complete unit; `Ok(None)` when more bytes are needed.
    fn next(&mut self) -> Result<Option<Unit>, String> {
        let b = &self.buf;
        let mut i = 0usize;
        let mut depth = 0usize;
        let mut start: Option<usize> = None;
        while i < b.len() {
            if b[i] != b'<' {
                // Between stanzas only whitespace (keep-alives) or a byte-order mark.
                if depth == 0 && !b[i].is_ascii_whitespace() && !matches!(b[i], 0xEF | 0xBB | 0xBF)
                {
                    return Err("text outside any stanza".into());
                }
                i += 1;
                continue;
            }
            let rest = &b[i..];
            if rest.len() < 2 {
                break;
            }
            if rest[1] == b'?' {
                match find(rest, b"?>") {
                    Some(e) => {
                        i += e + 2;
                        continue;
                    }
                    None => break,
                }
            }
            if rest[1] == b'!' {
                if rest.starts_with(b"<![CDATA[") {
                    match find(rest, b"]]>") {
                        Some(e) => {
                            i += e + 3;
                            continue;
                        }
                        None => break,
                    }
                }
                if rest.len() < 9 {
                    break;
                }
                return Err("comment or DTD in the stream".into());
            }
            let Some(end) = tag_end(rest) else {
                break;
            };
            let tag = &rest[..=end];
            if rest[1] == b'/' {
                if depth == 0 {
                    if !self.open {
                        return Err("end tag before the stream".into());
                    }
                    self.open = false;
                    self.buf.drain(..i + end + 1);
                    return Ok(Some(Unit::Close));
                }
                depth -= 1;
                if depth == 0 {
                    let s = start.unwrap_or(0);
                    let text = String::from_utf8_lossy(&b[s..=i + end]).into_owned();
                    self.buf.drain(..=i + end);
                    return Ok(Some(Unit::Stanza(text)));
                }
            } else {
                let empty = end > 0 && tag[end - 1] == b'/';
                if !self.open && depth == 0 {
                    if !tag.starts_with(b"<stream:stream") {
                        return Err("the stream does not start with stream:stream".into());
                    }
                    self.open = true;
                    let text = String::from_utf8_lossy(tag).into_owned();
                    self.buf.drain(..=i + end);
                    return Ok(Some(Unit::Open(text)));
                }
                if depth == 0 {
                    start = Some(i);
                }
                if empty {
                    if depth == 0 {
                        let text = String::from_utf8_lossy(tag).into_owned();
                        self.buf.drain(..=i + end);
                        return Ok(Some(Unit::Stanza(text)));
                    }
                } else {
                    depth += 1;
                }
            }
            i += end + 1;
        }
        if self.buf.len() > MAX_STANZA {
            return Err(format!("a stanza over {MAX_STANZA} bytes"));
        }
        if depth == 0 && start.is_none() {
            // Whitespace and declarations before `i` are used up.
            let n = i.min(self.buf.len());
            self.buf.drain(..n);
        }
        Ok(None)
    }
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

/// Index of the `>` that ends the tag at the start of `b` (quotes honoured).
fn tag_end(b: &[u8]) -> Option<usize> {
    let mut q: Option<u8> = None;
    for (i, &c) in b.iter().enumerate().skip(1) {
        match q {
            Some(x) if c == x => q = None,
            Some(_) => {}
            None if c == b'"' || c == b'\'' => q = Some(c),
            None if c == b'>' => return Some(i),
            None => {}
        }
    }
    None
}

/// Reads the next unit from `r` (login phase, before the reader task takes over).
async fn read_unit(r: &mut Conn, f: &mut Framer, limit: Instant) -> Result<Unit, String> {
    let mut buf = [0u8; 8192];
    loop {
        if let Some(u) = f.next()? {
            return Ok(u);
        }
        let left = limit.saturating_duration_since(Instant::now());
        let n = tokio::time::timeout(left, r.read(&mut buf))
            .await
            .map_err(|_| "the Jabber server did not answer in time".to_string())?
            .map_err(|e| format!("read from the Jabber server failed: {e}"))?;
        if n == 0 {
            return Err("the Jabber server closed the connection".into());
        }
        f.feed(&buf[..n]);
    }
}

/// The next stanza (stream headers skipped), parsed: (local name, the element's text).
async fn read_stanza(r: &mut Conn, f: &mut Framer, limit: Instant) -> Result<String, String> {
    loop {
        match read_unit(r, f, limit).await? {
            Unit::Open(_) => continue,
            Unit::Close => return Err("the Jabber server closed the stream".into()),
            Unit::Stanza(s) => return Ok(s),
        }
    }
}

fn parse_name(stanza: &str) -> Result<(String, String), String> {
    let w = wrap(stanza);
    let doc = roxmltree::Document::parse(&w).map_err(|e| format!("malformed XML: {e}"))?;
    let el = doc
        .root_element()
        .first_element_child()
        .ok_or("empty stanza")?;
    Ok((
        el.tag_name().name().to_string(),
        el.attribute("type").unwrap_or("").to_string(),
    ))
}

/// Whether stream features offer STARTTLS.
fn offers_starttls(features: &str) -> bool {
    let w = wrap(features);
    roxmltree::Document::parse(&w).is_ok_and(|d| {
        d.descendants().any(|n| {
            n.has_tag_name("starttls")
                && n.tag_name().namespace() == Some("urn:ietf:params:xml:ns:xmpp-tls")
        })
    })
}

/// The TLS client configuration: the CAs of the PEM file `ca` (read at each login, so a
/// changed file counts for the next one), rustls' safe defaults on ring.
fn tls_config(ca: &str) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::CertificateDer;
    let certs = CertificateDer::pem_file_iter(ca)
        .map_err(|e| format!("jabber: cannot read the CA certificates (tls_ca) {ca}: {e}"))?
        .filter_map(Result::ok);
    let mut roots = rustls::RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(format!(
            "jabber: no CA certificate in {ca} (tls_ca): cannot check the Jabber server"
        ));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("jabber: TLS set-up failed: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Opens and logs in a session (bounded by `delay_time`), and starts its reader.
async fn connect(
    s: &JabberSettings,
    jab_id: &str,
    passwd: &str,
    me: &mpsc::UnboundedSender<Input>,
    gen: u64,
) -> Result<Session, String> {
    let limit = Instant::now() + Duration::from_secs(s.delay_time.min(30));
    let (user, domain) = match jab_id.split_once('@') {
        Some((u, d)) => (u.to_string(), d.split('/').next().unwrap_or(d).to_string()),
        None => (jab_id.to_string(), s.jaddress.clone()),
    };
    let addr = format!("{}:{}", s.jaddress, s.jport);
    let tcp = tokio::time::timeout(
        limit.saturating_duration_since(Instant::now()),
        TcpStream::connect(&addr),
    )
    .await
    .map_err(|_| format!("jabber: no answer from the Jabber server at {addr}"))?
    .map_err(|e| format!("jabber: cannot connect to the Jabber server at {addr}: {e}"))?;
    let mut t: Conn = Box::new(tcp);
    let header = format!(
        "<?xml version='1.0'?><stream:stream to='{}' xmlns='jabber:client' \
         xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>",
        esc(&domain)
    );
    let io = |e: std::io::Error| format!("jabber: write to the Jabber server failed: {e}");
    let err = |e: String| format!("jabber: {addr}: {e}");
    let mut f = Framer::default();
    t.write_all(header.as_bytes()).await.map_err(io)?;
    let mut features = read_stanza(&mut t, &mut f, limit).await.map_err(err)?;
    if offers_starttls(&features) {
        t.write_all(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
            .await
            .map_err(io)?;
        let answer = read_stanza(&mut t, &mut f, limit).await.map_err(err)?;
        if parse_name(&answer).map_err(err)?.0 != "proceed" {
            return Err(format!("jabber: {addr} refused STARTTLS"));
        }
        let config = tls_config(&s.tls_ca)?;
        let name = rustls::pki_types::ServerName::try_from(domain.clone())
            .map_err(|e| format!("jabber: {domain:?} is no name for TLS: {e}"))?;
        let tls = tokio::time::timeout(
            limit.saturating_duration_since(Instant::now()),
            tokio_rustls::TlsConnector::from(config).connect(name, t),
        )
        .await
        .map_err(|_| format!("jabber: {addr}: the TLS handshake did not end in time"))?
        .map_err(|e| format!("jabber: {addr}: TLS with {domain} failed: {e}"))?;
        t = Box::new(tls);
        // RFC 6120 §5.4.3.3: a new stream over TLS.
        f = Framer::default();
        t.write_all(header.as_bytes()).await.map_err(io)?;
        features = read_stanza(&mut t, &mut f, limit).await.map_err(err)?;
    }
    if !features.contains("PLAIN") {
        return Err(format!("jabber: {addr} offers no SASL PLAIN login"));
    }
    let token = base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{passwd}"));
    t.write_all(
        format!("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>")
            .as_bytes(),
    )
    .await
    .map_err(io)?;
    let answer = read_stanza(&mut t, &mut f, limit).await.map_err(err)?;
    if parse_name(&answer).map_err(err)?.0 != "success" {
        return Err(format!(
            "jabber: {addr} refused the login of {user}@{domain}"
        ));
    }
    // RFC 6120 §6.4.6: a new stream after SASL.
    let mut f = Framer::default();
    t.write_all(header.as_bytes()).await.map_err(io)?;
    let features = read_stanza(&mut t, &mut f, limit).await.map_err(err)?;
    t.write_all(
        format!(
            "<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>\
             <resource>{RESOURCE}</resource></bind></iq>"
        )
        .as_bytes(),
    )
    .await
    .map_err(io)?;
    let bound = read_stanza(&mut t, &mut f, limit).await.map_err(err)?;
    let jid = {
        let w = wrap(&bound);
        let doc = roxmltree::Document::parse(&w).map_err(|e| err(format!("malformed XML: {e}")))?;
        let el = doc.root_element().first_element_child();
        if el.and_then(|e| e.attribute("type")) != Some("result") {
            return Err(err("resource binding refused".into()));
        }
        doc.descendants()
            .find(|n| n.has_tag_name("jid"))
            .and_then(|n| n.text())
            .map_or_else(|| format!("{user}@{domain}/{RESOURCE}"), str::to_string)
    };
    if features.contains("urn:ietf:params:xml:ns:xmpp-session") && !features.contains("<optional") {
        t.write_all(
            b"<iq type='set' id='sess1'><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>",
        )
        .await
        .map_err(io)?;
        let r = read_stanza(&mut t, &mut f, limit).await.map_err(err)?;
        if parse_name(&r).map_err(err)?.1 != "result" {
            return Err(err("session refused".into()));
        }
    }
    // SER's gateway announced itself on line with priority 9, and asked for the roster to
    // learn the IM transports the user is registered with.
    t.write_all(
        format!(
            "<presence><status>Online</status><priority>9</priority></presence>\
             <iq type='get' id='{ROSTER_ID}'><query xmlns='jabber:iq:roster'/></iq>"
        )
        .as_bytes(),
    )
    .await
    .map_err(io)?;
    let (mut r, w) = tokio::io::split(t);
    let me = me.clone();
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; 8192];
        loop {
            loop {
                match f.next() {
                    Ok(Some(Unit::Stanza(s))) => {
                        if me.send(Input::Xmpp(gen, Ok(s))).is_err() {
                            return;
                        }
                    }
                    Ok(Some(Unit::Open(_))) => {}
                    Ok(Some(Unit::Close)) => {
                        let _ =
                            me.send(Input::Xmpp(gen, Err("the server closed the stream".into())));
                        return;
                    }
                    Ok(None) => break,
                    Err(e) => {
                        let _ = me.send(Input::Xmpp(gen, Err(format!("malformed XML: {e}"))));
                        return;
                    }
                }
            }
            match r.read(&mut buf).await {
                Ok(0) => {
                    let _ = me.send(Input::Xmpp(
                        gen,
                        Err("the server closed the connection".into()),
                    ));
                    return;
                }
                Ok(n) => f.feed(&buf[..n]),
                Err(e) => {
                    let _ = me.send(Input::Xmpp(gen, Err(format!("read failed: {e}"))));
                    return;
                }
            }
        }
    });
    Ok(Session {
        w,
        reader,
        gen,
        jid,
        rooms: HashMap::new(),
        seen_open: Default::default(),
        allowed: 0,
        ready: 0,
        roster: false,
        waiting: Vec::new(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn units(chunks: &[&str]) -> Result<Vec<Unit>, String> {
        let mut f = Framer::default();
        let mut out = Vec::new();
        for c in chunks {
            f.feed(c.as_bytes());
            while let Some(u) = f.next()? {
                out.push(u);
            }
        }
        Ok(out)
    }

    #[test]
    fn the_framer_cuts_stanzas_across_reads() {
        let u = units(&[
            "<?xml version='1.0'?><stream:stream xmlns='jabber:client' id='a'>",
            "<message from='b@x/r' type='chat'><bo",
            "dy>a &gt; b '/>'</body></message> \n<presence from='b@x' a=\"/>\"/>",
            "</stream:stream>",
        ])
        .unwrap();
        assert!(matches!(&u[0], Unit::Open(s) if s.contains("id='a'")));
        assert_eq!(
            u[1],
            Unit::Stanza(
                "<message from='b@x/r' type='chat'><body>a &gt; b '/>'</body></message>".into()
            )
        );
        assert_eq!(u[2], Unit::Stanza("<presence from='b@x' a=\"/>\"/>".into()));
        assert_eq!(u[3], Unit::Close);
    }

    /// A scripted XMPP server on loopback for the client's own checks: answers the login
    /// steps, then writes `after`.
    async fn scripted_server(features: &'static str, after: &'static str) -> u16 {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let header = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
                          xmlns:stream='http://etherx.jabber.org/streams' id='s1' from='x.test'>";
            let steps: [&str; 4] = [
                features,
                "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>",
                "<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></stream:features>",
                "<iq type='result' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>\
                 <jid>a@x.test/serXjab</jid></bind></iq>",
            ];
            for (i, step) in steps.iter().enumerate() {
                if s.read(&mut buf).await.unwrap_or(0) == 0 {
                    return;
                }
                let out = if i == 0 || i == 2 {
                    format!("{header}{step}")
                } else {
                    step.to_string()
                };
                if s.write_all(out.as_bytes()).await.is_err() {
                    return;
                }
            }
            let _ = s.read(&mut buf).await; // the presence
            let _ = s.write_all(after.as_bytes()).await;
            let _ = s.read(&mut buf).await;
        });
        port
    }

    fn settings(port: u16) -> JabberSettings {
        let mut s = JabberSettings::resolve(None);
        s.jport = port;
        s.jdomain = "j.test".into();
        s
    }

    const PLAIN: &str = "<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>\
                         <mechanism>PLAIN</mechanism></mechanisms></stream:features>";

    #[tokio::test]
    async fn malformed_xml_from_the_server_resets_the_connection() {
        let port = scripted_server(PLAIN, "<message from='b@x.test'><body>x</message></iq>").await;
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut x = connect(&settings(port), "a@x.test", "pw", &tx, 1)
            .await
            .unwrap();
        assert_eq!(x.jid, "a@x.test/serXjab");
        let Some(Input::Xmpp(1, Ok(stanza))) = rx.recv().await else {
            panic!("a stanza from the reader");
        };
        let e = inbound(&mut x, &settings(port), "a@sip", "", &stanza)
            .await
            .unwrap_err();
        assert!(e.starts_with("malformed XML"), "{e}");
    }

    #[tokio::test]
    async fn a_server_that_refuses_starttls_fails_the_login_clearly() {
        let port = scripted_server(
            "<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/>\
             </starttls></stream:features>",
            "",
        )
        .await;
        let (tx, _rx) = mpsc::unbounded_channel();
        // The scripted server answers STARTTLS with SASL success: not `proceed`.
        let Err(e) = connect(&settings(port), "a@x.test", "pw", &tx, 1).await else {
            panic!("a login without TLS");
        };
        assert!(e.contains("refused STARTTLS"), "{e}");
    }

    #[test]
    fn a_missing_or_empty_ca_file_is_a_clear_error() {
        let e = tls_config("/nonexistent/ca.pem").unwrap_err();
        assert!(e.contains("cannot read the CA certificates"), "{e}");
        let empty = std::env::temp_dir().join(format!("ser-jabber-ca-{}", std::process::id()));
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let e = tls_config(&empty.display().to_string()).unwrap_err();
        let _ = std::fs::remove_file(&empty);
        assert!(e.contains("no CA certificate"), "{e}");
    }

    #[test]
    fn text_for_the_server_is_well_formed() {
        assert_eq!(
            esc("a<b>&'\"\u{1}\u{7f}\n"),
            "a&lt;b&gt;&amp;&apos;&quot;\n"
        );
    }

    #[test]
    fn bad_streams_are_errors_not_panics() {
        assert!(units(&["<html>"]).is_err());
        assert!(units(&["<stream:stream><!-- hi --><x/>"]).is_err());
        assert!(units(&["<stream:stream>junk<x/>"]).is_err());
        let big = format!("<stream:stream><m>{}", "a".repeat(MAX_STANZA + 1));
        assert!(units(&[&big]).is_err());
        // A stanza that is framed but not well-formed is refused by the parser.
        assert!(parse_name("<m><b></m></b>").is_err());
        for junk in ["<", "</", "<stream:stream", "<?xml", "\u{feff}", "<!"] {
            let _ = units(&[junk]);
        }
    }
}

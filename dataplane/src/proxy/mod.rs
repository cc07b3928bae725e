//! Stateless proxy core, sans-IO: the RFC 3261 decisions a proxy makes about a message, as pure
//! functions over [`crate::wire::Message`]. The shard calls them and does the sending.
//!
//! - [`precheck`]: what to answer before the script runs (§16.3: 400/505/416/420/483/501), and what
//!   to drop silently (broken responses, ACKs).
//! - [`forward`]: preparing a request for stateless forwarding — the §16.11 branch that is stable
//!   across retransmissions, our Via on top, `received`/`rport` on the sender's Via (§18.2.1,
//!   RFC 3581), Max-Forwards (§16.6 item 3); and routing a response back by its Via (§16.7 / §18.2.2).
//! - [`sl`]: stateless replies (SER's `sl` module): To-tags that are stable across retransmissions,
//!   3xx Contacts from the destination set, Warning / Server headers, absorbing ACKs to our replies.
//!
//! The running proxy on a shard:
//!
//! - [`server`]: the per-packet handler ([`server::ProxyHandler`]): requests through the script,
//!   responses to their transaction or by Via, timers, job answers; it carries out what the
//!   transaction table ([`crate::txn::table`]) asks for.
//! - [`mod@env`]: the interpreter's view of the shard ([`env::ShardEnv`]): forward, send, replies, DNS.
//! - [`tm`]: module tm's script side on the shard (`t_relay` and friends).
//! - [`shared`]: what all shards share (program, settings, caches, counters, inboxes).
//!
//! Nothing here allocates on the success path except where a new header value must be built, and then
//! into a small inline buffer.

pub mod env;
pub mod forward;
pub mod precheck;
pub mod server;
pub mod shared;
pub mod sl;
pub mod tm;

//! `/metrics`: Prometheus text exposition, built on each scrape from the live counters
//! (prometheus-client's OpenMetrics text encoder with a custom collector; nothing is copied into
//! a second set of counters).
//!
//! | metric | type | labels | from |
//! |---|---|---|---|
//! | `ser_requests_received_total` | counter | `method` | shards ([`dataplane::stats`]) |
//! | `ser_replies_received_total` | counter | `class` | shards |
//! | `ser_requests_sent_total` | counter | `method` | shards |
//! | `ser_replies_sent_total` | counter | `class` | shards |
//! | `ser_shard_messages_total` | counter | `shard` | shards (load per shard) |
//! | `ser_dropped_total` | counter | | shards and the proxy |
//! | `ser_overload_503_total` | counter | | shards (shedding, and every bounded queue's 503) |
//! | `ser_rcvbuf_drops_total` | counter | | shards (datagrams the kernel dropped, buffer full) |
//! | `ser_overload_entered_total`, `ser_overloaded_shards` | counter, gauge | | shards |
//! | `ser_queue_delay_seconds` | gauge | | shards (largest, last tick window) |
//! | `ser_sl_replies_total` | counter | `class` | sl (`sl_stats`) |
//! | `ser_tm_transactions_current` / `_waiting` | gauge | | tm (`t_stats`), when wired |
//! | `ser_tm_transactions_total` / `ser_tm_local_transactions_total` | counter | | tm, when wired |
//! | `ser_usrloc_registered_contacts` | gauge | | usrloc (`ul_stats`), when wired |
//! | `ser_db_queue_depth`, `ser_db_writes_refused_total` | gauge, counter | | `Services.db` |
//! | `ser_uptime_seconds` | gauge | | |

use std::sync::Arc;
use std::time::Instant;

use dataplane::stats::{Stats, Totals, CLASSES, METHODS};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry as PromRegistry;

use dataplane::modules::tm::TStats;

type Getter<T> = Option<Arc<dyn Fn() -> T + Send + Sync>>;

/// Where the metrics come from. `stats` is always there; the others are wired when the module
/// that owns the data runs.
#[derive(Clone)]
pub struct Sources {
    pub stats: Arc<Stats>,
    pub started: Instant,
    /// Stateless replies by class (`sl_stats`).
    pub sl_by_class: Getter<[u64; 6]>,
    /// Transactions (`t_stats`).
    pub transactions: Getter<TStats>,
    /// Registered contacts, all tables.
    pub contacts: Getter<u64>,
    /// DB write queue: (waiting, refused so far).
    pub db_queue: Getter<(u64, u64)>,
}

impl std::fmt::Debug for Sources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("metrics::Sources")
    }
}

impl Sources {
    /// Only the shard counters.
    pub fn new(stats: Arc<Stats>) -> Sources {
        Sources {
            stats,
            started: Instant::now(),
            sl_by_class: None,
            transactions: None,
            contacts: None,
            db_queue: None,
        }
    }
}

fn counter(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    v: u64,
) -> Result<(), std::fmt::Error> {
    let c = ConstCounter::new(v);
    let m = enc.encode_descriptor(name, help, None, c.metric_type())?;
    c.encode(m)
}

fn gauge(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    v: i64,
) -> Result<(), std::fmt::Error> {
    let g = ConstGauge::new(v);
    let m = enc.encode_descriptor(name, help, None, g.metric_type())?;
    g.encode(m)
}

fn labelled(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    label: &str,
    values: &[(String, u64)],
) -> Result<(), std::fmt::Error> {
    let mut m = enc.encode_descriptor(name, help, None, ConstCounter::new(0u64).metric_type())?;
    for (l, v) in values {
        let labels = [(label.to_string(), l.clone())];
        let fm = m.encode_family(&labels)?;
        ConstCounter::new(*v).encode(fm)?;
    }
    Ok(())
}

fn named<const N: usize>(names: &[&str; N], values: &[u64; N]) -> Vec<(String, u64)> {
    names
        .iter()
        .zip(values)
        .map(|(n, v)| (n.to_string(), *v))
        .collect()
}

impl Collector for Sources {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let t: Totals = self.stats.sum();
        labelled(
            &mut enc,
            "ser_requests_received",
            "SIP requests received, by method",
            "method",
            &named(&METHODS, &t.requests_in),
        )?;
        labelled(
            &mut enc,
            "ser_replies_received",
            "SIP replies received, by class",
            "class",
            &named(&CLASSES, &t.replies_in),
        )?;
        labelled(
            &mut enc,
            "ser_requests_sent",
            "SIP requests sent (forwarded or generated), by method",
            "method",
            &named(&METHODS, &t.requests_out),
        )?;
        labelled(
            &mut enc,
            "ser_replies_sent",
            "SIP replies sent (local or relayed), by class",
            "class",
            &named(&CLASSES, &t.replies_out),
        )?;
        let shards: Vec<(String, u64)> = (0..self.stats.shard_count())
            .map(|i| (i.to_string(), self.stats.shard_totals(i).handled))
            .collect();
        labelled(
            &mut enc,
            "ser_shard_messages",
            "messages handled per shard (load)",
            "shard",
            &shards,
        )?;
        counter(
            &mut enc,
            "ser_dropped",
            "messages dropped without an answer",
            t.dropped,
        )?;
        counter(
            &mut enc,
            "ser_overload_503",
            "requests rejected with 503 under overload",
            t.overload_503,
        )?;
        counter(
            &mut enc,
            "ser_rcvbuf_drops",
            "datagrams the kernel dropped on ser's sockets (receive buffer full)",
            t.rcvbuf_drops,
        )?;
        counter(
            &mut enc,
            "ser_overload_entered",
            "times a shard became overloaded (shed, kernel drops or a full queue)",
            t.overload_entered,
        )?;
        gauge(
            &mut enc,
            "ser_overloaded_shards",
            "shards overloaded in their last tick window",
            t.overloaded as i64,
        )?;
        let delay = ConstGauge::new(t.queue_delay_us as f64 / 1e6);
        let m = enc.encode_descriptor(
            "ser_queue_delay_seconds",
            "longest queueing delay of a shard's last tick window",
            None,
            delay.metric_type(),
        )?;
        delay.encode(m)?;
        if let Some(sl) = &self.sl_by_class {
            labelled(
                &mut enc,
                "ser_sl_replies",
                "stateless replies sent by sl, by class",
                "class",
                &named(&CLASSES, &sl()),
            )?;
        }
        if let Some(tm) = &self.transactions {
            let s = tm();
            gauge(
                &mut enc,
                "ser_tm_transactions_current",
                "transactions in memory",
                s.current as i64,
            )?;
            gauge(
                &mut enc,
                "ser_tm_transactions_waiting",
                "transactions waiting (wait timer)",
                s.waiting as i64,
            )?;
            counter(
                &mut enc,
                "ser_tm_transactions",
                "transactions created",
                s.total,
            )?;
            counter(
                &mut enc,
                "ser_tm_local_transactions",
                "transactions created locally (t_uac)",
                s.total_local,
            )?;
        }
        if let Some(c) = &self.contacts {
            gauge(
                &mut enc,
                "ser_usrloc_registered_contacts",
                "contacts in the location tables",
                c() as i64,
            )?;
        }
        if let Some(db) = &self.db_queue {
            let (q, refused) = db();
            gauge(
                &mut enc,
                "ser_db_queue_depth",
                "database writes waiting",
                q as i64,
            )?;
            counter(
                &mut enc,
                "ser_db_writes_refused",
                "database writes refused (queue full or no DB)",
                refused,
            )?;
        }
        gauge(
            &mut enc,
            "ser_uptime_seconds",
            "seconds since start",
            self.started.elapsed().as_secs() as i64,
        )?;
        Ok(())
    }
}

/// The text of one scrape.
pub fn render(sources: &Sources) -> String {
    let mut reg = PromRegistry::default();
    reg.register_collector(Box::new(sources.clone()));
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &reg);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrape_has_counters_by_label() {
        let stats = Arc::new(Stats::new(2));
        stats.received(1, b"INVITE sip:a SIP/2.0\r\n");
        stats.sent(0, b"SIP/2.0 404 Not Found\r\n");
        let mut s = Sources::new(Arc::clone(&stats));
        s.db_queue = Some(Arc::new(|| (3, 1)));
        let text = render(&s);
        assert!(
            text.contains("ser_requests_received_total{method=\"INVITE\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("ser_replies_sent_total{class=\"4xx\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("ser_shard_messages_total{shard=\"1\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("# TYPE ser_dropped counter\n"), "{text}");
        assert!(text.contains("ser_db_queue_depth 3\n"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}

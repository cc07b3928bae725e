//! `/ui/stats`: the server's traffic over the last hour, as line charts drawn on the server (SVG
//! in the page: no script, no external asset) with the current values as text.
//!
//! A [`Sampler`] thread of the controlplane (never a shard) reads, every interval
//! (`--web-stats-interval=SECS`, default 10 s), the counters `/metrics` reads ([`Sources`]):
//! requests received and sent, replies sent by class, transactions created and in memory,
//! registered contacts, messages per shard. Each reading is one [`Sample`] in a bounded ring
//! ([`History`]) holding one hour of them; the oldest goes when it is full. The page turns two
//! neighbouring samples into a rate per second over the time that really passed between them
//! (a late sample does not make a spike).
//!
//! Invariants: the ring never holds more than [`History::capacity`] samples; the sampler only
//! reads atomics and lock-free maps, so it cannot slow a shard. Every text in the page (chart
//! titles, axis labels, series names) goes through the template's HTML escaping; the chart
//! geometry is numbers formatted here.

use std::collections::VecDeque;
use std::sync::mpsc::{channel, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use dataplane::stats::CLASSES;
use minijinja::context;
use serde::Serialize;

use super::pages::Params;
use super::Web;
use crate::mgmt::metrics::Sources;

/// The sampling interval when none is configured.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
/// How far back the ring reaches.
pub const WINDOW: Duration = Duration::from_secs(3600);

pub(super) const TEMPLATES: &[(&str, &str)] =
    &[("stats.html", include_str!("templates/stats.html"))];

pub fn routes() -> Router<Arc<Web>> {
    Router::new().route("/ui/stats", get(page))
}

/// One reading of the counters (totals since start, except the gauges).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sample {
    pub at: Option<Instant>,
    pub requests_in: u64,
    pub requests_out: u64,
    /// Replies sent, 1xx … 6xx.
    pub replies_out: [u64; 6],
    pub transactions: u64,
    /// Gauge: transactions in memory.
    pub transactions_current: u64,
    /// Gauge: registered contacts, all tables.
    pub contacts: u64,
    pub dropped: u64,
    /// Messages handled, per shard (the shards' load).
    pub per_shard: Vec<u64>,
}

impl Sample {
    /// Reads the counters now.
    pub fn read(s: &Sources, at: Instant) -> Sample {
        let t = s.stats.sum();
        let tm = s.transactions.as_ref().map(|f| f());
        Sample {
            at: Some(at),
            requests_in: t.requests_in.iter().sum(),
            requests_out: t.requests_out.iter().sum(),
            replies_out: t.replies_out,
            transactions: tm.as_ref().map_or(0, |t| t.total),
            transactions_current: tm.as_ref().map_or(0, |t| t.current),
            contacts: s.contacts.as_ref().map_or(0, |f| f()),
            dropped: t.dropped,
            per_shard: (0..s.stats.shard_count())
                .map(|i| s.stats.shard_totals(i).handled)
                .collect(),
        }
    }
}

/// The last hour of samples, oldest first.
#[derive(Debug)]
pub struct History {
    interval: Duration,
    samples: Mutex<VecDeque<Sample>>,
}

impl History {
    pub fn new(interval: Duration) -> History {
        let interval = interval.max(Duration::from_secs(1));
        History {
            interval,
            samples: Mutex::new(VecDeque::new()),
        }
    }

    /// Samples kept: one hour's worth, and the one before it (the first rate needs two).
    pub fn capacity(&self) -> usize {
        (WINDOW.as_secs() / self.interval.as_secs().max(1)) as usize + 1
    }

    pub fn interval(&self) -> Duration {
        self.interval
    }

    pub fn push(&self, s: Sample) {
        let cap = self.capacity();
        let mut q = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        while q.len() >= cap {
            q.pop_front();
        }
        q.push_back(s);
    }

    pub fn snapshot(&self) -> Vec<Sample> {
        let q = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        q.iter().cloned().collect()
    }
}

/// The sampling thread; stopped (and joined) on drop.
pub struct Sampler {
    history: Arc<History>,
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Sampler {
    /// Takes a first sample now and one every `interval` after, on thread `ser-webstats`.
    pub fn start(sources: Sources, interval: Duration) -> Result<Sampler, String> {
        let history = Arc::new(History::new(interval));
        let (tx, rx) = channel::<()>();
        let h = Arc::clone(&history);
        let thread = std::thread::Builder::new()
            .name("ser-webstats".into())
            .spawn(move || {
                let every = h.interval();
                let mut next = Instant::now();
                loop {
                    h.push(Sample::read(&sources, Instant::now()));
                    // Ticks on a fixed schedule, so the samples do not drift by the read time.
                    next += every;
                    let now = Instant::now();
                    // After a stall (a suspended machine) the schedule restarts rather than
                    // sampling in a burst to catch up.
                    if next < now {
                        next = now + every;
                    }
                    let wait = next.saturating_duration_since(now);
                    match rx.recv_timeout(wait) {
                        Err(RecvTimeoutError::Timeout) => {}
                        _ => break,
                    }
                }
                // `sources` (and the proxy state it holds) goes with the thread.
            })
            .map_err(|e| format!("cannot start the statistics sampler: {e}"))?;
        Ok(Sampler {
            history,
            stop: Some(tx),
            thread: Some(thread),
        })
    }

    pub fn history(&self) -> Arc<History> {
        Arc::clone(&self.history)
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ---------------------------------------------------------------- charts

/// Chart area in SVG user units (the viewBox is larger by the margins).
const W: f64 = 640.0;
const H: f64 = 160.0;
const LEFT: f64 = 56.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 28.0;
const RIGHT: f64 = 12.0;
const COLORS: &[&str] = &[
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf",
];

#[derive(Serialize, Debug)]
struct Series {
    name: String,
    color: &'static str,
    /// `x,y x,y …` in chart units.
    points: String,
    /// The last value, formatted.
    current: String,
    /// The id the current value's text has (for tests and links).
    id: String,
}

#[derive(Serialize, Debug)]
struct Tick {
    pos: String,
    label: String,
}

#[derive(Serialize, Debug)]
struct Chart {
    id: &'static str,
    title: &'static str,
    unit: &'static str,
    width: String,
    height: String,
    left: String,
    top: String,
    right: String,
    bottom: String,
    plot_w: String,
    plot_h: String,
    ytick_x: String,
    xtick_y: String,
    empty_x: String,
    empty_y: String,
    series: Vec<Series>,
    yticks: Vec<Tick>,
    xticks: Vec<Tick>,
    empty: bool,
}

/// A value as shown: integers plainly, small rates with one decimal.
fn fmt_value(v: f64) -> String {
    if v.fract().abs() < 1e-9 || v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// The smallest 1, 2 or 5 × 10ⁿ at or above `v` (an axis top that reads well); at least 1.
fn nice_ceiling(v: f64) -> f64 {
    if v.is_nan() || v <= 1.0 {
        return 1.0;
    }
    let mag = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 5.0, 10.0] {
        if m * mag >= v - 1e-9 {
            return m * mag;
        }
    }
    10.0 * mag
}

/// The time axis: the shortest of these spans (seconds; quarters read well) that holds `oldest`.
fn axis_span(oldest: f64) -> f64 {
    const SPANS: [f64; 9] = [
        20.0, 40.0, 60.0, 120.0, 240.0, 480.0, 1200.0, 2400.0, 3600.0,
    ];
    SPANS
        .into_iter()
        .find(|s| *s >= oldest)
        .unwrap_or(SPANS[SPANS.len() - 1])
}

/// How long ago, as an axis label.
fn ago(secs: f64) -> String {
    let s = secs.round() as u64;
    if s == 0 {
        "now".into()
    } else if s.is_multiple_of(60) {
        format!("-{} min", s / 60)
    } else if s >= 120 {
        format!("-{:.1} min", secs / 60.0)
    } else {
        format!("-{s} s")
    }
}

/// One chart of `lines` (name, one value per sample time); `times` are seconds before the newest
/// sample, oldest first.
fn chart(
    id: &'static str,
    title: &'static str,
    unit: &'static str,
    times: &[f64],
    lines: Vec<(String, Vec<f64>)>,
) -> Chart {
    let span = axis_span(times.first().copied().unwrap_or(0.0));
    let top = nice_ceiling(
        lines
            .iter()
            .flat_map(|(_, v)| v.iter().copied())
            .fold(0.0, f64::max),
    );
    let x = |ago: f64| LEFT + W * (1.0 - (ago / span).min(1.0));
    let y = |v: f64| TOP + H * (1.0 - v / top);
    let series = lines
        .into_iter()
        .enumerate()
        .map(|(i, (name, vals))| {
            let points = times
                .iter()
                .zip(&vals)
                .map(|(t, v)| format!("{:.1},{:.1}", x(*t), y(*v)))
                .collect::<Vec<_>>()
                .join(" ");
            Series {
                id: format!("{id}-{i}"),
                current: vals.last().map_or("-".into(), |v| fmt_value(*v)),
                name,
                color: COLORS[i % COLORS.len()],
                points,
            }
        })
        .collect();
    let yticks = (0..=4)
        .map(|k| {
            let v = top * f64::from(k) / 4.0;
            Tick {
                pos: format!("{:.1}", y(v)),
                label: fmt_value(v),
            }
        })
        .collect();
    let xticks = (0..=4)
        .map(|k| {
            let a = span * f64::from(4 - k) / 4.0;
            Tick {
                pos: format!("{:.1}", x(a)),
                label: ago(a),
            }
        })
        .collect();
    Chart {
        id,
        title,
        unit,
        width: format!("{}", LEFT + W + RIGHT),
        height: format!("{}", TOP + H + BOTTOM),
        left: format!("{LEFT}"),
        top: format!("{TOP}"),
        right: format!("{}", LEFT + W),
        bottom: format!("{}", TOP + H),
        plot_w: format!("{W}"),
        plot_h: format!("{H}"),
        ytick_x: format!("{}", LEFT - 6.0),
        xtick_y: format!("{}", TOP + H + 16.0),
        empty_x: format!("{}", LEFT + 12.0),
        empty_y: format!("{}", TOP + 20.0),
        empty: times.is_empty(),
        series,
        yticks,
        xticks,
    }
}

/// Per second between neighbouring samples, of the counter `f` picks.
fn rates(samples: &[Sample], f: impl Fn(&Sample) -> u64) -> Vec<f64> {
    samples
        .windows(2)
        .map(|w| {
            let dt = match (w[0].at, w[1].at) {
                (Some(a), Some(b)) => b.saturating_duration_since(a).as_secs_f64(),
                _ => 0.0,
            };
            if dt <= 0.0 {
                0.0
            } else {
                f(&w[1]).saturating_sub(f(&w[0])) as f64 / dt
            }
        })
        .collect()
}

/// The current values shown as text.
#[derive(Serialize, Debug, Default)]
struct Current {
    requests_rate: String,
    requests_total: u64,
    replies_rate: Vec<(String, String)>,
    transactions_rate: String,
    transactions_current: u64,
    contacts: u64,
    dropped: u64,
    shards: Vec<(usize, String, u64)>,
}

fn charts(samples: &[Sample]) -> (Vec<Chart>, Current) {
    let newest = samples.last().and_then(|s| s.at);
    let ago_of = |s: &Sample| match (newest, s.at) {
        (Some(n), Some(a)) => n.saturating_duration_since(a).as_secs_f64(),
        _ => 0.0,
    };
    // Rates belong to the later sample of each pair.
    let rate_times: Vec<f64> = samples.iter().skip(1).map(ago_of).collect();
    let gauge_times: Vec<f64> = samples.iter().map(ago_of).collect();
    let last = |v: &[f64]| v.last().copied().unwrap_or(0.0);

    let req_in = rates(samples, |s| s.requests_in);
    let req_out = rates(samples, |s| s.requests_out);
    let replies: Vec<(String, Vec<f64>)> = CLASSES
        .iter()
        .enumerate()
        .map(|(c, name)| (name.to_string(), rates(samples, |s| s.replies_out[c])))
        .collect();
    let tx = rates(samples, |s| s.transactions);
    let shard_count = samples.last().map_or(0, |s| s.per_shard.len());
    let shards: Vec<(String, Vec<f64>)> = (0..shard_count)
        .map(|i| {
            (
                format!("shard {i}"),
                rates(samples, |s| s.per_shard.get(i).copied().unwrap_or(0)),
            )
        })
        .collect();
    let tail = samples.last().cloned().unwrap_or_default();
    let cur = Current {
        requests_rate: fmt_value(last(&req_in)),
        requests_total: tail.requests_in,
        replies_rate: replies
            .iter()
            .map(|(n, v)| (n.clone(), fmt_value(last(v))))
            .collect(),
        transactions_rate: fmt_value(last(&tx)),
        transactions_current: tail.transactions_current,
        contacts: tail.contacts,
        dropped: tail.dropped,
        shards: shards
            .iter()
            .enumerate()
            .map(|(i, (_, v))| {
                (
                    i,
                    fmt_value(last(v)),
                    tail.per_shard.get(i).copied().unwrap_or(0),
                )
            })
            .collect(),
    };
    let list = vec![
        chart(
            "requests",
            "Requests",
            "per second",
            &rate_times,
            vec![("received".into(), req_in), ("sent".into(), req_out)],
        ),
        chart(
            "replies",
            "Replies sent by class",
            "per second",
            &rate_times,
            replies,
        ),
        chart(
            "transactions",
            "Transactions created",
            "per second",
            &rate_times,
            vec![("created".into(), tx)],
        ),
        chart(
            "contacts",
            "Registered contacts",
            "contacts",
            &gauge_times,
            vec![(
                "contacts".into(),
                samples.iter().map(|s| s.contacts as f64).collect(),
            )],
        ),
        chart(
            "shards",
            "Messages per shard",
            "per second",
            &rate_times,
            shards,
        ),
    ];
    (list, cur)
}

/// `?refresh=SECS`: the page reloads itself (a `<meta>` refresh: no script) every 5 s to 1 hour.
fn refresh_of(q: &Params) -> u64 {
    q.get("refresh")
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(0, |s| if s == 0 { 0 } else { s.clamp(5, 3600) })
}

async fn page(State(w): State<Arc<Web>>, headers: HeaderMap, Query(q): Query<Params>) -> Response {
    let ctx = match w.session(&headers) {
        Ok(c) => c,
        Err(r) => return r.into_response(),
    };
    let Some(h) = w.stats.as_ref() else {
        return w.error_page(&ctx, "stats", "statistics are not sampled in this server");
    };
    let samples = h.snapshot();
    let (charts, current) = charts(&samples);
    w.page(
        "stats.html",
        &ctx,
        "stats",
        context! {
            charts => charts, current => current, samples => samples.len(),
            interval => h.interval().as_secs(), window => WINDOW.as_secs() / 60,
            refresh => refresh_of(&q),
        },
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn sample(t0: Instant, secs: u64, req: u64, contacts: u64) -> Sample {
        Sample {
            at: Some(t0 + Duration::from_secs(secs)),
            requests_in: req,
            contacts,
            per_shard: vec![req],
            ..Sample::default()
        }
    }

    #[test]
    fn the_ring_keeps_one_hour() {
        let h = History::new(Duration::from_secs(10));
        assert_eq!(h.capacity(), 361);
        let t0 = Instant::now();
        for i in 0..400 {
            h.push(sample(t0, i * 10, i, 0));
        }
        let s = h.snapshot();
        assert_eq!(s.len(), 361);
        assert_eq!(s[0].requests_in, 39);
        // A zero interval is taken as one second.
        assert_eq!(History::new(Duration::ZERO).capacity(), 3601);
    }

    #[test]
    fn rates_use_the_time_that_passed() {
        let t0 = Instant::now();
        let s = [
            sample(t0, 0, 0, 0),
            sample(t0, 2, 10, 1),
            sample(t0, 6, 10, 1),
        ];
        assert_eq!(rates(&s, |s| s.requests_in), vec![5.0, 0.0]);
        let (c, cur) = charts(&s);
        assert_eq!(cur.requests_rate, "0");
        assert_eq!(cur.contacts, 1);
        assert_eq!(c.len(), 5);
        assert_eq!(c[0].series[0].points.split(' ').count(), 2);
        // The busiest point reaches the top of the chart (5 → axis 5).
        assert!(
            c[0].series[0].points.contains(&format!(",{TOP:.1}")),
            "{:?}",
            c[0]
        );
    }

    #[test]
    fn axes_read_well() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(3.2), 5.0);
        assert_eq!(nice_ceiling(11.0), 20.0);
        assert_eq!(nice_ceiling(500.0), 500.0);
        assert_eq!(axis_span(0.0), 20.0);
        assert_eq!(axis_span(100.0), 120.0);
        assert_eq!(axis_span(3600.0), 3600.0);
        assert_eq!(axis_span(4000.0), 3600.0);
        assert_eq!(ago(0.0), "now");
        assert_eq!(ago(30.0), "-30 s");
        assert_eq!(ago(900.0), "-15 min");
        assert_eq!(fmt_value(2.5), "2.50");
        assert_eq!(fmt_value(3.0), "3");
    }

    #[test]
    fn the_page_renders_escaped() {
        let (env, _) = super::super::templates(None).unwrap();
        let t0 = Instant::now();
        let s = [sample(t0, 0, 0, 0), sample(t0, 1, 4, 2)];
        let (charts, current) = charts(&s);
        let evil = "<script>alert(1)</script>";
        let html = env
            .get_template("stats.html")
            .unwrap()
            .render(context! {
                user => evil, csrf => evil, flash => evil, nav => "stats", charts => charts,
                current => current, samples => 2, interval => 1, window => 60, refresh => 10,
            })
            .unwrap();
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("id=\"current-contacts\">2<"), "{html}");
        assert!(html.contains("<polyline id=\"requests-0\""), "{html}");
        assert!(
            html.contains("<meta http-equiv=\"refresh\" content=\"10\">"),
            "{html}"
        );
        let q = |v: &str| Params::from([("refresh".to_string(), v.to_string())]);
        assert_eq!(refresh_of(&q("1")), 5);
        assert_eq!(refresh_of(&q("0")), 0);
        assert_eq!(refresh_of(&q("x")), 0);
        assert_eq!(refresh_of(&q("99999")), 3600);
    }

    #[test]
    fn no_samples_no_panic() {
        let (c, cur) = charts(&[]);
        assert!(c.iter().all(|c| c.empty));
        assert_eq!(cur.requests_total, 0);
    }
}

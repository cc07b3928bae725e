//! Counting and reporting: live counters shared by a worker with the main thread (relaxed atomics,
//! one set per worker so workers never contend), the progress line, and the final summary as text
//! (stderr) or JSON (stdout).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::json;

/// One worker's live counters.
#[derive(Default)]
pub struct Counters {
    pub started: AtomicU64,
    pub ok: AtomicU64,
    pub timeout: AtomicU64,
    pub transport: AtomicU64,
    pub parse: AtomicU64,
    pub status: AtomicU64,
    pub retrans: AtomicU64,
    pub inflight: AtomicU64,
    pub responses: AtomicU64,
    pub stray: AtomicU64,
    pub send_drops: AtomicU64,
    /// When this worker last started a call, µs after the run started.
    pub last_start_us: AtomicU64,
}

/// A point-in-time copy of [`Counters`], summed over workers.
#[derive(Clone, Copy, Default, Debug)]
pub struct Snap {
    pub started: u64,
    pub ok: u64,
    pub timeout: u64,
    pub transport: u64,
    pub parse: u64,
    pub status: u64,
    pub retrans: u64,
    pub inflight: u64,
    pub responses: u64,
    pub stray: u64,
    pub send_drops: u64,
}

impl Snap {
    pub fn failed(&self) -> u64 {
        self.timeout + self.transport + self.parse + self.status
    }
}

pub fn bump(c: &AtomicU64) {
    c.fetch_add(1, Relaxed);
}

pub fn snap(all: &[std::sync::Arc<Counters>]) -> Snap {
    let mut s = Snap::default();
    for c in all {
        s.started += c.started.load(Relaxed);
        s.ok += c.ok.load(Relaxed);
        s.timeout += c.timeout.load(Relaxed);
        s.transport += c.transport.load(Relaxed);
        s.parse += c.parse.load(Relaxed);
        s.status += c.status.load(Relaxed);
        s.retrans += c.retrans.load(Relaxed);
        s.inflight += c.inflight.load(Relaxed);
        s.responses += c.responses.load(Relaxed);
        s.stray += c.stray.load(Relaxed);
        s.send_drops += c.send_drops.load(Relaxed);
    }
    s
}

/// The progress line.
pub fn progress(elapsed: Duration, target_rate: f64, now: &Snap, prev: &Snap, dt: Duration) {
    let secs = dt.as_secs_f64().max(1e-9);
    eprintln!(
        "[{:>6.1}s] target {:>8.0}/s  started {:>8.0}/s  ok {:>9} ({:>8.0}/s)  failed {:>6}  retrans {:>6}  in-flight {:>6}",
        elapsed.as_secs_f64(),
        target_rate,
        (now.started - prev.started) as f64 / secs,
        now.ok,
        (now.ok - prev.ok) as f64 / secs,
        now.failed(),
        now.retrans,
        now.inflight,
    );
}

/// One ramp step as measured.
#[derive(Clone, Debug)]
pub struct RampStep {
    pub rate: f64,
    pub started_per_s: f64,
    pub ok_per_s: f64,
    pub fail_pct: f64,
    pub good: bool,
}

/// Everything the summary says.
pub struct Summary {
    pub scenario: &'static str,
    pub target: String,
    pub transport: &'static str,
    pub elapsed: Duration,
    pub sending: Duration,
    pub totals: Snap,
    pub by_status: BTreeMap<u16, u64>,
    pub abandoned: u64,
    pub latency: Histogram<u64>,
    pub latency_what: &'static str,
    pub ramp: Option<(Vec<RampStep>, f64, String)>,
    pub note: Option<String>,
}

impl Summary {
    fn pct(&self, q: f64) -> f64 {
        if self.latency.is_empty() {
            return 0.0;
        }
        self.latency.value_at_quantile(q) as f64 / 1000.0
    }

    pub fn achieved_rate(&self) -> f64 {
        self.totals.started as f64 / self.sending.as_secs_f64().max(1e-9)
    }

    pub fn ok_rate(&self) -> f64 {
        self.totals.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn print_text(&self) {
        let t = &self.totals;
        eprintln!(
            "--- loadgen {} → {} ({}) ---",
            self.scenario, self.target, self.transport
        );
        eprintln!(
            "elapsed {:.2}s, started {} ({:.1}/s achieved), succeeded {} ({:.1}/s), failed {}, abandoned {}",
            self.elapsed.as_secs_f64(),
            t.started,
            self.achieved_rate(),
            t.ok,
            self.ok_rate(),
            t.failed(),
            self.abandoned
        );
        if t.failed() > 0 {
            let mut parts = vec![];
            for (name, n) in [
                ("timeout", t.timeout),
                ("transport", t.transport),
                ("parse", t.parse),
            ] {
                if n > 0 {
                    parts.push(format!("{name} {n}"));
                }
            }
            for (code, n) in &self.by_status {
                parts.push(format!("status {code}: {n}"));
            }
            eprintln!("failures: {}", parts.join(", "));
        }
        eprintln!(
            "retransmissions {}, responses {}, stray/duplicate responses {}, local send drops {}",
            t.retrans, t.responses, t.stray, t.send_drops
        );
        if self.latency.is_empty() {
            // Zeros would read as "instant"; nothing succeeded, so there is nothing to measure.
            eprintln!(
                "latency ({}) ms: n/a (no request succeeded)",
                self.latency_what
            );
        } else {
            eprintln!(
                "latency ({}) ms: p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}",
                self.latency_what,
                self.pct(0.5),
                self.pct(0.9),
                self.pct(0.99),
                self.pct(0.999),
                self.latency.max() as f64 / 1000.0
            );
        }
        if let Some((steps, best, why)) = &self.ramp {
            for s in steps {
                eprintln!(
                    "ramp {:>9.0}/s: started {:>9.0}/s, ok {:>9.0}/s, failed {:>6.2}% {}",
                    s.rate,
                    s.started_per_s,
                    s.ok_per_s,
                    s.fail_pct,
                    if s.good { "good" } else { "NOT GOOD" }
                );
            }
            eprintln!("ramp: highest good rate {best:.0}/s ({why})");
        }
        if let Some(n) = &self.note {
            eprintln!("loadgen: {n}");
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        let t = &self.totals;
        let by_status: serde_json::Map<String, serde_json::Value> = self
            .by_status
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        let mut v = json!({
            "scenario": self.scenario,
            "target": self.target,
            "transport": self.transport,
            "elapsed_s": self.elapsed.as_secs_f64(),
            "started": t.started,
            "succeeded": t.ok,
            "failed": t.failed(),
            "abandoned": self.abandoned,
            "achieved_rate": self.achieved_rate(),
            "success_rate": self.ok_rate(),
            "failures": {
                "timeout": t.timeout,
                "transport": t.transport,
                "parse": t.parse,
                "status": by_status,
            },
            "retransmissions": t.retrans,
            "responses": t.responses,
            "stray_responses": t.stray,
            "send_drops": t.send_drops,
            "latency_ms": if self.latency.is_empty() {
                // No sample: null, not a latency of 0.
                json!({
                    "what": self.latency_what,
                    "count": 0,
                    "p50": null, "p90": null, "p99": null, "p99_9": null, "max": null,
                })
            } else {
                json!({
                    "what": self.latency_what,
                    "count": self.latency.len(),
                    "p50": self.pct(0.5),
                    "p90": self.pct(0.9),
                    "p99": self.pct(0.99),
                    "p99_9": self.pct(0.999),
                    "max": self.latency.max() as f64 / 1000.0,
                })
            },
        });
        if let Some((steps, best, why)) = &self.ramp {
            v["ramp"] = json!({
                "highest_good_rate": best,
                "stopped_because": why,
                "steps": steps.iter().map(|s| json!({
                    "rate": s.rate, "started_per_s": s.started_per_s, "ok_per_s": s.ok_per_s, "fail_pct": s.fail_pct, "good": s.good
                })).collect::<Vec<_>>(),
            });
        }
        if let Some(n) = &self.note {
            v["note"] = json!(n);
        }
        v
    }
}

//! Connections that close before sending a single byte.
//!
//! Chromium's Local Network Access check opens the TCP connection to the daemon and
//! only then decides the page may not use it, closing the socket without a byte
//! (measured with Chromium 156, docs/integration.md). The page sees a bare close
//! 1006, the same as a refused origin or no daemon at all, so the daemon is the only
//! place that can tell the admin "a browser tried and was stopped". Port scans look
//! the same from here, hence the hint names both.
//!
//! Each such connection is counted (`vitale_bridge_silent_connections_total`), and
//! logged at most once per [`LOG_PERIOD`]: the first of a quiet spell at once, the
//! rest of the period in one summary line when it ends. `GET /diagnostics`, `doctor`
//! and the status page say whether one happened in the last [`RECENT`].

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::bus::Hub;

/// At most one log line per period, whatever the rate of silent connections.
pub const LOG_PERIOD: Duration = Duration::from_secs(60);

/// How long a silent connection counts as "recent" for `/diagnostics` and `doctor`.
pub const RECENT: Duration = Duration::from_secs(10 * 60);

const HINT: &str = "a browser's Local Network Access check, or a port scan: if a web page cannot connect, allow its origin in the browser (policy LocalNetworkAccessAllowedForUrls, docs/integration.md)";

#[derive(Debug, Default)]
struct State {
    total: u64,
    last: Option<Instant>,
    /// When the last line was logged; `None` before the first.
    logged_at: Option<Instant>,
    /// Counted since that line, not yet logged.
    unlogged: u64,
    /// A summary line is scheduled for the end of the period.
    flush_armed: bool,
}

/// What `/diagnostics` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    /// Silent connections since the daemon started.
    pub total: u64,
    /// Time since the last one, if any.
    pub last_ago: Option<Duration>,
}

impl Seen {
    /// Whether the last one falls within [`RECENT`].
    pub fn recent(&self) -> bool {
        self.last_ago.is_some_and(|a| a <= RECENT)
    }

    /// The `/diagnostics` body.
    pub fn to_json(self) -> serde_json::Value {
        serde_json::json!({
            "silentConnections": {
                "total": self.total,
                "lastSecondsAgo": self.last_ago.map(|a| a.as_secs()),
                "recent": self.recent(),
            }
        })
    }
}

/// The watch the server shares between connections.
#[derive(Debug, Clone, Default)]
pub struct SilentWatch {
    state: Arc<Mutex<State>>,
}

/// What [`SilentWatch::record`] decided about logging.
#[derive(Debug, PartialEq, Eq)]
enum Decision {
    /// Log this one now.
    LogNow,
    /// Counted for the summary; schedule it (first time in the period) after this.
    Schedule(Option<Duration>),
}

impl SilentWatch {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Plain counters: a panic elsewhere cannot leave them inconsistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts one silent connection and logs within the rate limit. Needs a tokio
    /// runtime (the summary line is a timer task).
    pub fn noticed(&self, hub: &Hub) {
        hub.metrics().silent_connection();
        match self.record(Instant::now()) {
            Decision::LogNow => tracing::info!(
                count = 1,
                "a connection closed before sending anything: {HINT}"
            ),
            Decision::Schedule(None) => {}
            Decision::Schedule(Some(delay)) => {
                let watch = self.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    if let Some(n) = watch.flush(Instant::now()) {
                        tracing::info!(
                            count = n,
                            period_s = LOG_PERIOD.as_secs(),
                            "connections closed before sending anything in the last period: {HINT}"
                        );
                    }
                });
            }
        }
    }

    /// The bookkeeping behind [`noticed`](Self::noticed), pure for tests.
    fn record(&self, now: Instant) -> Decision {
        let mut st = self.lock();
        st.total += 1;
        st.last = Some(now);
        let quiet = st
            .logged_at
            .is_none_or(|at| now.duration_since(at) >= LOG_PERIOD);
        if quiet && !st.flush_armed {
            st.logged_at = Some(now);
            return Decision::LogNow;
        }
        st.unlogged += 1;
        if st.flush_armed {
            return Decision::Schedule(None);
        }
        st.flush_armed = true;
        let since = st
            .logged_at
            .map_or(Duration::ZERO, |at| now.duration_since(at));
        Decision::Schedule(Some(LOG_PERIOD.saturating_sub(since)))
    }

    /// Ends a period: how many to log in the summary, if any.
    fn flush(&self, now: Instant) -> Option<u64> {
        let mut st = self.lock();
        st.flush_armed = false;
        let n = std::mem::take(&mut st.unlogged);
        if n == 0 {
            return None;
        }
        st.logged_at = Some(now);
        Some(n)
    }

    /// The `GET /diagnostics` response: JSON, no CORS header, so only same-origin
    /// pages (the status page) and local tools (`doctor`) can read it.
    pub fn diagnostics_response(&self) -> Vec<u8> {
        let body = self.seen(Instant::now()).to_json().to_string();
        super::http::response(200, "application/json", &[], body.as_bytes())
    }

    /// Totals for `/diagnostics`.
    pub fn seen(&self, now: Instant) -> Seen {
        let st = self.lock();
        Seen {
            total: st.total,
            last_ago: st.last.map(|t| now.saturating_duration_since(t)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_logs_at_once_then_one_summary_per_period() {
        let w = SilentWatch::default();
        let t0 = Instant::now();
        assert_eq!(w.record(t0), Decision::LogNow);
        let d = w.record(t0 + Duration::from_secs(1));
        assert_eq!(
            d,
            Decision::Schedule(Some(LOG_PERIOD - Duration::from_secs(1)))
        );
        for i in 2..100 {
            assert_eq!(
                w.record(t0 + Duration::from_millis(1000 + i)),
                Decision::Schedule(None),
                "one timer per period"
            );
        }
        assert_eq!(w.flush(t0 + LOG_PERIOD), Some(99));
        assert_eq!(w.seen(t0 + LOG_PERIOD).total, 100);
        // Right after a summary, the next one waits for the following period.
        let d = w.record(t0 + LOG_PERIOD + Duration::from_secs(5));
        assert_eq!(
            d,
            Decision::Schedule(Some(LOG_PERIOD - Duration::from_secs(5)))
        );
        assert_eq!(w.flush(t0 + LOG_PERIOD * 2), Some(1));
        // A quiet period later: logged at once again.
        assert_eq!(w.record(t0 + LOG_PERIOD * 4), Decision::LogNow);
    }

    #[test]
    fn a_flush_with_nothing_pending_logs_nothing() {
        let w = SilentWatch::default();
        let t0 = Instant::now();
        assert_eq!(w.flush(t0), None);
        assert_eq!(w.record(t0), Decision::LogNow);
    }

    #[test]
    fn recent_means_within_the_window() {
        let w = SilentWatch::default();
        let t0 = Instant::now();
        let never = w.seen(t0);
        assert_eq!(never.total, 0);
        assert!(!never.recent());
        assert_eq!(
            never.to_json()["silentConnections"]["lastSecondsAgo"],
            serde_json::Value::Null
        );
        w.record(t0);
        let now = w.seen(t0 + Duration::from_secs(30));
        assert!(now.recent());
        assert_eq!(
            now.to_json(),
            serde_json::json!({"silentConnections": {"total": 1, "lastSecondsAgo": 30, "recent": true}})
        );
        assert!(!w.seen(t0 + RECENT + Duration::from_secs(1)).recent());
    }
}

//! Process-local counters, rendered as Prometheus text at `GET /metrics`.
//! Plain atomics: no labels beyond a fixed set of reasons and status
//! classes, and never anything from a request body.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

/// Why an upload (or statement) was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    /// Did not parse.
    Malformed,
    /// `record_id` differs from the path.
    WrongRecord,
    /// `section` differs from the path.
    WrongSection,
    /// Over a size or count limit.
    TooLarge,
    /// Author is not a member with write access.
    NotMember,
    /// Signature did not verify.
    BadSignature,
    /// An access statement or identity card failed verification.
    BadStatement,
}

impl Reject {
    const ALL: [Reject; 7] = [
        Reject::Malformed,
        Reject::WrongRecord,
        Reject::WrongSection,
        Reject::TooLarge,
        Reject::NotMember,
        Reject::BadSignature,
        Reject::BadStatement,
    ];

    fn label(self) -> &'static str {
        match self {
            Reject::Malformed => "malformed",
            Reject::WrongRecord => "wrong_record",
            Reject::WrongSection => "wrong_section",
            Reject::TooLarge => "too_large",
            Reject::NotMember => "not_member",
            Reject::BadSignature => "bad_signature",
            Reject::BadStatement => "bad_statement",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The relay's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: AtomicU64,
    responses: [AtomicU64; 5],
    envelopes_stored: AtomicU64,
    envelope_duplicates: AtomicU64,
    bytes_stored: AtomicU64,
    snapshots_stored: AtomicU64,
    rejections: [AtomicU64; 7],
    rate_limited: AtomicU64,
    subscribers: AtomicI64,
    subscriber_wakeups: AtomicU64,
    push_frames: AtomicU64,
    connections: AtomicI64,
    connections_shed: AtomicU64,
    connections_evicted: AtomicU64,
    body_timeouts: AtomicU64,
}

impl Metrics {
    /// A response was sent with `status`.
    pub fn response(&self, status: u16) {
        self.requests.fetch_add(1, Relaxed);
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.responses[class].fetch_add(1, Relaxed);
    }

    /// Envelopes newly stored, duplicates acknowledged, bytes stored.
    pub fn stored(&self, new: u64, duplicates: u64, bytes: u64) {
        self.envelopes_stored.fetch_add(new, Relaxed);
        self.envelope_duplicates.fetch_add(duplicates, Relaxed);
        self.bytes_stored.fetch_add(bytes, Relaxed);
    }

    /// A snapshot of `bytes` replaced the previous one.
    pub fn snapshot(&self, bytes: u64) {
        self.snapshots_stored.fetch_add(1, Relaxed);
        self.bytes_stored.fetch_add(bytes, Relaxed);
    }

    /// A batch or statement was refused.
    pub fn reject(&self, why: Reject) {
        self.rejections[why.index()].fetch_add(1, Relaxed);
    }

    /// A request was refused by the rate limiter.
    pub fn rate_limited(&self) {
        self.rate_limited.fetch_add(1, Relaxed);
    }

    /// A WebSocket subscriber connected (+1) or left (-1).
    pub fn subscribers(&self, delta: i64) {
        self.subscribers.fetch_add(delta, Relaxed);
    }

    /// A subscriber was handed a change (of its record or, with
    /// `--fanout-scan`, of any record).
    pub fn subscriber_woken(&self) {
        self.subscriber_wakeups.fetch_add(1, Relaxed);
    }

    /// A `changed` frame was sent to a subscriber.
    pub fn push_frame(&self) {
        self.push_frames.fetch_add(1, Relaxed);
    }

    /// A TCP connection was admitted (+1) or closed (-1).
    pub fn connections(&self, delta: i64) {
        self.connections.fetch_add(delta, Relaxed);
    }

    /// A new connection was closed at once: its client address, or the
    /// relay, was at its connection cap with nothing to evict.
    pub fn connection_shed(&self) {
        self.connections_shed.fetch_add(1, Relaxed);
    }

    /// An idle or slow connection was closed to make room for a new one.
    pub fn connection_evicted(&self) {
        self.connections_evicted.fetch_add(1, Relaxed);
    }

    /// A request body did not arrive within the body timeout.
    pub fn body_timeout(&self) {
        self.body_timeouts.fetch_add(1, Relaxed);
    }

    /// Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(2048);
        let mut counter = |name: &str, help: &str, kind: &str, lines: Vec<(String, i64)>| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (labels, v) in lines {
                let _ = writeln!(out, "{name}{labels} {v}");
            }
        };
        let get = |a: &AtomicU64| i64::try_from(a.load(Relaxed)).unwrap_or(i64::MAX);
        counter(
            "satchel_http_requests_total",
            "HTTP requests answered.",
            "counter",
            vec![(String::new(), get(&self.requests))],
        );
        counter(
            "satchel_http_responses_total",
            "HTTP responses by status class.",
            "counter",
            self.responses
                .iter()
                .enumerate()
                .map(|(i, a)| (format!("{{class=\"{}xx\"}}", i + 1), get(a)))
                .collect(),
        );
        counter(
            "satchel_envelopes_stored_total",
            "Envelopes newly stored.",
            "counter",
            vec![(String::new(), get(&self.envelopes_stored))],
        );
        counter(
            "satchel_envelope_duplicates_total",
            "Uploaded envelopes that were already stored.",
            "counter",
            vec![(String::new(), get(&self.envelope_duplicates))],
        );
        counter(
            "satchel_bytes_stored_total",
            "Bytes of envelopes and snapshots stored.",
            "counter",
            vec![(String::new(), get(&self.bytes_stored))],
        );
        counter(
            "satchel_snapshots_stored_total",
            "Snapshots stored.",
            "counter",
            vec![(String::new(), get(&self.snapshots_stored))],
        );
        counter(
            "satchel_rejections_total",
            "Uploads and statements refused, by reason.",
            "counter",
            Reject::ALL
                .iter()
                .map(|r| {
                    (
                        format!("{{reason=\"{}\"}}", r.label()),
                        get(&self.rejections[r.index()]),
                    )
                })
                .collect(),
        );
        counter(
            "satchel_rate_limited_total",
            "Requests refused by the rate limiter.",
            "counter",
            vec![(String::new(), get(&self.rate_limited))],
        );
        counter(
            "satchel_subscribers",
            "Connected WebSocket subscribers.",
            "gauge",
            vec![(String::new(), self.subscribers.load(Relaxed))],
        );
        counter(
            "satchel_subscriber_wakeups_total",
            "Changes handed to WebSocket subscribers (the fan-out's work: with the record index, only subscribers of the changed record).",
            "counter",
            vec![(String::new(), i64::try_from(self.subscriber_wakeups.load(Relaxed)).unwrap_or(i64::MAX))],
        );
        counter(
            "satchel_push_frames_total",
            "Change notices sent to WebSocket subscribers.",
            "counter",
            vec![(
                String::new(),
                i64::try_from(self.push_frames.load(Relaxed)).unwrap_or(i64::MAX),
            )],
        );
        counter(
            "satchel_connections",
            "Open client connections (WebSocket subscribers included).",
            "gauge",
            vec![(String::new(), self.connections.load(Relaxed))],
        );
        counter(
            "satchel_connections_shed_total",
            "Connections closed on arrival: the connection cap was reached with nothing to evict.",
            "counter",
            vec![(String::new(), get(&self.connections_shed))],
        );
        counter(
            "satchel_connections_evicted_total",
            "Idle or slow connections closed to admit a new one.",
            "counter",
            vec![(String::new(), get(&self.connections_evicted))],
        );
        counter(
            "satchel_request_body_timeouts_total",
            "Requests whose body did not arrive within the body timeout (408).",
            "counter",
            vec![(String::new(), get(&self.body_timeouts))],
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_family() {
        let m = Metrics::default();
        m.response(200);
        m.response(422);
        m.stored(3, 1, 300);
        m.reject(Reject::BadSignature);
        m.subscribers(1);
        let text = m.render();
        assert!(text.contains("satchel_http_requests_total 2"));
        assert!(text.contains("satchel_http_responses_total{class=\"4xx\"} 1"));
        assert!(text.contains("satchel_envelopes_stored_total 3"));
        assert!(text.contains("satchel_rejections_total{reason=\"bad_signature\"} 1"));
        assert!(text.contains("satchel_subscribers 1"));
    }
}

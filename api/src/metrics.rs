//! Request counts and latency by route and status, served as Prometheus text at `/metrics` and,
//! when OTLP is configured, recorded as OpenTelemetry instruments too.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram};
use parking_lot::Mutex;

const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

#[derive(Default)]
struct Series {
    count: u64,
    sum: f64,
    buckets: [u64; BUCKETS.len()],
}

pub struct Metrics {
    series: Mutex<BTreeMap<(String, String, u16), Series>>,
    otel_count: Counter<u64>,
    otel_duration: Histogram<f64>,
}

impl Default for Metrics {
    fn default() -> Self {
        let meter = opentelemetry::global::meter("iocloud");
        Metrics {
            series: Mutex::default(),
            otel_count: meter.u64_counter("http.server.requests").build(),
            otel_duration: meter
                .f64_histogram("http.server.request.duration")
                .with_unit("s")
                .build(),
        }
    }
}

impl Metrics {
    pub fn record(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        {
            let mut series = self.series.lock();
            let s = series
                .entry((route.to_string(), method.to_string(), status))
                .or_default();
            s.count += 1;
            s.sum += secs;
            for (i, le) in BUCKETS.iter().enumerate() {
                if secs <= *le {
                    s.buckets[i] += 1;
                }
            }
        }
        let attrs = [
            KeyValue::new("http.request.method", method.to_string()),
            KeyValue::new("http.route", route.to_string()),
            KeyValue::new("http.response.status_code", i64::from(status)),
        ];
        self.otel_count.add(1, &attrs);
        self.otel_duration.record(secs, &attrs);
    }

    /// The Prometheus text exposition format.
    pub fn render(&self) -> String {
        let series = self.series.lock();
        let mut out = String::new();
        out.push_str("# HELP iocloud_http_requests_total HTTP requests answered.\n# TYPE iocloud_http_requests_total counter\n");
        for ((route, method, status), s) in series.iter() {
            let _ = writeln!(
                out,
                "iocloud_http_requests_total{{route=\"{route}\",method=\"{method}\",status=\"{status}\"}} {}",
                s.count
            );
        }
        out.push_str("# HELP iocloud_http_request_duration_seconds Time to answer an HTTP request.\n# TYPE iocloud_http_request_duration_seconds histogram\n");
        for ((route, method, status), s) in series.iter() {
            let labels = format!("route=\"{route}\",method=\"{method}\",status=\"{status}\"");
            for (i, le) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "iocloud_http_request_duration_seconds_bucket{{{labels},le=\"{le}\"}} {}",
                    s.buckets[i]
                );
            }
            let _ = writeln!(
                out,
                "iocloud_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                s.count
            );
            let _ = writeln!(
                out,
                "iocloud_http_request_duration_seconds_sum{{{labels}}} {}",
                s.sum
            );
            let _ = writeln!(
                out,
                "iocloud_http_request_duration_seconds_count{{{labels}}} {}",
                s.count
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_cumulative_buckets() {
        let m = Metrics::default();
        m.record("GET", "/v1/me", 200, Duration::from_millis(3));
        m.record("GET", "/v1/me", 200, Duration::from_millis(30));
        let text = m.render();
        assert!(text.contains(
            "iocloud_http_requests_total{route=\"/v1/me\",method=\"GET\",status=\"200\"} 2"
        ));
        assert!(text.contains("le=\"0.005\"} 1"));
        assert!(text.contains("le=\"0.05\"} 2"));
        assert!(text.contains("le=\"+Inf\"} 2"));
    }
}

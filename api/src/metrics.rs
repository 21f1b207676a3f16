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

#[derive(Default, Clone)]
struct Series {
    count: u64,
    sum: f64,
    buckets: [u64; BUCKETS.len()],
}

/// Route → (method, status, series). Looked up by `&str`, so recording a request that was
/// seen before allocates nothing.
type Table = BTreeMap<String, Vec<(String, u16, Series)>>;

pub struct Metrics {
    series: Mutex<Table>,
    /// OpenTelemetry instruments, only when an OTLP exporter is configured.
    otel: Option<(Counter<u64>, Histogram<f64>)>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new(false)
    }
}

impl Metrics {
    pub fn new(otel: bool) -> Metrics {
        let otel = otel.then(|| {
            let meter = opentelemetry::global::meter("iocloud");
            let count = meter.u64_counter("http.server.requests").build();
            let duration = meter
                .f64_histogram("http.server.request.duration")
                .with_unit("s")
                .build();
            (count, duration)
        });
        Metrics {
            series: Mutex::default(),
            otel,
        }
    }
}

impl Metrics {
    pub fn record(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        {
            let mut table = self.series.lock();
            let row = match table.get_mut(route) {
                Some(row) => row,
                None => table.entry(route.to_string()).or_default(),
            };
            let s = match row
                .iter()
                .position(|(m, st, _)| m == method && *st == status)
            {
                Some(i) => &mut row[i].2,
                None => {
                    row.push((method.to_string(), status, Series::default()));
                    &mut row.last_mut().expect("just pushed").2
                }
            };
            s.count += 1;
            s.sum += secs;
            for (i, le) in BUCKETS.iter().enumerate() {
                if secs <= *le {
                    s.buckets[i] += 1;
                }
            }
        }
        if let Some((count, duration)) = &self.otel {
            let attrs = [
                KeyValue::new("http.request.method", method.to_string()),
                KeyValue::new("http.route", route.to_string()),
                KeyValue::new("http.response.status_code", i64::from(status)),
            ];
            count.add(1, &attrs);
            duration.record(secs, &attrs);
        }
    }

    /// The Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut series: Vec<((String, String, u16), Series)> = Vec::new();
        for (route, row) in self.series.lock().iter() {
            for (method, status, s) in row {
                series.push(((route.clone(), method.clone(), *status), s.clone()));
            }
        }
        series.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out = String::new();
        out.push_str("# HELP iocloud_http_requests_total HTTP requests answered.\n# TYPE iocloud_http_requests_total counter\n");
        for ((route, method, status), s) in &series {
            let _ = writeln!(
                out,
                "iocloud_http_requests_total{{route=\"{route}\",method=\"{method}\",status=\"{status}\"}} {}",
                s.count
            );
        }
        out.push_str("# HELP iocloud_http_request_duration_seconds Time to answer an HTTP request.\n# TYPE iocloud_http_request_duration_seconds histogram\n");
        for ((route, method, status), s) in &series {
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

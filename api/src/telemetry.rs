//! Logs through `tracing`; with `OTEL_EXPORTER_OTLP_ENDPOINT`, traces and metrics over OTLP too.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Keeps the exporters alive; dropping it flushes what is pending.
#[derive(Default)]
pub struct Telemetry {
    tracer: Option<SdkTracerProvider>,
    meter: Option<SdkMeterProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(t) = self.tracer.take() {
            let _ = t.shutdown();
        }
        if let Some(m) = self.meter.take() {
            let _ = m.shutdown();
        }
    }
}

/// Installs the global subscriber. Call once, inside the Tokio runtime.
pub fn init(json: bool, otlp_endpoint: Option<&str>) -> anyhow::Result<Telemetry> {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=info"));
    let fmt = if json {
        tracing_subscriber::fmt::layer().json().boxed()
    } else {
        tracing_subscriber::fmt::layer().compact().boxed()
    };
    let mut telemetry = Telemetry::default();
    let otel = match otlp_endpoint {
        Some(endpoint) => {
            let resource = Resource::builder().with_service_name("iocloud").build();
            let spans = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint)
                .build()?;
            let tracer = SdkTracerProvider::builder()
                .with_batch_exporter(spans)
                .with_resource(resource.clone())
                .build();
            let metrics = opentelemetry_otlp::MetricExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint)
                .build()?;
            let meter = SdkMeterProvider::builder()
                .with_periodic_exporter(metrics)
                .with_resource(resource)
                .build();
            opentelemetry::global::set_meter_provider(meter.clone());
            let layer = tracing_opentelemetry::layer().with_tracer(tracer.tracer("iocloud"));
            telemetry.tracer = Some(tracer);
            telemetry.meter = Some(meter);
            Some(layer)
        }
        None => None,
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(otel)
        .try_init()?;
    Ok(telemetry)
}

#[cfg(test)]
mod tests {
    /// With an OTLP endpoint configured, the exporters and the subscriber are built (the gRPC
    /// channel connects lazily, so nothing needs to listen). One test: the subscriber is global.
    #[tokio::test]
    async fn otlp_exporters_are_built_when_configured() {
        let telemetry = super::init(true, Some("http://127.0.0.1:4317")).expect("telemetry starts");
        assert!(telemetry.tracer.is_some() && telemetry.meter.is_some());
        tracing::info!("a span and an event reach the OTLP layer");
    }
}

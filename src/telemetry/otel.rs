//! OpenTelemetry export over OTLP/HTTP, on when the standard `OTEL_EXPORTER_OTLP_ENDPOINT`
//! (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) variable is set; the other standard variables
//! (`OTEL_SERVICE_NAME`, `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_BSP_*`) apply as usual. Spans
//! are sent with the bridge's own reqwest client.

use std::collections::HashMap;
use std::sync::OnceLock;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;

static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// Whether the environment asks for OTLP export.
pub fn requested() -> bool {
    [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ]
    .iter()
    .any(|v| std::env::var(v).is_ok_and(|s| !s.is_empty()))
}

/// The exporter's transport: the bridge's reqwest client, run on the tokio runtime (the
/// SDK's batch processor calls it from its own thread).
#[derive(Debug)]
struct Client {
    http: reqwest::Client,
    rt: tokio::runtime::Handle,
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for Client {
    async fn send_bytes(
        &self,
        request: opentelemetry_http::Request<opentelemetry_http::Bytes>,
    ) -> Result<
        opentelemetry_http::Response<opentelemetry_http::Bytes>,
        opentelemetry_http::HttpError,
    > {
        let http = self.http.clone();
        let task = self.rt.spawn(async move {
            let (parts, body) = request.into_parts();
            let mut req = http.request(parts.method, parts.uri.to_string()).body(body);
            for (k, v) in parts.headers.iter() {
                req = req.header(k, v);
            }
            let resp = req.send().await?;
            let status = resp.status();
            let headers = resp.headers().clone();
            let bytes = resp.bytes().await?;
            let mut out = opentelemetry_http::Response::new(bytes);
            *out.status_mut() = status;
            *out.headers_mut() = headers;
            Ok::<_, reqwest::Error>(out)
        });
        match task.await {
            Ok(r) => r.map_err(|e| Box::new(e) as opentelemetry_http::HttpError),
            Err(e) => Err(Box::new(e) as opentelemetry_http::HttpError),
        }
    }
}

/// The tracing layer that exports spans, or `None` when export is off or cannot start
/// (the reason is printed: logging is not up yet).
pub fn layer<S>()
-> Option<tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::Tracer>>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    if !requested() {
        return None;
    }
    let rt = tokio::runtime::Handle::try_current().ok()?;
    crate::util::net::install_crypto_provider();
    let http = match reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("OpenTelemetry export off: cannot build its HTTP client: {e}");
            return None;
        }
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_http_client(Client { http, rt })
        .build();
    let exporter = match exporter {
        Ok(e) => e,
        Err(e) => {
            eprintln!("OpenTelemetry export off: {e}");
            return None;
        }
    };
    let service =
        std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| "redis-webhook-bridge".into());
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(service)
                .build(),
        )
        .build();
    let tracer = provider.tracer("redis-webhook-bridge");
    let _ = PROVIDER.set(provider);
    Some(tracing_opentelemetry::layer().with_tracer(tracer))
}

/// Exports what is buffered; call before exit.
pub fn shutdown() {
    if let Some(p) = PROVIDER.get() {
        let _ = p.force_flush();
        let _ = p.shutdown();
    }
}

/// With export on: makes `span` a child of the publisher's `traceparent` (if valid) and
/// returns the `traceparent` naming `span`.
pub fn traceparent_for(span: &tracing::Span, parent: Option<&str>) -> Option<String> {
    PROVIDER.get()?;
    if let Some(tp) = parent {
        let carrier: HashMap<String, String> =
            HashMap::from([("traceparent".to_string(), tp.to_string())]);
        let cx = TraceContextPropagator::new().extract(&carrier);
        if cx.span().span_context().is_valid() {
            let _ = span.set_parent(cx);
        }
    }
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    if !sc.is_valid() {
        return None;
    }
    Some(format!(
        "00-{}-{}-{:02x}",
        sc.trace_id(),
        sc.span_id(),
        sc.trace_flags().to_u8()
    ))
}

//! Installing the process-wide subscriber, tracer provider and propagator.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor;
use opentelemetry_sdk::trace::{BatchConfigBuilder, Sampler, SdkTracerProvider};
use tracing::Dispatch;
use tracing_subscriber::filter::{EnvFilter, LevelFilter, Targets};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;

use crate::json::json_format;
use crate::{Error, LogFormat, TelemetryConfig, export};

/// Set by the first successful [`init`]; a second call fails fast.
static INITIALIZED: AtomicBool = AtomicBool::new(false);

/// Installs logging and tracing for this process, writing logs to stderr.
///
/// Call once, early in `main`, inside the tokio runtime when an OTLP endpoint
/// is configured (the batch processor is a tokio task). Keep the returned
/// guard alive for the life of the process; dropping it (or awaiting
/// [`TelemetryGuard::shutdown`]) flushes queued spans. A second call returns
/// [`Error::AlreadyInitialized`].
///
/// Besides the `tracing` subscriber it installs the W3C trace-context
/// propagator and the tracer provider as the `opentelemetry::global` ones.
pub fn init(cfg: TelemetryConfig) -> Result<TelemetryGuard, Error> {
    init_with_writer(cfg, std::io::stderr)
}

/// [`init`] with logs written to `writer` instead of stderr.
pub fn init_with_writer<W>(cfg: TelemetryConfig, writer: W) -> Result<TelemetryGuard, Error>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    if INITIALIZED.swap(true, Ordering::SeqCst) {
        return Err(Error::AlreadyInitialized);
    }
    let result = build_dispatch(cfg, writer).and_then(|(dispatch, guard)| {
        tracing::dispatcher::set_global_default(dispatch).map_err(|_| Error::AlreadyInitialized)?;
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        if let Some(p) = &guard.provider {
            opentelemetry::global::set_tracer_provider(p.clone());
        }
        Ok(guard)
    });
    if result.is_err() {
        INITIALIZED.store(false, Ordering::SeqCst);
    }
    result
}

/// Builds the subscriber without installing it anywhere.
///
/// For tests and embedders that scope it with
/// `tracing::dispatcher::set_default` / `with_default`. The guard owns the
/// tracer provider exactly as with [`init`].
pub fn build_dispatch<W>(
    cfg: TelemetryConfig,
    writer: W,
) -> Result<(Dispatch, TelemetryGuard), Error>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    use tracing_subscriber::Layer as _;

    cfg.validate()?;
    let log_filter = EnvFilter::builder()
        .parse(&cfg.filter)
        .map_err(|source| Error::Filter {
            directive: cfg.filter.clone(),
            source,
        })?;
    let span_filter: Targets = cfg.trace_filter.parse().map_err(|source| Error::Filter {
        directive: cfg.trace_filter.clone(),
        source,
    })?;

    let provider = provider(&cfg)?;
    let tracer = provider.tracer("nexus-telemetry");
    let otel = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_location(false)
        .with_threads(false)
        .with_target(false)
        // No busy/idle timing attributes: two clock reads per poll saved.
        .with_tracked_inactivity(false)
        // Entering a span does not attach its context to OpenTelemetry's
        // thread-local `Context::current()`; our helpers use `span.context()`.
        .with_context_activation(false)
        .with_filter(span_filter);

    let subscriber = tracing_subscriber::registry().with(otel).with(fmt_layer(
        cfg.log_format,
        cfg.ansi,
        log_filter,
        writer,
    ));
    let guard = TelemetryGuard {
        provider: Some(provider),
        exporting: cfg.otlp_endpoint.is_some(),
        shutdown_bound: cfg.batch.export_timeout + Duration::from_secs(1),
    };
    Ok((Dispatch::new(subscriber), guard))
}

/// The log layer, boxed so both formats share one subscriber type (`Option`
/// layers would not forward `on_register_dispatch`, which JSON needs).
fn fmt_layer<S, W>(
    format: LogFormat,
    ansi: bool,
    filter: EnvFilter,
    writer: W,
) -> Box<dyn tracing_subscriber::Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    use tracing_subscriber::Layer as _;
    match format {
        LogFormat::Human => Box::new(
            tracing_subscriber::fmt::layer()
                .with_ansi(ansi)
                .with_writer(writer)
                .with_filter(filter),
        ),
        LogFormat::Json => {
            let (format, capture) = json_format();
            // The capture layer sees no callsite (filter OFF) but is still
            // told the dispatcher, without widening the subscriber's interest.
            Box::new(
                tracing_subscriber::fmt::layer()
                    .with_ansi(false)
                    .event_format(format)
                    .with_writer(writer)
                    .with_filter(filter)
                    .and_then(capture.with_filter(LevelFilter::OFF)),
            )
        }
    }
}

fn provider(cfg: &TelemetryConfig) -> Result<SdkTracerProvider, Error> {
    let sampler = Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(cfg.sampling_ratio)));
    // `builder_empty`: no resource detectors, so nothing is read from the environment.
    let resource = Resource::builder_empty()
        .with_service_name(cfg.service_name.clone().into_owned())
        .build();
    let mut builder = SdkTracerProvider::builder()
        .with_sampler(sampler)
        .with_resource(resource);
    if let Some(url) = cfg.traces_url() {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(Error::NoRuntime);
        }
        let exporter = export::otlp(cfg, url)?;
        let b = &cfg.batch;
        // Every field is set explicitly so `OTEL_BSP_*` variables cannot override them.
        let batch = BatchConfigBuilder::default()
            .with_max_queue_size(b.max_queue_size.get())
            .with_scheduled_delay(b.scheduled_delay)
            .with_max_export_batch_size(b.max_export_batch_size.get())
            .with_max_export_timeout(b.export_timeout)
            .with_max_concurrent_exports(1)
            .build();
        let processor = BatchSpanProcessor::builder(exporter, opentelemetry_sdk::runtime::Tokio)
            .with_batch_config(batch)
            .build();
        builder = builder.with_span_processor(processor);
    }
    Ok(builder.build())
}

/// Owns the tracer provider; flushes and shuts it down on drop or [`shutdown`](Self::shutdown).
///
/// Prefer `guard.shutdown().await` at the end of an async `main`: dropping
/// the guard on a current-thread runtime cannot wait for the export task
/// (it runs on the very thread being blocked), so `Drop` then gives up after
/// the bound instead of flushing.
#[derive(Debug)]
#[must_use = "dropping the guard shuts telemetry down"]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
    exporting: bool,
    shutdown_bound: Duration,
}

impl TelemetryGuard {
    /// Whether spans are exported (an OTLP endpoint was configured).
    pub fn is_exporting(&self) -> bool {
        self.exporting
    }

    /// Flushes queued spans and stops the exporter, waiting at most the
    /// export timeout plus one second. Returns `false` when it gave up or the
    /// provider reported an error (export failures included).
    pub async fn shutdown(mut self) -> bool {
        let Some(provider) = self.provider.take() else {
            return true;
        };
        let bound = self.shutdown_bound;
        // The SDK blocks the calling thread while the batch task drains: run
        // it off the runtime threads so that task can make progress.
        let task = tokio::task::spawn_blocking(move || provider.shutdown().is_ok());
        matches!(tokio::time::timeout(bound, task).await, Ok(Ok(true)))
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        let Some(provider) = self.provider.take() else {
            return;
        };
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let spawned = std::thread::Builder::new()
            .name("nexus-telemetry-shutdown".into())
            .spawn(move || {
                let _ = tx.send(provider.shutdown().is_ok());
            });
        if spawned.is_ok() {
            // Bounded: on a current-thread runtime the batch task cannot run
            // while we wait here, so we give up rather than hang.
            let _ = rx.recv_timeout(self.shutdown_bound);
        }
    }
}

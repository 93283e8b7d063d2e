//! One endpoint's delivery worker: takes jobs from the endpoint's queue, at most
//! `concurrency` at a time, waits while the circuit is open, applies the endpoint's
//! `transform` (if any) to the message, signs and POSTs the resulting body, and settles
//! each job as delivered, scheduled for a retry, or dead-lettered.
//!
//! The transform runs here, at delivery, and the queues and the dead-letter stream keep
//! the original message: a `dlq replay` (or a retry after a reload) runs the endpoint's
//! current transform. The idempotency key and event type are the original message's; the
//! signature covers the bytes sent.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::Outcome;
use super::circuit::{Admit, Circuit, State};
use super::client::{ClientError, EndpointClient};
use super::retry::RetryPolicy;
use super::signing::{self, Signer, SigningError};
use crate::config::{EndpointConfig, SecurityConfig};
use crate::endpoint_state::EndpointState;
use crate::expr::ExprError;
use crate::message::{DeadLetter, DeadLetterSink, Job, Message, Stage};
use crate::queue::Queue;
use crate::telemetry::{self, FailureReason, metric};

/// How long a settled job may wait for the dead-letter stream to accept it.
const DLQ_PATIENCE: Duration = Duration::from_secs(300);

/// A worker could not be built from its endpoint's config.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The secrets do not fit the scheme.
    #[error("endpoint {endpoint}: {source}")]
    Signing {
        /// Endpoint name.
        endpoint: String,
        /// The cause.
        source: SigningError,
    },
    /// The HTTP client could not be built.
    #[error(transparent)]
    Client(#[from] ClientError),
}

/// The headers of an endpoint's requests: built once (content type, the configured headers,
/// the signer), completed for every attempt.
pub struct AttemptHeaders {
    signer: Signer,
    static_headers: HeaderMap,
}

impl AttemptHeaders {
    /// For `cfg`'s endpoint.
    pub fn new(cfg: &EndpointConfig) -> Result<Self, SigningError> {
        let signer = Signer::new(cfg.signature, &cfg.secrets, cfg.sign_with_all_secrets)?;
        let mut static_headers = HeaderMap::new();
        static_headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        for (k, v) in &cfg.headers {
            // Validated at config load.
            if let (Ok(k), Ok(v)) = (
                HeaderName::from_bytes(k.as_bytes()),
                HeaderValue::from_str(v),
            ) {
                static_headers.insert(k, v);
            }
        }
        Ok(Self {
            signer,
            static_headers,
        })
    }

    /// The headers of attempt number `attempt` (from 1) to deliver `msg` as `body` (the
    /// message's own, or its transform's output), signed now.
    pub fn build(&self, msg: &Message, body: &[u8], attempt: u32, traceparent: &str) -> HeaderMap {
        let mut headers = self.static_headers.clone();
        let put = |h: &mut HeaderMap, name: &'static str, value: &str| {
            if let Ok(v) = HeaderValue::from_str(value) {
                h.insert(HeaderName::from_static(name), v);
            }
        };
        put(
            &mut headers,
            signing::HEADER_IDEMPOTENCY_KEY,
            &msg.idempotency_key,
        );
        put(&mut headers, signing::HEADER_EVENT, &msg.event_type);
        headers.insert(
            HeaderName::from_static(signing::HEADER_ATTEMPT),
            HeaderValue::from(attempt),
        );
        put(&mut headers, "traceparent", traceparent);
        let ts = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        // A uuid4 from the thread-local generator: `Uuid::new_v4` asks the OS (a syscall) for
        // every request.
        let mut nonce = [0u8; uuid::fmt::Hyphenated::LENGTH];
        let nonce = uuid::Builder::from_random_bytes(rand::random())
            .into_uuid()
            .hyphenated()
            .encode_lower(&mut nonce);
        let mut sig = Vec::with_capacity(3);
        self.signer
            .sign(body, ts, nonce, &msg.idempotency_key, &mut sig);
        for (name, value) in &sig {
            put(&mut headers, name, value);
        }
        headers
    }
}

/// One endpoint's worker.
pub struct Worker {
    cfg: Arc<EndpointConfig>,
    headers: AttemptHeaders,
    client: EndpointClient,
    circuit: Circuit,
    policy: RetryPolicy,
    queue: Queue,
    state: Arc<EndpointState>,
    dlq: Arc<dyn DeadLetterSink>,
    success: metrics::Counter,
    retries: metrics::Counter,
    duration: metrics::Histogram,
    end_to_end: metrics::Histogram,
}

impl Worker {
    /// Builds the worker: signer, pooled client and circuit, once. What it gives up on goes
    /// to `dlq`.
    pub fn new(
        cfg: Arc<EndpointConfig>,
        security: &SecurityConfig,
        queue: Queue,
        state: Arc<EndpointState>,
        dlq: impl DeadLetterSink + 'static,
    ) -> Result<Self, WorkerError> {
        let headers = AttemptHeaders::new(&cfg).map_err(|source| WorkerError::Signing {
            endpoint: cfg.name.clone(),
            source,
        })?;
        let client = EndpointClient::build(&cfg, security)?;
        let name = cfg.name.clone();
        crate::telemetry::endpoint_series(&name);
        crate::queue::gauges::zero_queue_gauges(&name);
        Ok(Self {
            headers,
            client,
            circuit: Circuit::new(
                cfg.circuit_breaker.failure_threshold,
                cfg.circuit_breaker.recovery(),
            ),
            policy: RetryPolicy {
                max_retries: cfg.max_retries,
                retry_delay: cfg.retry_delay.0,
                max_retry_delay: cfg.max_retry_delay.0,
            },
            queue,
            state,
            dlq: Arc::new(dlq),
            success: metrics::counter!(metric::PUBLISH_SUCCESS, "endpoint" => name.clone()),
            retries: metrics::counter!(metric::RETRY_COUNT, "endpoint" => name.clone()),
            duration: metrics::histogram!(metric::DELIVERY_DURATION, "endpoint" => name.clone()),
            end_to_end: metrics::histogram!(metric::END_TO_END, "endpoint" => name),
            cfg,
        })
    }

    /// The endpoint's name.
    pub fn name(&self) -> &str {
        &self.cfg.name
    }

    /// Runs until `shutdown`. Attempts are spawned on `tracker` so that shutdown can wait for
    /// those in flight; jobs not yet taken stay in the queue.
    pub async fn run(
        self: Arc<Self>,
        mut paused: tokio::sync::watch::Receiver<bool>,
        shutdown: CancellationToken,
        tracker: TaskTracker,
    ) {
        let slots = Arc::new(Semaphore::new(self.cfg.concurrency));
        loop {
            if !crate::pause::wait_unpaused(&mut paused, &shutdown).await {
                break;
            }
            let permit = tokio::select! {
                p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
                _ = shutdown.cancelled() => break,
            };
            let job = tokio::select! {
                j = self.queue.next() => match j { Some(j) => j, None => break },
                _ = shutdown.cancelled() => break,
            };
            let admit = tokio::select! {
                a = self.circuit.admit(|s| self.circuit_changed(s)) => a,
                _ = shutdown.cancelled() => { self.queue.release(job); break }
            };
            // A pause that came while this job waited for the circuit holds it here.
            if !crate::pause::wait_unpaused(&mut paused, &shutdown).await {
                self.queue.release(job);
                break;
            }
            let me = self.clone();
            let stop = shutdown.clone();
            tracker.spawn(async move {
                me.handle(job, admit, &stop).await;
                drop(permit);
            });
        }
        tracing::debug!(endpoint = %self.cfg.name, "worker stopped");
    }

    fn circuit_changed(&self, s: State) {
        self.state.circuit.store(s.gauge(), Ordering::Relaxed);
        metrics::gauge!(metric::CIRCUIT_STATE, "endpoint" => self.cfg.name.clone())
            .set(s.gauge() as f64);
        match s {
            State::Open { .. } => tracing::warn!(
                endpoint = %self.cfg.name,
                recovery_ms = self.cfg.circuit_breaker.recovery().as_millis() as u64,
                "circuit opened; deliveries wait"
            ),
            State::HalfOpen => {
                tracing::info!(endpoint = %self.cfg.name, "circuit half-open; sending one probe")
            }
            State::Closed { .. } => tracing::info!(endpoint = %self.cfg.name, "circuit closed"),
        }
    }

    /// Attempts a job; for `ordered` endpoints, retries in place so that later jobs wait.
    async fn handle(&self, mut job: Job, mut admit: Admit, shutdown: &CancellationToken) {
        let body = match self.body(&job) {
            Ok(body) => body,
            Err(e) => {
                if admit == Admit::Probe {
                    self.circuit.release_probe();
                }
                self.transform_failed(&job, &e).await;
                return;
            }
        };
        loop {
            let outcome = self.attempt(&mut job, &body).await;
            self.record_in_circuit(&outcome, admit);
            match outcome {
                Outcome::Delivered { status } => {
                    self.delivered(&job, status);
                    self.settled(&job, true).await;
                    return;
                }
                Outcome::Retry {
                    status,
                    after,
                    reason,
                    error,
                } => {
                    self.failed(&mut job, status, reason, &error);
                    if !self.policy.may_retry(job.attempts) {
                        let msg = format!("gave up after {} attempts: {error}", job.attempts);
                        let kind = status.is_none().then_some(reason.as_str());
                        self.dead_letter(&job, &msg, kind).await;
                        return;
                    }
                    let delay = self.will_retry(&job, status, after, reason, &error);
                    if !self.cfg.ordered {
                        self.queue.retry_in(job, delay, shutdown).await;
                        return;
                    }
                    match self.wait_in_place(delay, shutdown).await {
                        Some(a) => admit = a,
                        None => {
                            self.queue.release(job);
                            return;
                        }
                    }
                }
                Outcome::Permanent {
                    status,
                    reason,
                    error,
                } => {
                    self.failed(&mut job, status, reason, &error);
                    let kind = status.is_none().then_some(reason.as_str());
                    self.dead_letter(&job, &format!("permanent failure: {error}"), kind)
                        .await;
                    return;
                }
            }
        }
    }

    /// Tells the circuit how an attempt went. Only failures that say the endpoint is unwell
    /// count against it; a 4xx is the endpoint answering that the request is wrong.
    fn record_in_circuit(&self, outcome: &Outcome, admit: Admit) {
        let ok = matches!(outcome, Outcome::Delivered { .. });
        let counts = ok || matches!(outcome, Outcome::Retry { .. });
        if counts && let Some(s) = self.circuit.record(ok, admit == Admit::Probe) {
            self.circuit_changed(s);
        } else if admit == Admit::Probe && !counts {
            // A probe answered with a permanent error still proves the endpoint is up.
            if let Some(s) = self.circuit.record(true, true) {
                self.circuit_changed(s);
            }
        }
    }

    /// Counts and logs a delivery that got `status` (a 2xx).
    fn delivered(&self, job: &Job, status: u16) {
        self.success.increment(1);
        self.state.delivered_now();
        let e2e = SystemTime::now()
            .duration_since(job.msg.received_at)
            .unwrap_or_default();
        self.end_to_end.record(e2e.as_secs_f64());
        tracing::debug!(endpoint = %self.cfg.name, idempotency_key = %job.msg.idempotency_key, attempt = job.attempts, status, "delivered");
        if job.attempts > 1 {
            // One line for the operator who saw the failed attempts: it went through.
            tracing::info!(
                endpoint = %self.cfg.name,
                idempotency_key = %job.msg.idempotency_key,
                attempts = job.attempts,
                status,
                total_ms = e2e.as_millis() as u64,
                "delivered after failed attempts"
            );
        }
    }

    /// Counts and logs a retry of `job` and returns its delay (the policy's, or the
    /// endpoint's `Retry-After` within `max_retry_delay`).
    fn will_retry(
        &self,
        job: &Job,
        status: Option<u16>,
        after: Option<Duration>,
        reason: FailureReason,
        error: &str,
    ) -> Duration {
        let delay = self
            .policy
            .delay(job.attempts, after, rand::random::<f64>());
        self.retries.increment(1);
        self.state.retries.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            endpoint = %self.cfg.name,
            idempotency_key = %job.msg.idempotency_key,
            attempt = job.attempts,
            status,
            error_kind = status.is_none().then_some(reason.as_str()),
            error = %error,
            retry_in_ms = delay.as_millis() as u64,
            "attempt failed; will retry"
        );
        delay
    }

    /// An `ordered` endpoint's retry: waits out `delay`, then for the circuit to admit the
    /// attempt. `None` at shutdown (the job is to be released).
    async fn wait_in_place(&self, delay: Duration, shutdown: &CancellationToken) -> Option<Admit> {
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.cancelled() => return None,
        }
        tokio::select! {
            a = self.circuit.admit(|s| self.circuit_changed(s)) => Some(a),
            _ = shutdown.cancelled() => None,
        }
    }

    fn failed(&self, job: &mut Job, status: Option<u16>, reason: FailureReason, error: &str) {
        job.last_status = status;
        job.last_error = Some(error.to_string());
        self.state.failed.fetch_add(1, Ordering::Relaxed);
        self.state.set_error(error);
        metrics::counter!(metric::PUBLISH_FAILURE, "endpoint" => self.cfg.name.clone(), "reason" => reason.as_str())
            .increment(1);
    }

    /// Dead-letters a job; `error_kind` names a failure without an HTTP status (connect,
    /// timeout, …), logged instead of a status.
    async fn dead_letter(&self, job: &Job, error: &str, error_kind: Option<&str>) {
        tracing::error!(
            endpoint = %self.cfg.name,
            idempotency_key = %job.msg.idempotency_key,
            attempt = job.attempts,
            status = job.last_status,
            error_kind,
            error = %error,
            "delivery dead-lettered"
        );
        let dl = DeadLetter::from_job(job, &self.cfg.name, Stage::Delivery, error);
        self.dlq.record(&dl, DLQ_PATIENCE).await;
        self.state.dead_lettered(error);
        self.settled(job, false).await;
    }

    /// The body to send for `job`: the message's own, or the endpoint's transform of it.
    fn body(&self, job: &Job) -> Result<Bytes, ExprError> {
        match &self.cfg.transform {
            None => Ok(job.msg.body.clone()),
            Some(t) => t.apply(&job.msg.body).map(Bytes::from),
        }
    }

    /// Dead-letters a job whose transform failed, with the expression's error: the entry
    /// keeps the original message, so fixing the transform and replaying delivers it.
    async fn transform_failed(&self, job: &Job, e: &ExprError) {
        let error = format!("transform failed: {e}");
        tracing::error!(
            endpoint = %self.cfg.name,
            idempotency_key = %job.msg.idempotency_key,
            error = %error,
            "transform failed on a message; dead-lettered"
        );
        metrics::counter!(metric::TRANSFORM_FAILURES, "endpoint" => self.cfg.name.clone())
            .increment(1);
        let dl = DeadLetter::from_job(job, &self.cfg.name, Stage::Transform, &error);
        self.dlq.record(&dl, DLQ_PATIENCE).await;
        self.state.dead_lettered(&error);
        self.settled(job, false).await;
    }

    /// A job is finished: a replayed dead-letter entry is removed (a new one was written if
    /// it failed again), and the queue learns the job is done.
    async fn settled(&self, job: &Job, delivered: bool) {
        if let Some(id) = &job.replay_of
            && let Err(e) = self.dlq.remove(id).await
        {
            tracing::warn!(endpoint = %self.cfg.name, dlq_id = %id, error = %e, "replayed entry could not be removed from the dead-letter stream");
        }
        self.queue.done(job, delivered);
    }

    /// One HTTP attempt of sending `body`: headers, signature, POST, metrics.
    async fn attempt(&self, job: &mut Job, body: &Bytes) -> Outcome {
        job.attempts += 1;
        let msg = &job.msg;
        let span = tracing::info_span!(
            "delivery_attempt",
            endpoint = %self.cfg.name,
            idempotency_key = %msg.idempotency_key,
            attempt = job.attempts,
        );
        let traceparent = telemetry::delivery_traceparent(&span, msg.traceparent.as_deref());
        let headers = self.headers.build(msg, body, job.attempts, &traceparent);

        self.state.in_flight.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let outcome = self
            .client
            .post(headers, body.clone())
            .instrument(span)
            .await;
        self.duration.record(started.elapsed().as_secs_f64());
        self.state.in_flight.fetch_sub(1, Ordering::Relaxed);
        outcome
    }
}

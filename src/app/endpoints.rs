//! The live set of endpoints: each one's queue, counters and worker, and how a new config
//! is applied to them without a restart.
//!
//! A reload builds every new or changed worker first (signer, HTTP client, consumer group);
//! only if all of that succeeds does it swap them in, so an invalid config changes nothing.
//! A changed endpoint keeps its queue and counters: the old worker stops taking jobs, its
//! in-flight attempts finish and settle through the same queue, and the new worker takes the
//! next job. A removed endpoint's worker stops the same way; what was queued for it stays in
//! Redis (durable) or goes to the dead-letter stream (memory), so nothing is lost.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use redis::aio::ConnectionManager;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, EndpointConfig, RedisUrl, SecurityConfig};
use crate::delivery::worker::Worker;
use crate::dlq::Dlq;
use crate::endpoint_state::EndpointState;
use crate::message::{DeadLetter, Stage};
use crate::queue::Queue;
use crate::queue::gauges::CountedQueue;
use crate::queue::memory::{DEFAULT_CAPACITY, MemoryQueue};
use crate::queue::redis::{QueueKeys, RedisQueue};
use crate::shutdown::Shutdown;
use crate::util::backoff::Backoff;

/// An endpoint's route, holding its queue.
type Route = crate::ingest::Route<Queue>;

/// Where endpoint queues live.
#[derive(Clone)]
pub enum QueueMode {
    /// In process memory.
    Memory,
    /// Redis streams read as this replica's consumer.
    Redis {
        /// Shared connection for queue commands.
        conn: ConnectionManager,
        /// This replica's consumer name.
        consumer: String,
    },
}

/// One endpoint's queue, counters and worker, built from config.
pub struct EndpointRuntime {
    /// The route ingest uses.
    pub route: Route,
    /// The worker.
    pub worker: Arc<Worker>,
}

/// Builds one endpoint's runtime; `existing` reuses a queue and counters (a changed endpoint).
pub fn build_endpoint(
    ep: &EndpointConfig,
    key_prefix: &str,
    security: &SecurityConfig,
    dlq: &Dlq,
    mode: &QueueMode,
    existing: Option<&Route>,
) -> anyhow::Result<EndpointRuntime> {
    let ep = Arc::new(ep.clone());
    let keys = QueueKeys::new(key_prefix, &ep.name);
    let (queue, state) = match existing {
        Some(r) => (r.queue.clone(), r.state.clone()),
        None => {
            let queue = match mode {
                QueueMode::Memory => Queue::Memory(Arc::new(MemoryQueue::new(DEFAULT_CAPACITY))),
                QueueMode::Redis { conn, consumer } => Queue::Redis(Arc::new(RedisQueue::new(
                    conn.clone(),
                    keys.clone(),
                    consumer,
                    ep.concurrency,
                ))),
            };
            let state = Arc::new(EndpointState::new(&ep.name, &ep.url.redacted()));
            state.attach_queue(CountedQueue::new(&ep.name, queue.clone()));
            (queue, state)
        }
    };
    let worker = Worker::new(
        ep.clone(),
        security,
        queue.clone(),
        state.clone(),
        dlq.clone(),
    )?;
    Ok(EndpointRuntime {
        route: Route {
            endpoint: ep,
            queue,
            state,
        },
        worker: Arc::new(worker),
    })
}

struct Live {
    rt: EndpointRuntime,
    /// Stops this endpoint's worker (a child of the process shutdown token).
    worker_stop: CancellationToken,
    worker_task: JoinHandle<()>,
    /// Stops this endpoint's queue reader and claimer (durable only).
    reader_stop: CancellationToken,
}

/// What a reload changed.
#[derive(Debug, Default)]
pub struct Applied {
    /// Endpoints added.
    pub added: Vec<String>,
    /// Endpoints whose settings changed.
    pub changed: Vec<String>,
    /// Endpoints removed.
    pub removed: Vec<String>,
}

/// Everything the endpoint set needs from the running bridge.
pub struct Context {
    /// Key prefix.
    pub key_prefix: String,
    /// Redis URL (for dedicated reader connections).
    pub redis_url: RedisUrl,
    /// The dead-letter stream.
    pub dlq: Dlq,
    /// Memory or Redis queues.
    pub mode: QueueMode,
    /// The pause flag.
    pub paused: watch::Receiver<bool>,
    /// Process shutdown and in-flight tracker.
    pub shutdown: Shutdown,
    /// Stops the durable queues' background work after the drain.
    pub queue_stop: CancellationToken,
    /// Where the endpoints' counters are published for `/status`.
    pub states: Arc<RwLock<Vec<Arc<EndpointState>>>>,
}

/// The live endpoints and the routing table ingest reads.
pub struct EndpointSet {
    ctx: Context,
    live: Vec<Live>,
    /// Durable queues whose acknowledgers must be flushed at exit (including removed ones).
    ackers: Vec<(Arc<RedisQueue>, JoinHandle<()>)>,
    routes: Arc<RwLock<Arc<Vec<Route>>>>,
    /// Counters shown by `/status`.
    states: Arc<RwLock<Vec<Arc<EndpointState>>>>,
}

impl EndpointSet {
    /// Builds and starts every endpoint of `cfg`.
    pub async fn start(cfg: &Config, ctx: Context) -> anyhow::Result<Self> {
        let states = ctx.states.clone();
        let mut set = Self {
            ctx,
            live: Vec::new(),
            ackers: Vec::new(),
            routes: Arc::new(RwLock::new(Arc::new(Vec::new()))),
            states,
        };
        for ep in &cfg.endpoints {
            let rt = build_endpoint(
                ep,
                &set.ctx.key_prefix,
                &cfg.security,
                &set.ctx.dlq,
                &set.ctx.mode,
                None,
            )?;
            set.prepare_queue(&rt).await?;
            let live = set.launch(rt)?;
            set.live.push(live);
        }
        set.publish();
        Ok(set)
    }

    /// The routing table (shared with ingest).
    pub fn routes(&self) -> Arc<RwLock<Arc<Vec<Route>>>> {
        self.routes.clone()
    }

    /// The counters list (shared with `/status`).
    pub fn states(&self) -> Arc<RwLock<Vec<Arc<EndpointState>>>> {
        self.states.clone()
    }

    /// Creates the consumer group of a new durable queue (retrying while Redis is away,
    /// until shutdown).
    async fn prepare_queue(&self, rt: &EndpointRuntime) -> anyhow::Result<()> {
        if let Queue::Redis(q) = &rt.route.queue {
            let mut backoff = Backoff::default();
            while let Err(err) = q.ensure_group().await {
                tracing::warn!(stream = %q.stream(), redis = %crate::redis::redis_address(), error = %err, "cannot create the consumer group; retrying");
                if !backoff.wait(&self.ctx.shutdown.token).await {
                    anyhow::bail!("shutdown while waiting for Redis");
                }
            }
        }
        Ok(())
    }

    /// Starts a worker (and, for a new durable queue, its background tasks).
    fn launch(&mut self, rt: EndpointRuntime) -> anyhow::Result<Live> {
        let reader_stop = self.ctx.shutdown.token.child_token();
        if let Queue::Redis(q) = &rt.route.queue
            && !self.ackers.iter().any(|(a, _)| Arc::ptr_eq(a, q))
        {
            let reader = crate::redis::redis_reader(&self.ctx.redis_url)?;
            let acker = q.start(reader, reader_stop.clone(), self.ctx.queue_stop.clone());
            self.ackers.push((q.clone(), acker));
        }
        let worker_stop = self.ctx.shutdown.token.child_token();
        // Keeps the `bridge_queue_*` gauges current (`/status` counts when asked).
        let (state, stop) = (rt.route.state.clone(), worker_stop.clone());
        tokio::spawn(async move {
            let mut tick = crate::shutdown::Ticker::new(Duration::from_secs(1), &stop);
            while tick.tick().await {
                state.count_queue().await;
            }
        });
        let worker_task = tokio::spawn(rt.worker.clone().run(
            self.ctx.paused.clone(),
            worker_stop.clone(),
            self.ctx.shutdown.tracker.clone(),
        ));
        Ok(Live {
            rt,
            worker_stop,
            worker_task,
            reader_stop,
        })
    }

    /// Publishes the current routes and counters.
    fn publish(&self) {
        let routes: Vec<Route> = self.live.iter().map(|l| l.rt.route.clone()).collect();
        let states = routes.iter().map(|r| r.state.clone()).collect();
        *self.routes.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(routes);
        *self.states.write().unwrap_or_else(|p| p.into_inner()) = states;
    }

    /// Applies the endpoints of `cfg`. Fails without changing anything if a new or changed
    /// endpoint cannot be built.
    pub async fn apply(&mut self, cfg: &Config) -> anyhow::Result<Applied> {
        let mut applied = Applied::default();
        // Build first: nothing changes unless everything can be built.
        let built = self.build_changes(cfg).await?;
        self.swap_in(built, &mut applied)?;
        let keep: Vec<&str> = cfg.endpoints.iter().map(|e| e.name.as_str()).collect();
        self.remove_all_but(&keep, &mut applied).await;
        // Config order for /status.
        self.live.sort_by_key(|l| {
            keep.iter()
                .position(|n| *n == l.rt.route.endpoint.name)
                .unwrap_or(usize::MAX)
        });
        self.publish();
        Ok(applied)
    }

    /// The runtime of every endpoint of `cfg` that is new or changed, with the position of
    /// the live endpoint it replaces (`None` for a new one, whose consumer group is created
    /// here). Nothing runs yet.
    async fn build_changes(
        &self,
        cfg: &Config,
    ) -> anyhow::Result<Vec<(Option<usize>, EndpointRuntime)>> {
        let mut built = Vec::new();
        for ep in &cfg.endpoints {
            let current = self
                .live
                .iter()
                .position(|l| l.rt.route.endpoint.name == ep.name);
            if let Some(c) = current
                && self.live[c].rt.route.endpoint.same_as(ep)
            {
                continue;
            }
            let existing = current.map(|c| &self.live[c].rt.route);
            let rt = build_endpoint(
                ep,
                &self.ctx.key_prefix,
                &cfg.security,
                &self.ctx.dlq,
                &self.ctx.mode,
                existing,
            )?;
            if current.is_none() {
                self.prepare_queue(&rt).await?;
            }
            built.push((current, rt));
        }
        Ok(built)
    }

    /// Starts the workers of changed and added endpoints; a changed one's old worker stops.
    fn swap_in(
        &mut self,
        built: Vec<(Option<usize>, EndpointRuntime)>,
        applied: &mut Applied,
    ) -> anyhow::Result<()> {
        for (current, rt) in built {
            let name = rt.route.endpoint.name.clone();
            match current {
                Some(c) => {
                    let new = self.launch(rt)?;
                    let old = std::mem::replace(&mut self.live[c], new);
                    // The old worker takes no new job; its in-flight attempts finish under the
                    // tracker and settle through the same queue.
                    old.worker_stop.cancel();
                    // The reader keeps running: it belongs to the queue, which is kept.
                    self.live[c].reader_stop = old.reader_stop;
                    applied.changed.push(name);
                }
                None => {
                    let live = self.launch(rt)?;
                    self.live.push(live);
                    applied.added.push(name);
                }
            }
        }
        Ok(())
    }

    /// Stops every live endpoint whose name is not in `keep`.
    async fn remove_all_but(&mut self, keep: &[&str], applied: &mut Applied) {
        let mut i = 0;
        while i < self.live.len() {
            if keep.contains(&self.live[i].rt.route.endpoint.name.as_str()) {
                i += 1;
                continue;
            }
            let gone = self.live.remove(i);
            applied.removed.push(self.retire(gone).await);
        }
    }

    /// Stops a removed endpoint's worker and queue reader; what was queued for it stays in
    /// Redis (durable) or goes to the dead-letter stream (memory). Returns its name.
    async fn retire(&self, gone: Live) -> String {
        gone.worker_stop.cancel();
        gone.reader_stop.cancel();
        let name = gone.rt.route.endpoint.name.clone();
        match &gone.rt.route.queue {
            Queue::Memory(q) => {
                let parked =
                    park(&self.ctx.dlq, &name, q, "endpoint removed from the config").await;
                if parked > 0 {
                    tracing::warn!(endpoint = %name, jobs = parked, "queued deliveries of a removed endpoint moved to the dead-letter stream");
                }
            }
            Queue::Redis(q) => {
                tracing::warn!(endpoint = %name, stream = %q.stream(), "endpoint removed; deliveries still queued for it stay in Redis and resume if it is added back");
            }
        }
        name
    }

    /// Waits for every worker to stop taking jobs (after the shutdown token fired).
    pub async fn join_workers(&mut self) {
        for l in &mut self.live {
            let _ = (&mut l.worker_task).await;
        }
    }

    /// After the drain: flushes durable acknowledgements and leaves the consumer groups,
    /// or (memory) moves jobs still queued to the dead-letter stream.
    pub async fn finish(self) {
        for (q, acker) in self.ackers {
            q.close();
            let _ = tokio::time::timeout(Duration::from_secs(5), acker).await;
            q.leave().await;
        }
        // What stays in Redis for the next start (or another replica), per endpoint.
        for l in &self.live {
            if let Queue::Redis(q) = &l.rt.route.queue {
                let name = &l.rt.route.endpoint.name;
                match tokio::time::timeout(Duration::from_secs(2), q.counts()).await {
                    Ok(Ok(c)) => tracing::info!(
                        endpoint = %name,
                        not_delivered = c.not_delivered,
                        waiting = c.waiting,
                        taken = c.taken,
                        retry_scheduled = c.retry_scheduled,
                        oldest_age_seconds = c.oldest_age_seconds,
                        "stays queued in Redis"
                    ),
                    Ok(Err(e)) => {
                        tracing::warn!(endpoint = %name, redis = %crate::redis::redis_address(), error = %e, "cannot count what stays queued in Redis")
                    }
                    Err(_) => {
                        tracing::warn!(endpoint = %name, redis = %crate::redis::redis_address(), "cannot count what stays queued in Redis: no answer within 2 s")
                    }
                }
            }
        }
        let mut parked = 0;
        for l in &self.live {
            if let Queue::Memory(q) = &l.rt.route.queue {
                parked += park(
                    &self.ctx.dlq,
                    &l.rt.route.endpoint.name,
                    q,
                    "not delivered before shutdown (durability = memory); replay with `dlq replay`",
                )
                .await;
            }
        }
        if parked > 0 {
            tracing::warn!(
                jobs = parked,
                "queued deliveries moved to the dead-letter stream at shutdown"
            );
        }
    }
}

/// Moves every job waiting in a memory queue to the dead-letter stream.
async fn park(dlq: &Dlq, endpoint: &str, q: &MemoryQueue, why: &str) -> usize {
    let mut parked = 0;
    for job in q.take_all() {
        let dl = DeadLetter::from_job(&job, endpoint, Stage::Delivery, why);
        if dlq
            .add_reliably(&dl, Duration::from_secs(5))
            .await
            .is_some()
        {
            parked += 1;
        }
    }
    parked
}

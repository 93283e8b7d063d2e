//! The in-memory queue (`durability = "memory"`): fast, and loses queued and in-flight work
//! when the process dies. Retries wait in a heap ordered by due time.

use std::cmp::Ordering as CmpOrdering;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::endpoint_state::QueueCounts;
use crate::message::Job;

/// Default bound on jobs held per endpoint; beyond it new jobs are dead-lettered rather than
/// growing memory without limit.
pub const DEFAULT_CAPACITY: usize = 100_000;

struct Delayed {
    due: Instant,
    seq: u64,
    job: Job,
}

impl PartialEq for Delayed {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.seq) == (other.due, other.seq)
    }
}
impl Eq for Delayed {}
impl PartialOrd for Delayed {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}
impl Ord for Delayed {
    // Reversed: BinaryHeap is a max-heap and the earliest due time must come out first.
    fn cmp(&self, other: &Self) -> CmpOrdering {
        (other.due, other.seq).cmp(&(self.due, self.seq))
    }
}

#[derive(Default)]
struct Inner {
    ready: VecDeque<Job>,
    delayed: BinaryHeap<Delayed>,
    /// Jobs handed out by `next` and not yet settled or put back, by `queue_id`: what
    /// shutdown dead-letters if their attempts outlive `shutdown_timeout`.
    taken: std::collections::HashMap<String, Job>,
    seq: u64,
    ids: u64,
}

/// One endpoint's queue. A single consumer (the endpoint's dispatcher) calls [`next`].
///
/// [`next`]: MemoryQueue::next
pub struct MemoryQueue {
    inner: Mutex<Inner>,
    /// Wakes the consumer when a job becomes ready or an earlier retry is scheduled.
    wake: Notify,
    /// Jobs pushed and not yet finished (queued, scheduled or in flight).
    outstanding: AtomicUsize,
    /// Wakes `wait_idle` when `outstanding` reaches 0.
    idle: Notify,
    capacity: usize,
}

/// The queue is at capacity; the job is handed back.
#[derive(Debug)]
pub struct Full(pub Job);

impl MemoryQueue {
    /// An empty queue holding at most `capacity` jobs.
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            wake: Notify::new(),
            outstanding: AtomicUsize::new(0),
            idle: Notify::new(),
            capacity,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave the queue inconsistent (every
        // mutation is a single push/pop), so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a new job at the back.
    pub fn push(&self, job: Job) -> Result<(), Full> {
        {
            let mut g = self.lock();
            if g.ready.len() + g.delayed.len() >= self.capacity {
                return Err(Full(job));
            }
            g.ready.push_back(job);
        }
        self.outstanding.fetch_add(1, Ordering::AcqRel);
        self.wake.notify_one();
        Ok(())
    }

    /// Puts a job back at the front, e.g. one taken but not attempted at shutdown.
    pub fn push_front(&self, job: Job) {
        let mut g = self.lock();
        if let Some(id) = &job.queue_id {
            g.taken.remove(id);
        }
        g.ready.push_front(job);
        drop(g);
        self.wake.notify_one();
    }

    /// Schedules a taken job to become ready again at `due`.
    pub fn retry_at(&self, job: Job, due: Instant) {
        {
            let mut g = self.lock();
            if let Some(id) = &job.queue_id {
                g.taken.remove(id);
            }
            g.seq += 1;
            let seq = g.seq;
            g.delayed.push(Delayed { due, seq, job });
        }
        self.wake.notify_one();
    }

    /// Waits for the next ready job (a new one, or a retry whose time has come).
    pub async fn next(&self) -> Job {
        loop {
            let next_due = {
                let mut g = self.lock();
                let now = Instant::now();
                while g.delayed.peek().is_some_and(|d| d.due <= now) {
                    if let Some(d) = g.delayed.pop() {
                        g.ready.push_back(d.job);
                    }
                }
                if let Some(mut job) = g.ready.pop_front() {
                    let id = match &job.queue_id {
                        Some(id) => id.clone(),
                        None => {
                            g.ids += 1;
                            let id = format!("m{}", g.ids);
                            job.queue_id = Some(id.clone());
                            id
                        }
                    };
                    g.taken.insert(id, job.clone());
                    return job;
                }
                g.delayed.peek().map(|d| d.due)
            };
            match next_due {
                Some(due) => {
                    tokio::select! {
                        _ = self.wake.notified() => {}
                        _ = tokio::time::sleep_until(due) => {}
                    }
                }
                None => self.wake.notified().await,
            }
        }
    }

    /// Marks a taken job as finished (delivered or dead-lettered).
    pub fn done(&self, job: &Job) {
        // A job `take_all` already handed over (an attempt that outlived shutdown) was
        // counted off then.
        let counted = match &job.queue_id {
            Some(id) => self.lock().taken.remove(id).is_some(),
            None => true,
        };
        if counted && self.outstanding.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.idle.notify_waiters();
        }
    }

    /// Takes every job not settled yet — waiting, scheduled, and taken but unfinished (an
    /// attempt that outlived `shutdown_timeout`) — e.g. to dead-letter them at exit.
    pub fn take_all(&self) -> Vec<Job> {
        let mut g = self.lock();
        let mut out: Vec<Job> = g.ready.drain(..).collect();
        out.extend(g.delayed.drain().map(|d| d.job));
        out.extend(g.taken.drain().map(|(_, j)| j));
        drop(g);
        // They are settled by whoever takes them (dead-lettered at exit).
        let n = out.len();
        if n > 0 && self.outstanding.fetch_sub(n, Ordering::AcqRel) == n {
            self.idle.notify_waiters();
        }
        out
    }

    /// Jobs waiting: ready plus scheduled retries (not those in flight).
    pub fn depth(&self) -> usize {
        let g = self.lock();
        g.ready.len() + g.delayed.len()
    }

    /// Waiting, taken and scheduled jobs, and the oldest receipt time among them.
    pub fn counts(&self) -> QueueCounts {
        let g = self.lock();
        let oldest = g
            .ready
            .iter()
            .chain(g.delayed.iter().map(|d| &d.job))
            .chain(g.taken.values())
            .map(|j| j.msg.received_at)
            .min();
        QueueCounts::new(
            g.ready.len() as u64,
            g.taken.len() as u64,
            g.delayed.len() as u64,
            oldest,
        )
    }

    /// Jobs pushed and not yet finished.
    pub fn outstanding(&self) -> usize {
        self.outstanding.load(Ordering::Acquire)
    }

    /// Resolves once every pushed job is finished.
    pub async fn wait_idle(&self) {
        loop {
            let idle = self.idle.notified();
            if self.outstanding() == 0 {
                return;
            }
            idle.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::message::Message;

    fn job(key: &str) -> Job {
        Job::new(Arc::new(Message::for_test(key)))
    }

    #[tokio::test(start_paused = true)]
    async fn a_retry_comes_back_only_when_due_and_in_due_order() {
        let q = MemoryQueue::new(10);
        q.push(job("a")).unwrap();
        q.push(job("b")).unwrap();
        let a = q.next().await;
        let b = q.next().await;
        let t0 = Instant::now();
        q.retry_at(a, t0 + Duration::from_secs(4));
        q.retry_at(b, t0 + Duration::from_secs(2));
        let first = q.next().await;
        assert_eq!(first.msg.idempotency_key, "b");
        assert!(Instant::now() >= t0 + Duration::from_secs(2));
        let second = q.next().await;
        assert_eq!(second.msg.idempotency_key, "a");
        assert!(Instant::now() >= t0 + Duration::from_secs(4));
    }

    #[tokio::test]
    async fn a_full_queue_hands_the_job_back() {
        let q = MemoryQueue::new(1);
        q.push(job("a")).unwrap();
        let Full(back) = q.push(job("b")).unwrap_err();
        assert_eq!(back.msg.idempotency_key, "b");
        assert_eq!(q.depth(), 1);
    }

    #[tokio::test]
    async fn wait_idle_returns_after_every_job_is_done() {
        let q = Arc::new(MemoryQueue::new(10));
        q.push(job("a")).unwrap();
        let waiter = tokio::spawn({
            let q = q.clone();
            async move { q.wait_idle().await }
        });
        let taken = q.next().await;
        assert!(!waiter.is_finished());
        q.done(&taken);
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .unwrap()
            .unwrap();
    }
}

#[cfg(test)]
mod taken_tests {
    use std::sync::Arc;

    use super::*;
    use crate::message::Message;

    #[tokio::test]
    async fn a_taken_unfinished_job_is_still_handed_over_at_exit() {
        let q = MemoryQueue::new(10);
        q.push(Job::new(Arc::new(Message::for_test("in-flight"))))
            .unwrap();
        q.push(Job::new(Arc::new(Message::for_test("settled"))))
            .unwrap();
        let a = q.next().await;
        let b = q.next().await;
        q.done(&b);
        let left: Vec<String> = q
            .take_all()
            .into_iter()
            .map(|j| j.msg.idempotency_key.clone())
            .collect();
        assert_eq!(left, vec![a.msg.idempotency_key.clone()]);
    }

    #[tokio::test]
    async fn counts_tell_waiting_taken_and_scheduled_jobs_apart() {
        let q = MemoryQueue::new(10);
        for key in ["a", "b", "c", "d"] {
            q.push(Job::new(Arc::new(Message::for_test(key)))).unwrap();
        }
        let a = q.next().await;
        let _b = q.next().await;
        q.retry_at(a, Instant::now() + std::time::Duration::from_secs(3600));
        let c = q.counts();
        assert_eq!(
            (c.waiting, c.taken, c.retry_scheduled, c.not_delivered),
            (2, 1, 1, 4)
        );
    }
}

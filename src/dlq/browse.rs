//! Browsing the dead-letter stream a page at a time, filtered by endpoint, stage and
//! reason, and purging: what `dlq purge` and the console's dead-letter view share.

use super::{Dlq, PAGE, from_entry};
use crate::message::{DeadLetter, DlqError, Stage};

/// Which entries a listing or a purge takes; every field that is set must match.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// The entry's endpoint (an ingest entry has none: `""`).
    pub endpoint: Option<String>,
    /// The stage it failed at.
    pub stage: Option<Stage>,
    /// Text the entry's error contains, compared without regard to case.
    pub reason: Option<String>,
}

impl Filter {
    /// Entries of `endpoint`, or every entry.
    pub fn endpoint(endpoint: Option<&str>) -> Self {
        Self {
            endpoint: endpoint.map(str::to_owned),
            ..Self::default()
        }
    }

    /// Whether `dl` is taken.
    pub fn matches(&self, dl: &DeadLetter) -> bool {
        self.endpoint.as_deref().is_none_or(|e| dl.endpoint == e)
            && self.stage.is_none_or(|s| dl.stage == s)
            && self
                .reason
                .as_deref()
                .is_none_or(|r| dl.error.to_lowercase().contains(&r.to_lowercase()))
    }
}

/// One page of a listing.
#[derive(Debug)]
pub struct Page {
    /// Matching entries, oldest first.
    pub entries: Vec<DeadLetter>,
    /// Where the next page starts (pass it as `after`), or `None` at the end of the stream.
    pub next: Option<String>,
}

/// Entries scanned at most for one page: a filter that matches nothing stops here, with a
/// `next` cursor, instead of reading the whole stream in one request.
const SCAN_LIMIT: usize = 10_000;

impl Dlq {
    /// Up to `limit` entries matching `filter`, oldest first, after the entry id `after`
    /// (from the start when `None`).
    pub async fn page(
        &self,
        after: Option<&str>,
        limit: usize,
        filter: &Filter,
    ) -> Result<Page, DlqError> {
        let mut start = after.map_or_else(|| "-".to_string(), |id| format!("({id}"));
        let mut entries = Vec::new();
        let mut scanned = 0;
        let mut conn = self.conn.clone();
        loop {
            let page: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
                .arg(&self.key)
                .arg(&start)
                .arg("+")
                .arg("COUNT")
                .arg(PAGE)
                .query_async(&mut conn)
                .await?;
            let n = page.ids.len();
            for entry in page.ids {
                scanned += 1;
                let id = entry.id.clone();
                start = format!("({id}");
                let dl = from_entry(entry.id, entry.map);
                if filter.matches(&dl) {
                    entries.push(dl);
                }
                if entries.len() >= limit || scanned >= SCAN_LIMIT {
                    return Ok(Page {
                        entries,
                        next: Some(id),
                    });
                }
            }
            if n < PAGE {
                return Ok(Page {
                    entries,
                    next: None,
                });
            }
        }
    }

    /// Deletes every entry matching `filter`; returns how many were deleted.
    pub async fn purge(&self, filter: &Filter) -> Result<u64, DlqError> {
        let mut ids = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = self.page(after.as_deref(), usize::MAX, filter).await?;
            ids.extend(page.entries.into_iter().map(|e| e.id));
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        let mut n = 0;
        for chunk in ids.chunks(500) {
            n += self.delete(chunk).await?;
        }
        Ok(n)
    }
}

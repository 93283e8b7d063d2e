//! Finding keys: SCAN with a pattern (and a type), as the list source, the legacy-subscriber
//! check, `status` and `migrate` do.

use redis::aio::ConnectionManager;

/// Keys matching `pattern` (and of `kind`, e.g. `list`, when given), at most `max`.
pub async fn scan_keys(
    conn: &mut ConnectionManager,
    pattern: &str,
    kind: Option<&str>,
    max: usize,
) -> redis::RedisResult<Vec<String>> {
    let mut out = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let mut cmd = redis::cmd("SCAN");
        cmd.arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(500);
        if let Some(kind) = kind {
            cmd.arg("TYPE").arg(kind);
        }
        let (next, keys): (u64, Vec<String>) = cmd.query_async(conn).await?;
        out.extend(keys);
        cursor = next;
        if cursor == 0 || out.len() >= max {
            out.truncate(max);
            return Ok(out);
        }
    }
}

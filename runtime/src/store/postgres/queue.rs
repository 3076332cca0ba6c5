//! The queue gauges of the metrics: this app's due runs by function, from the claim's
//! index.

use super::*;
use crate::store::{queue_stats_of, QueueStats};

/// This app's (`$1`) oldest `$2` due runs, read in order from the queue's `(app, due_at,
/// run) WHERE state = 0` as claims read it, grouped by function: count, earliest due
/// time, and the database's clock. O(min(due runs, `$2`)) whatever the backlog.
pub(crate) const QUEUE_STATS: &str = "
SELECT function_id, count(*), min(due_at), fanfare_now() FROM (
    SELECT function_id, due_at FROM fanfare_queue
    WHERE app = $1 AND state = 0 AND due_at <= fanfare_now()
    ORDER BY due_at LIMIT $2) q
GROUP BY function_id";

impl Shared {
    pub(super) async fn queue_stats(&self, limit: usize) -> Result<QueueStats> {
        let err = |e| self.error("cannot read the queue", e);
        let client = self.client().await?;
        let stmt = client.prepare_cached(QUEUE_STATS).await.map_err(err)?;
        let rows = client
            .query(&stmt, &[&self.app, &(limit as i64)])
            .await
            .map_err(err)?;
        let now = rows.first().map_or(0, |r| r.get::<_, i64>(3));
        let rows = rows
            .iter()
            .map(|r| (r.get::<_, String>(0), r.get(1), r.get(2)))
            .collect();
        Ok(queue_stats_of(rows, now, limit))
    }
}

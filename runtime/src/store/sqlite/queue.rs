//! The queue gauges of the metrics: due runs by function, from the claim's index.

use super::*;
use crate::store::{queue_stats_of, QueueStats};

/// The oldest `?2` due runs (`(due_at) WHERE status = 0`, read in order as claims read
/// it), grouped by function: count and earliest due time. O(min(due runs, `?2`)).
pub(crate) const QUEUE_STATS: &str = "SELECT function_id, count(*), min(due_at) FROM \
    (SELECT function_id, due_at FROM fanfare_runs WHERE status = 0 AND due_at <= ?1 \
     ORDER BY due_at LIMIT ?2) GROUP BY function_id";

impl Ctx<'_> {
    pub(super) fn queue_stats(&self, tx: &Connection, limit: usize) -> Result<QueueStats> {
        let err = self.err("cannot read the queue");
        let now = self.now as i64;
        let rows: Vec<(String, i64, i64)> = tx
            .prepare_cached(QUEUE_STATS)
            .and_then(|mut s| {
                s.query_map(params![now, limit as i64], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })?
                .collect()
            })
            .map_err(&err)?;
        Ok(queue_stats_of(rows, now, limit))
    }
}

//! `Runtime::event` and `Runtime::events`: stored events, newest first by `(ts, id)`
//! (the `fanfare_events_ts` index; with a name, `fanfare_events_name`).

use super::*;

impl Shared {
    pub(super) async fn event(&self, id: EventId) -> Result<Option<Arc<Envelope>>> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT id, name, data, ts FROM fanfare_events WHERE id = $1",
                &[&id.as_uuid()],
            )
            .await
            .map_err(|e| self.error("cannot read the event", e))?;
        Ok(row.map(|row| Arc::new(event_at(&row, 0))))
    }

    pub(super) async fn events(
        &self,
        filter: &EventFilter,
        limit: usize,
    ) -> Result<Option<Vec<Arc<Envelope>>>> {
        let below = match filter.after {
            Some(cursor) => match self.event(cursor).await? {
                Some(e) => Some((e.ts as i64, cursor.as_uuid())),
                None => return Ok(None),
            },
            None => None,
        };
        let client = self.inspect_client().await?;
        let since = filter.since_ms.map(|t| t as i64);
        let until = filter.until_ms.map(|t| t as i64);
        let limit = limit as i64;
        let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = vec![&limit];
        let mut conditions = Vec::new();
        if let Some(name) = &filter.name {
            params.push(name);
            conditions.push(format!("name = ${}", params.len()));
        }
        if let Some(t) = &since {
            params.push(t);
            conditions.push(format!("ts >= ${}", params.len()));
        }
        if let Some(t) = &until {
            params.push(t);
            conditions.push(format!("ts < ${}", params.len()));
        }
        if let Some((ts, id)) = &below {
            params.push(ts);
            params.push(id);
            conditions.push(format!(
                "(ts, id) < (${}, ${})",
                params.len() - 1,
                params.len()
            ));
        }
        let mut sql = "SELECT id, name, data, ts FROM fanfare_events".to_owned();
        if !conditions.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&conditions.join(" AND "));
        }
        sql.push_str(" ORDER BY ts DESC, id DESC LIMIT $1");
        let rows = client
            .query(&sql, &params)
            .await
            .map_err(|e| self.error("cannot read events", e))?;
        Ok(Some(
            rows.iter().map(|row| Arc::new(event_at(row, 0))).collect(),
        ))
    }
}

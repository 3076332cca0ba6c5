//! `Runtime::event` and `Runtime::events`: stored events, newest first by `(ts, id)`
//! (the `fanfare_events_ts` index; with a name, `fanfare_events_name`).

use super::*;

/// An event as read: id, name, data, ts.
type EventRow = (Vec<u8>, String, String, i64);

impl Ctx<'_> {
    pub(super) fn event(&self, tx: &Connection, id: EventId) -> Result<Option<Arc<Envelope>>> {
        let err = self.err("cannot read the event");
        let row: Option<EventRow> = tx
            .prepare_cached("SELECT id, name, data, ts FROM fanfare_events WHERE id = ?1")
            .and_then(|mut s| {
                s.query_row([id.as_uuid().as_bytes()], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                })
                .optional()
            })
            .map_err(&err)?;
        row.map(envelope).transpose()
    }

    pub(super) fn events(
        &self,
        tx: &Connection,
        filter: &EventFilter,
        limit: usize,
    ) -> Result<Option<Vec<Arc<Envelope>>>> {
        let err = self.err("cannot read events");
        let below = match filter.after {
            Some(cursor) => match self.event(tx, cursor)? {
                Some(e) => Some((e.ts as i64, *cursor.as_uuid().as_bytes())),
                None => return Ok(None),
            },
            None => None,
        };
        let mut conditions = Vec::new();
        let since = filter.since_ms.map(|t| t as i64);
        let until = filter.until_ms.map(|t| t as i64);
        let limit = limit as i64;
        let mut params: Vec<(&str, &dyn rusqlite::ToSql)> = vec![(":limit", &limit)];
        if let Some(name) = &filter.name {
            conditions.push("name = :name");
            params.push((":name", name));
        }
        if let Some(t) = &since {
            conditions.push("ts >= :since");
            params.push((":since", t));
        }
        if let Some(t) = &until {
            conditions.push("ts < :until");
            params.push((":until", t));
        }
        if let Some((ts, id)) = &below {
            conditions.push("(ts, id) < (:ts, :id)");
            params.push((":ts", ts));
            params.push((":id", id));
        }
        let mut sql = "SELECT id, name, data, ts FROM fanfare_events".to_owned();
        if !conditions.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&conditions.join(" AND "));
        }
        sql.push_str(" ORDER BY ts DESC, id DESC LIMIT :limit");
        let rows: Vec<EventRow> = tx
            .prepare_cached(&sql)
            .and_then(|mut s| {
                s.query_map(&params[..], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                })?
                .collect()
            })
            .map_err(&err)?;
        rows.into_iter()
            .map(envelope)
            .collect::<Result<_>>()
            .map(Some)
    }
}

fn envelope((id, name, data, ts): EventRow) -> Result<Arc<Envelope>> {
    Ok(Arc::new(Envelope::stored(
        EventId::from_uuid(uuid_from(&id)?),
        name,
        data,
        ts as u64,
    )))
}

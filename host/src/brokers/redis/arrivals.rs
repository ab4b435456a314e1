//! Entries added to the DLQ stream after the pass started, for the re-poison breaker: `XRANGE` past the
//! pass's boundary on a connection of its own. It reads only: no group, nothing acknowledged or claimed.

use async_trait::async_trait;

use super::{RedisUrl, entry_list, envelope};
use crate::core::adapter::{AdapterError, Arrivals};
use crate::core::envelope::Envelope;

/// Most entries read in one look (the rest waits for the next).
const MOST_PER_POLL: usize = 1000;

/// Watches the end of one stream.
pub struct RedisArrivals {
    url: RedisUrl,
    /// The last entry id looked at (the pass's boundary at first).
    after: String,
    connection: Option<::redis::aio::MultiplexedConnection>,
}

impl RedisArrivals {
    /// Watch `url`'s stream for entries after `boundary` (the stream's last id when the pass started).
    pub fn new(url: RedisUrl, boundary: String) -> Self {
        Self {
            url,
            after: boundary,
            connection: None,
        }
    }
}

#[async_trait]
impl Arrivals for RedisArrivals {
    async fn poll(&mut self) -> Result<Vec<Envelope>, AdapterError> {
        let connection = match self.connection.as_mut() {
            Some(c) => c,
            None => self.connection.insert(self.url.connect("watch").await?),
        };
        let mut range = ::redis::cmd("XRANGE");
        range
            .arg(&self.url.stream)
            .arg(format!("({}", self.after))
            .arg("+")
            .arg("COUNT")
            .arg(MOST_PER_POLL);
        let reply = match range.query_async::<::redis::Value>(connection).await {
            Ok(reply) => reply,
            Err(e) => {
                // A new connection next time.
                self.connection = None;
                return Err(AdapterError::Broker(self.url.explain(&e, "XRANGE")));
            }
        };
        let entries = entry_list(&reply);
        if let Some(last) = entries.last() {
            self.after.clone_from(&last.id);
        }
        Ok(entries
            .iter()
            .filter_map(|entry| envelope(entry, &self.url.stream, &self.url.fields).ok())
            .collect())
    }
}

//! The connection to the fleet's Redis: one multiplexed connection, opened again after it broke. Each call
//! is tried once; callers decide whether to wait and try again (forwarding waits for Redis; a status
//! command says it cannot reach it).

use std::time::Duration;

use redis::aio::MultiplexedConnection;
use tokio::sync::Mutex;

use super::FleetUrl;

/// How long one call to the fleet's Redis may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a call to the fleet's Redis failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Redis cannot be reached (down, restarting, the network): try again later.
    #[error("cannot reach the fleet's Redis at {0}")]
    Unreachable(String),
    /// Redis answered with an error (wrong password, a read-only replica, a bug).
    #[error("the fleet's Redis at {at} refused: {why}")]
    Refused {
        /// Where.
        at: String,
        /// Its answer.
        why: String,
    },
}

/// A fleet's Redis.
pub struct Store {
    url: FleetUrl,
    connection: Mutex<Option<MultiplexedConnection>>,
}

impl Store {
    /// A store for `url`; nothing is connected until the first call.
    pub fn new(url: FleetUrl) -> Self {
        Self {
            url,
            connection: Mutex::new(None),
        }
    }

    /// The fleet.
    pub fn url(&self) -> &FleetUrl {
        &self.url
    }

    async fn connection(&self) -> Result<MultiplexedConnection, StoreError> {
        let mut slot = self.connection.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let unreachable = |e: &dyn std::fmt::Display| StoreError::Unreachable(format!("{} ({e})", self.url.describe()));
        let client = redis::Client::open(self.url.redis_url()).map_err(|e| StoreError::Refused {
            at: self.url.describe(),
            why: format!("not a valid Redis URL: {e}"),
        })?;
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CALL_TIMEOUT))
            .set_response_timeout(Some(CALL_TIMEOUT));
        let mut connection = client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|e| classify(&self.url, &e).unwrap_or_else(|| unreachable(&e)))?;
        // Named, so that operators can tell redrive's connections apart in CLIENT LIST.
        let name = format!("redrive-{}-fleet", std::process::id());
        redis::cmd("CLIENT")
            .arg("SETNAME")
            .arg(&name)
            .query_async::<()>(&mut connection)
            .await
            .map_err(|e| classify(&self.url, &e).unwrap_or_else(|| unreachable(&e)))?;
        Ok(slot.insert(connection).clone())
    }

    /// Run `cmd` (a command, a pipeline or a script invocation) once.
    pub async fn call<T: redis::FromRedisValue>(
        &self,
        run: impl AsyncFnOnce(&mut MultiplexedConnection) -> redis::RedisResult<T>,
    ) -> Result<T, StoreError> {
        let mut connection = self.connection().await?;
        match tokio::time::timeout(CALL_TIMEOUT, run(&mut connection)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => {
                let error = classify(&self.url, &e);
                if error.is_none() {
                    *self.connection.lock().await = None;
                }
                Err(error.unwrap_or_else(|| StoreError::Unreachable(format!("{} ({e})", self.url.describe()))))
            }
            Err(_) => {
                *self.connection.lock().await = None;
                Err(StoreError::Unreachable(format!(
                    "{} (no answer within {} s)",
                    self.url.describe(),
                    CALL_TIMEOUT.as_secs()
                )))
            }
        }
    }
}

/// A Redis error that trying again will not cure (it answered, and said no); `None` for a connection that
/// failed.
fn classify(url: &FleetUrl, e: &redis::RedisError) -> Option<StoreError> {
    if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() || e.is_timeout() {
        return None;
    }
    let hint = if e.code() == Some("NOAUTH") || e.code() == Some("WRONGPASS") {
        ": check the user and password in the --fleet URL"
    } else {
        ""
    };
    Some(StoreError::Refused {
        at: url.describe(),
        why: format!("{e}{hint}"),
    })
}

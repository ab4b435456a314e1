//! RabbitMQ (AMQP 0-9-1) plumbing shared by the `amqp://` source and sink: URL options, connecting
//! (TLS, timeouts, readable errors that never show the password) and header conversion. [`arrivals`] watches
//! a DLQ for the re-poison breaker.

pub mod arrivals;
pub mod headers;
mod sink;
mod source;

pub use sink::AmqpSink;
pub use source::AmqpSource;

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use lapin::tcp::{OwnedIdentity, OwnedTLSConfig};
use lapin::uri::{AMQPScheme, AMQPUri};
use lapin::{Channel, Connection, ConnectionProperties};

use crate::core::adapter::AdapterError;
pub use headers::DeathHeaders;

/// Options lapin itself understands in the query string; passed through.
const LAPIN_OPTIONS: [&str; 5] = [
    "heartbeat",
    "connection_timeout",
    "channel_max",
    "frame_max",
    "auth_mechanism",
];
/// Options redrive reads from the query string.
const REDRIVE_OPTIONS: [&str; 11] = [
    "queue",
    "watch",
    "exchange",
    "routing_key",
    "prefetch",
    "death",
    "persistent",
    "reconnect",
    "cacertfile",
    "certfile",
    "keyfile",
];

/// A parsed `amqp://` / `amqps://` URL.
///
/// `amqp://user:pass@host:port/vhost?queue=orders.dlq` for a source;
/// `...?exchange=orders&routing_key=created` or `...?queue=orders.staging` for a destination.
/// The vhost is percent-encoded (`%2f` for `/`; an empty vhost also means `/`).
#[derive(Clone)]
pub struct AmqpUrl {
    uri: AMQPUri,
    tls: TlsFiles,
    /// `queue=`: the queue to read (source) or to publish to through the default exchange (sink).
    pub queue: Option<String>,
    /// `exchange=`: the exchange to publish to.
    pub exchange: Option<String>,
    /// `routing_key=`: the routing key to publish with.
    pub routing_key: Option<String>,
    /// `prefetch=`: unacknowledged deliveries the broker may push ahead (default 1000).
    pub prefetch: u16,
    /// `death=move|keep`: what to do with dead-letter headers on publish.
    pub death: DeathHeaders,
    /// `persistent=true|false`: delivery mode of published messages (default persistent).
    pub persistent: bool,
    /// `reconnect=60s`: how long to keep trying to reconnect after a dropped connection.
    pub reconnect_for: Duration,
    /// `watch=`: how the re-poison breaker sees what arrives in a source queue.
    pub watch: Watch,
}

/// How the re-poison breaker watches a RabbitMQ DLQ: a private queue of its own, bound where the DLQ is
/// bound, gets a copy of every message routed to the DLQ after the pass started (the DLQ itself cannot be
/// looked at without taking its messages).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Watch {
    /// `watch=auto` (default): read the DLQ's bindings from the management API on the AMQP host, port 15672.
    Auto,
    /// `watch=http://host:port`: read them from the management API there.
    Management(String),
    /// `watch=exchange:NAME[:ROUTING_KEY]`: bind to this exchange, without asking the management API.
    Exchange {
        /// The exchange dead letters are routed through (the queue's dead-letter exchange).
        name: String,
        /// The routing key to bind with (empty: none, as a fanout exchange needs).
        routing_key: String,
    },
    /// `watch=off`: do not watch.
    Off,
}

impl FromStr for Watch {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "auto" => Ok(Watch::Auto),
            "off" => Ok(Watch::Off),
            t if t.starts_with("http://") => Ok(Watch::Management(t.trim_end_matches('/').to_owned())),
            t if t.starts_with("https://") => Err(
                "the management API is read over plain http only; give watch=exchange:NAME[:ROUTING_KEY] instead"
                    .into(),
            ),
            t => match t.strip_prefix("exchange:") {
                Some(rest) if !rest.is_empty() => {
                    let (name, key) = rest.split_once(':').unwrap_or((rest, ""));
                    Ok(Watch::Exchange {
                        name: name.to_owned(),
                        routing_key: key.to_owned(),
                    })
                }
                _ => Err(
                    "`auto`, `off`, `http://HOST:PORT` (the management API) or `exchange:NAME[:ROUTING_KEY]`".into(),
                ),
            },
        }
    }
}

#[derive(Clone, Default)]
struct TlsFiles {
    ca: Option<PathBuf>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
}

impl std::fmt::Debug for AmqpUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.server()) // never the credentials
    }
}

impl AmqpUrl {
    /// Parse a URL. Errors name the offending part and never repeat the password.
    pub fn parse(url: &str) -> Result<Self, AdapterError> {
        let shown = crate::core::endpoint::redact(url);
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let mut passed = Vec::new();
        let mut parsed = AmqpUrl {
            uri: AMQPUri::default(),
            tls: TlsFiles::default(),
            queue: None,
            exchange: None,
            routing_key: None,
            prefetch: 1000,
            death: DeathHeaders::Move,
            persistent: true,
            reconnect_for: Duration::from_secs(60),
            watch: Watch::Auto,
        };
        let bad =
            |key: &str, value: &str, want: &str| AdapterError::Config(format!("`{key}={value}` is not valid: {want}"));
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            let value = value.into_owned();
            match key.as_ref() {
                "queue" => parsed.queue = Some(value),
                "exchange" => parsed.exchange = Some(value),
                "routing_key" => parsed.routing_key = Some(value),
                "prefetch" => {
                    parsed.prefetch = value
                        .parse()
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or_else(|| bad("prefetch", &value, "a number from 1 to 65535"))?;
                }
                "death" => {
                    parsed.death = match value.as_str() {
                        "move" => DeathHeaders::Move,
                        "keep" => DeathHeaders::Keep,
                        _ => return Err(bad("death", &value, "`move` or `keep`")),
                    }
                }
                "persistent" => {
                    parsed.persistent = value
                        .parse()
                        .map_err(|_| bad("persistent", &value, "`true` or `false`"))?;
                }
                "reconnect" => {
                    parsed.reconnect_for = humantime::parse_duration(&value)
                        .map_err(|_| bad("reconnect", &value, "a duration such as 30s or 2m"))?;
                }
                "watch" => parsed.watch = value.parse().map_err(|want: String| bad("watch", &value, &want))?,
                "cacertfile" => parsed.tls.ca = Some(PathBuf::from(value)),
                "certfile" => parsed.tls.cert = Some(PathBuf::from(value)),
                "keyfile" => parsed.tls.key = Some(PathBuf::from(value)),
                k if LAPIN_OPTIONS.contains(&k) => passed.push(format!("{k}={}", encode(&value))),
                k => {
                    return Err(AdapterError::Config(format!(
                        "unknown option `{k}`; known: {}, {}",
                        REDRIVE_OPTIONS.join(", "),
                        LAPIN_OPTIONS.join(", ")
                    )));
                }
            }
        }
        let for_lapin = if passed.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", passed.join("&"))
        };
        let mut uri = AMQPUri::from_str(&for_lapin)
            .map_err(|e| AdapterError::Config(format!("{shown} is not a valid AMQP URL: {e}")))?;
        if uri.vhost.is_empty() {
            uri.vhost = "/".into();
        }
        if uri.scheme == AMQPScheme::AMQP && (parsed.tls.ca.is_some() || parsed.tls.cert.is_some()) {
            return Err(AdapterError::Config(
                "TLS files are given but the scheme is amqp://; use amqps:// for TLS".into(),
            ));
        }
        if parsed.tls.cert.is_some() != parsed.tls.key.is_some() {
            return Err(AdapterError::Config(
                "a client certificate needs both certfile= and keyfile=".into(),
            ));
        }
        parsed.uri = uri;
        Ok(parsed)
    }

    /// `amqp://host:port/vhost`, without credentials.
    pub fn server(&self) -> String {
        let scheme = match self.uri.scheme {
            AMQPScheme::AMQP => "amqp",
            AMQPScheme::AMQPS => "amqps",
        };
        format!(
            "{scheme}://{}:{}/{}",
            self.uri.authority.host,
            self.uri.authority.port,
            encode(&self.uri.vhost)
        )
    }

    /// The vhost.
    pub fn vhost(&self) -> &str {
        &self.uri.vhost
    }

    /// The user name (shown in errors; the password never is).
    pub fn user(&self) -> &str {
        &self.uri.authority.userinfo.username
    }

    /// The password (for the management API; never shown).
    fn password(&self) -> &str {
        &self.uri.authority.userinfo.password
    }

    /// The AMQP host.
    fn host(&self) -> &str {
        &self.uri.authority.host
    }

    /// Connect, with a timeout, naming the connection `redrive <purpose>` in the management UI.
    pub async fn connect(&self, purpose: &str) -> Result<Connection, AdapterError> {
        let tls = self.tls_config()?;
        let properties = ConnectionProperties::default().with_connection_name(format!("redrive {purpose}").into());
        let runtime = lapin::runtime::default_runtime()
            .map_err(|e| AdapterError::Broker(format!("no async runtime for the AMQP client: {e}")))?;
        let timeout = Duration::from_millis(self.uri.query.connection_timeout.unwrap_or(15_000));
        let connecting = Connection::connect_uri_with_config(self.uri.clone(), properties, tls, runtime);
        match tokio::time::timeout(timeout, connecting).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => Err(AdapterError::Broker(self.explain(&e, "cannot connect"))),
            Err(_) => Err(AdapterError::Broker(format!(
                "cannot connect to {}: no answer within {} s (is RabbitMQ running there, and the port right?)",
                self.server(),
                timeout.as_secs()
            ))),
        }
    }

    fn tls_config(&self) -> Result<OwnedTLSConfig, AdapterError> {
        let read = |path: &PathBuf, what: &str| {
            std::fs::read(path).map_err(|e| AdapterError::io(format!("cannot read the {what} {}", path.display()), e))
        };
        let cert_chain = match &self.tls.ca {
            Some(ca) => Some(String::from_utf8_lossy(&read(ca, "CA certificate file (cacertfile=)")?).into_owned()),
            None => None,
        };
        let identity = match (&self.tls.cert, &self.tls.key) {
            (Some(cert), Some(key)) => Some(OwnedIdentity::PKCS8 {
                pem: read(cert, "client certificate (certfile=)")?,
                key: read(key, "client key (keyfile=)")?,
            }),
            _ => None,
        };
        Ok(OwnedTLSConfig { identity, cert_chain })
    }

    /// A broker error in words: what failed, where, and what to check. Never includes the password.
    pub fn explain(&self, error: &lapin::Error, doing: &str) -> String {
        let text = error.to_string();
        let hint = if text.contains("ACCESS_REFUSED") || text.contains("PLAIN login refused") {
            format!(
                " — RabbitMQ refused the login of user `{}`: check the user name and password in the URL",
                self.user()
            )
        } else if text.contains("NOT_ALLOWED") || text.contains("vhost") {
            format!(
                " — vhost `{}` does not exist or user `{}` has no access to it (write `/` as %2f in the URL)",
                self.vhost(),
                self.user()
            )
        } else if text.contains("Connection refused") || text.contains("connection refused") {
            " — is RabbitMQ running there, and the port right?".to_owned()
        } else if text.contains("reset") || text.contains("closed") || text.contains("broken pipe") {
            " — the broker closed the connection (wrong credentials or vhost also look like this)".to_owned()
        } else {
            String::new()
        };
        format!("{doing} to {}: {text}{hint}", self.server())
    }
}

/// A fresh channel; a failed passive declare closes its channel, so checks use their own.
pub async fn open_channel(conn: &Connection, url: &AmqpUrl) -> Result<Channel, AdapterError> {
    conn.create_channel()
        .await
        .map_err(|e| AdapterError::Broker(url.explain(&e, "cannot open a channel")))
}

/// Ready messages in `queue` (passive declare: fails if the queue does not exist).
pub async fn queue_depth(conn: &Connection, url: &AmqpUrl, queue: &str) -> Result<u64, AdapterError> {
    use lapin::options::QueueDeclareOptions;
    let channel = open_channel(conn, url).await?;
    let options = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let declared = channel
        .queue_declare(short_name("queue", queue)?, options, Default::default())
        .await;
    let _ = channel.close(200, "checked".into()).await;
    declared
        .map(|q| u64::from(q.message_count()))
        .map_err(|e| passive_error(url, "queue", queue, &e))
}

/// Check that `exchange` exists (the default exchange always does).
pub async fn check_exchange(conn: &Connection, url: &AmqpUrl, exchange: &str) -> Result<(), AdapterError> {
    use lapin::options::ExchangeDeclareOptions;
    if exchange.is_empty() {
        return Ok(());
    }
    let channel = open_channel(conn, url).await?;
    let options = ExchangeDeclareOptions {
        passive: true,
        ..Default::default()
    };
    // The kind is ignored by a passive declare.
    let declared = channel
        .exchange_declare(
            short_name("exchange", exchange)?,
            lapin::ExchangeKind::Direct,
            options,
            Default::default(),
        )
        .await;
    let _ = channel.close(200, "checked".into()).await;
    declared.map_err(|e| passive_error(url, "exchange", exchange, &e))
}

/// A failed passive declare of `what` (`queue`, `exchange`) `name`: missing, or the broker's own error.
fn passive_error(url: &AmqpUrl, what: &str, name: &str, error: &lapin::Error) -> AdapterError {
    if error.to_string().contains("NOT_FOUND") {
        AdapterError::Config(format!(
            "{what} `{name}` does not exist in vhost `{}` on {}",
            url.vhost(),
            url.server()
        ))
    } else {
        AdapterError::Broker(url.explain(error, &format!("cannot check {what} `{name}`")))
    }
}

/// A queue, exchange or routing key name as AMQP needs it (at most 255 bytes).
pub fn short_name(what: &str, name: &str) -> Result<lapin::types::ShortString, AdapterError> {
    lapin::types::ShortString::try_new(name)
        .map_err(|_| AdapterError::Config(format!("{what} name `{name}` is longer than 255 bytes")))
}

fn encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_source_and_sink_urls() {
        let u = AmqpUrl::parse("amqp://guest:secret@127.0.0.1:5672/%2f?queue=orders.dlq&prefetch=50").unwrap();
        assert_eq!(u.queue.as_deref(), Some("orders.dlq"));
        assert_eq!(u.prefetch, 50);
        assert_eq!(u.vhost(), "/");
        assert_eq!(u.server(), "amqp://127.0.0.1:5672/%2F");
        assert!(!format!("{u:?}").contains("secret"));
        let u = AmqpUrl::parse("amqp://h/?exchange=orders&routing_key=a.b&death=keep&persistent=false").unwrap();
        assert_eq!(u.vhost(), "/", "an empty vhost means the default one");
        assert_eq!(u.death, DeathHeaders::Keep);
        assert!(!u.persistent);
        let u = AmqpUrl::parse("amqps://h/prod?queue=q&heartbeat=10").unwrap();
        assert_eq!(u.server(), "amqps://h:5671/prod");
    }

    #[test]
    fn bad_options_are_named_without_the_password() {
        for (url, want) in [
            ("amqp://u:hunter2@h/?queue=q&prefech=5", "unknown option `prefech`"),
            ("amqp://u:hunter2@h/?prefetch=0", "`prefetch=0` is not valid"),
            ("amqp://u:hunter2@h/?death=drop", "`move` or `keep`"),
            ("amqp://u:hunter2@h/?cacertfile=ca.pem", "use amqps://"),
            ("amqps://u:hunter2@h/?certfile=c.pem", "both certfile= and keyfile="),
        ] {
            let err = AmqpUrl::parse(url).unwrap_err().to_string();
            assert!(err.contains(want), "{url}: {err}");
            assert!(!err.contains("hunter2"), "{err}");
        }
    }
}

//! Messages routed to a RabbitMQ DLQ after the pass started, for the re-poison breaker. A queue cannot be
//! looked at without taking its messages, and the ones that come back wait at its tail behind the pass; so
//! the watch declares a private queue of its own (exclusive, deleted with its connection, capped at
//! `WATCH_QUEUE_LENGTH`), binds it wherever the DLQ is bound, and reads the copies the exchanges give it.
//! The DLQ and its messages are not touched.
//!
//! Where the DLQ is bound comes from the management API (`watch=auto`: port 15672 on the AMQP host;
//! `watch=http://host:port`), or from the URL (`watch=exchange:NAME[:ROUTING_KEY]`). A DLQ that receives
//! only through the default exchange (a dead-letter exchange of `""`) cannot be watched: no queue can be
//! bound there.

use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use futures_util::{FutureExt as _, StreamExt as _};
use http_body_util::{BodyExt as _, Empty};
use hyper::Request;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use lapin::options::{BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Connection, Consumer};
use tokio::net::TcpStream;

use super::{AmqpUrl, Watch, headers, short_name};
use crate::core::adapter::{AdapterError, Arrivals};
use crate::core::envelope::Envelope;

/// Most copies the watch queue keeps (the oldest dropped first) when the breaker falls behind.
const WATCH_QUEUE_LENGTH: i64 = 10_000;
/// Most copies read in one look.
const MOST_PER_POLL: usize = 1000;
/// How long a management API request may take.
const MANAGEMENT_TIMEOUT: Duration = Duration::from_secs(10);

/// One place the DLQ is bound: an exchange, a routing key, binding arguments (for headers exchanges).
#[derive(Clone, Debug, PartialEq)]
struct Binding {
    exchange: String,
    routing_key: String,
    arguments: FieldTable,
}

/// Watches what is routed to one queue.
pub struct AmqpArrivals {
    url: AmqpUrl,
    queue: String,
    /// The bindings, once found (they are looked up once; a rebuilt watch binds the same).
    bindings: Option<Vec<Binding>>,
    watching: Option<(Connection, Consumer)>,
}

impl AmqpArrivals {
    /// Watch what is routed to `queue` (the source's DLQ) from now on.
    pub fn new(url: AmqpUrl, queue: String) -> Self {
        Self {
            url,
            queue,
            bindings: None,
            watching: None,
        }
    }

    /// Where the DLQ is bound. A [`AdapterError::Config`] means it cannot be watched at all.
    async fn find_bindings(&self) -> Result<Vec<Binding>, AdapterError> {
        let base = match &self.url.watch {
            Watch::Off => return Err(AdapterError::Config("turned off by watch=off in the source URL".into())),
            Watch::Exchange { name, routing_key } => {
                return Ok(vec![Binding {
                    exchange: name.clone(),
                    routing_key: routing_key.clone(),
                    arguments: FieldTable::default(),
                }]);
            }
            Watch::Auto => format!("http://{}:15672", self.url.host()),
            Watch::Management(base) => base.clone(),
        };
        let path = format!(
            "/api/queues/{}/{}/bindings",
            encode_segment(self.url.vhost()),
            encode_segment(&self.queue)
        );
        let listed = get_json(&base, &path, self.url.user(), self.url.password())
            .await
            .map_err(|why| {
                AdapterError::Config(format!(
                    "cannot read where queue `{}` is bound from RabbitMQ's management API at {base} ({why}); enable \
                     it (rabbitmq-plugins enable rabbitmq_management), name it with watch=http://HOST:PORT, or name \
                     the dead-letter exchange with watch=exchange:NAME[:ROUTING_KEY]",
                    self.queue
                ))
            })?;
        let bindings = bindings_of(&listed);
        if bindings.is_empty() {
            return Err(AdapterError::Config(format!(
                "queue `{}` is bound to no exchange but the default one (its dead letters come through a \
                 dead-letter exchange of \"\"), and no other queue can be bound there to see them",
                self.queue
            )));
        }
        Ok(bindings)
    }

    /// Declare the private queue, bind it, start reading it.
    async fn watch(&self, bindings: &[Binding]) -> Result<(Connection, Consumer), AdapterError> {
        let connection = self.url.connect("watch").await?;
        let channel = super::open_channel(&connection, &self.url).await?;
        let broker = |e: lapin::Error, doing: &str| AdapterError::Broker(self.url.explain(&e, doing));
        let mut arguments = FieldTable::default();
        arguments.insert("x-max-length".into(), AMQPValue::LongLongInt(WATCH_QUEUE_LENGTH));
        let declared = channel
            .queue_declare(
                "".into(),
                QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..Default::default()
                },
                arguments,
            )
            .await
            .map_err(|e| broker(e, "cannot declare the watch queue"))?;
        let name = declared.name().clone();
        for b in bindings {
            channel
                .queue_bind(
                    name.clone(),
                    short_name("exchange", &b.exchange)?,
                    short_name("routing key", &b.routing_key)?,
                    QueueBindOptions::default(),
                    b.arguments.clone(),
                )
                .await
                .map_err(|e| {
                    let doing = format!("cannot bind the watch queue to exchange `{}`", b.exchange);
                    if e.to_string().contains("NOT_FOUND") {
                        AdapterError::Config(self.url.explain(&e, &doing))
                    } else {
                        broker(e, &doing)
                    }
                })?;
        }
        let consumer = channel
            .basic_consume(
                name,
                "redrive-watch".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    exclusive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(|e| broker(e, "cannot read the watch queue"))?;
        Ok((connection, consumer))
    }
}

#[async_trait]
impl Arrivals for AmqpArrivals {
    async fn poll(&mut self) -> Result<Vec<Envelope>, AdapterError> {
        let bindings = match &self.bindings {
            Some(b) => b.clone(),
            None => self.bindings.insert(self.find_bindings().await?).clone(),
        };
        if self.watching.is_none() {
            self.watching = Some(self.watch(&bindings).await?);
        }
        let Some((_, consumer)) = self.watching.as_mut() else {
            return Ok(Vec::new());
        };
        let mut seen = Vec::new();
        while seen.len() < MOST_PER_POLL {
            match consumer.next().now_or_never() {
                None => break,
                Some(Some(Ok(delivery))) => {
                    let attributes = headers::attributes(&delivery.properties);
                    let digest = headers::content_digest(&attributes, &delivery.data);
                    seen.push(headers::envelope(
                        &self.queue,
                        &delivery.properties,
                        attributes,
                        delivery.data,
                        &digest,
                    ));
                }
                Some(Some(Err(e))) => {
                    // A new watch next time (copies routed meanwhile are missed).
                    self.watching = None;
                    return Err(AdapterError::Broker(self.url.explain(&e, "the watch connection broke")));
                }
                Some(None) => {
                    self.watching = None;
                    break;
                }
            }
        }
        Ok(seen)
    }
}

/// The bindings of a management API answer (`GET /api/queues/VHOST/NAME/bindings`), without the default
/// exchange's.
fn bindings_of(listed: &serde_json::Value) -> Vec<Binding> {
    listed
        .as_array()
        .map(|all| {
            all.iter()
                .filter_map(|b| {
                    let exchange = b.get("source")?.as_str()?;
                    if exchange.is_empty() {
                        return None;
                    }
                    let mut arguments = FieldTable::default();
                    if let Some(args) = b.get("arguments").and_then(serde_json::Value::as_object) {
                        for (key, value) in args {
                            let value = match value {
                                serde_json::Value::String(s) => AMQPValue::LongString(s.as_str().into()),
                                serde_json::Value::Bool(b) => AMQPValue::Boolean(*b),
                                serde_json::Value::Number(n) => match n.as_i64() {
                                    Some(i) => AMQPValue::LongLongInt(i),
                                    None => AMQPValue::Double(n.as_f64().unwrap_or_default()),
                                },
                                _ => continue,
                            };
                            arguments.insert(key.as_str().into(), value);
                        }
                    }
                    Some(Binding {
                        exchange: exchange.to_owned(),
                        routing_key: b
                            .get("routing_key")
                            .and_then(serde_json::Value::as_str)
                            .unwrap_or("")
                            .to_owned(),
                        arguments,
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A path segment as the management API wants it (`/` as `%2F`).
fn encode_segment(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// GET `base` + `path` with basic auth and read the JSON answer. The error says what went wrong, never the
/// password.
async fn get_json(base: &str, path: &str, user: &str, password: &str) -> Result<serde_json::Value, String> {
    let parsed = url::Url::parse(base).map_err(|e| format!("not a URL: {e}"))?;
    let host = parsed.host_str().ok_or("no host")?.to_owned();
    let port = parsed.port_or_known_default().unwrap_or(15672);
    let authority = format!("{host}:{port}");
    let full = format!("{}{path}", parsed.path().trim_end_matches('/'));
    let credentials = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let exchange = async {
        let stream = TcpStream::connect(&authority)
            .await
            .map_err(|e| format!("cannot connect: {e}"))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        let driver = tokio::spawn(connection);
        let request = Request::get(full.as_str())
            .header(hyper::header::HOST, authority.as_str())
            .header(hyper::header::AUTHORIZATION, format!("Basic {credentials}"))
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let response = sender.send_request(request).await.map_err(|e| e.to_string())?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .map_err(|e| e.to_string())?;
        driver.abort();
        match status.as_u16() {
            200 => serde_json::from_slice(&body).map_err(|e| format!("not JSON: {e}")),
            401 => Err(format!(
                "user `{user}` was refused (check the password, and that it has a management tag)"
            )),
            404 => Err("no such queue or vhost there".into()),
            _ => Err(format!(
                "it answered {status}: {}",
                crate::core::text::clip(&String::from_utf8_lossy(&body), 200)
            )),
        }
    };
    match tokio::time::timeout(MANAGEMENT_TIMEOUT, exchange).await {
        Ok(result) => result,
        Err(_) => Err(format!("no answer within {} s", MANAGEMENT_TIMEOUT.as_secs())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bindings_leave_out_the_default_exchange_and_keep_arguments() {
        let listed = serde_json::json!([
            {"source": "", "routing_key": "orders.dlq", "arguments": {}},
            {"source": "dlx", "routing_key": "orders", "arguments": {"x-match": "any", "kind": 3}},
            {"source": "dlx-fanout", "routing_key": "", "arguments": {}},
            {"routing_key": "no source"}
        ]);
        let got = bindings_of(&listed);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].exchange, "dlx");
        assert_eq!(got[0].routing_key, "orders");
        assert_eq!(
            got[0].arguments.inner().get("x-match"),
            Some(&AMQPValue::LongString("any".into()))
        );
        assert_eq!(got[1].exchange, "dlx-fanout");
        assert!(bindings_of(&serde_json::json!({"error": "x"})).is_empty());
    }

    #[test]
    fn vhosts_and_names_are_one_path_segment() {
        assert_eq!(encode_segment("/"), "%2F");
        assert_eq!(encode_segment("a b/c"), "a%20b%2Fc");
    }

    #[test]
    fn watch_values_parse_and_bad_ones_say_what_is_expected() {
        assert_eq!("auto".parse::<Watch>(), Ok(Watch::Auto));
        assert_eq!("off".parse::<Watch>(), Ok(Watch::Off));
        assert_eq!(
            "http://rmq:15672/".parse::<Watch>(),
            Ok(Watch::Management("http://rmq:15672".into()))
        );
        assert_eq!(
            "exchange:dlx:orders.#".parse::<Watch>(),
            Ok(Watch::Exchange {
                name: "dlx".into(),
                routing_key: "orders.#".into()
            })
        );
        assert_eq!(
            "exchange:dlx".parse::<Watch>(),
            Ok(Watch::Exchange {
                name: "dlx".into(),
                routing_key: String::new()
            })
        );
        for bad in ["exchange:", "https://rmq", "sometimes"] {
            assert!(bad.parse::<Watch>().is_err(), "{bad}");
        }
    }
}

//! Google Cloud Pub/Sub: `pubsub://projects/P/subscriptions/S` (a subscription on a dead-letter topic) as a
//! source, `pubsub://projects/P/topics/T` as a destination, through the `gcloud-pubsub` client (gRPC).
//!
//! Pub/Sub moves a message to a subscription's dead-letter topic after `maxDeliveryAttempts`, with the
//! `CloudPubSubDeadLetterSource*` attributes that say where it came from ([`message`]). The source reads a
//! subscription on that topic in one bounded pass (`source`): messages are held by their ack deadline,
//! renewed while they wait; an ack acknowledges; everything not acked is given back at the end of the pass
//! (deadline 0), so it stays in the DLQ for the next run. Messages the pulls meet that were published after the
//! pass began are held for the next pass and shown to the re-poison breaker. The sink publishes and counts a message as forwarded
//! when the publish returned its message id (`sink`).
//!
//! Credentials: `PUBSUB_EMULATOR_HOST` (or `emulator=HOST:PORT` in the URL) talks to an emulator without any;
//! otherwise Google's application default credentials (`GOOGLE_APPLICATION_CREDENTIALS`, `gcloud auth
//! application-default login`, or the metadata server).

pub mod message;
mod sink;
mod source;
pub mod url;
pub use url::PubSubUrl;

use std::time::Duration;

use gcloud_gax::conn::{ConnectionOptions, Environment};
use gcloud_gax::grpc::{Code, Status};
use gcloud_pubsub::client::{Client, ClientConfig};

pub use sink::PubSubSink;
pub use source::PubSubSource;

use crate::core::adapter::{AdapterError, error_chain};

/// A client for the URL's project: to the emulator when one is named, else to Google with application
/// default credentials.
async fn connect(url: &PubSubUrl) -> Result<Client, AdapterError> {
    let mut config = ClientConfig {
        project_id: Some(url.project.clone()),
        pool_size: 2,
        connection_option: ConnectionOptions {
            timeout: Some(Duration::from_secs(30)),
            connect_timeout: Some(Duration::from_secs(5)),
            ..Default::default()
        },
        ..Default::default()
    };
    match &url.emulator {
        Some(host) => config.environment = Environment::Emulator(host.clone()),
        None => {
            config = config.with_auth().await.map_err(|e| {
                AdapterError::Config(format!(
                    "{}: no Google credentials: {e}; set GOOGLE_APPLICATION_CREDENTIALS to a service account key \
                     file or run `gcloud auth application-default login` (for the emulator, set \
                     PUBSUB_EMULATOR_HOST or add emulator=HOST:PORT to the URL)",
                    url.describe()
                ))
            })?;
        }
    }
    let whom = match &url.emulator {
        Some(host) => format!("the Pub/Sub emulator at {host}"),
        None => "Google Cloud Pub/Sub".to_owned(),
    };
    Client::new(config).await.map_err(|e| {
        AdapterError::Broker(format!(
            "{}: cannot connect to {whom}: {}",
            url.describe(),
            error_chain(&e)
        ))
    })
}

/// A gRPC status as an adapter error: what is missing or refused is a configuration mistake; the rest is the
/// service's.
fn status_error(what: &str, status: &Status) -> AdapterError {
    let message = status.message();
    match status.code() {
        Code::NotFound => AdapterError::Config(format!("{what} does not exist ({message})")),
        Code::PermissionDenied | Code::Unauthenticated => AdapterError::Config(format!(
            "{what}: permission denied ({message}); the credentials need the Pub/Sub Subscriber role to read \
             and Publisher to write"
        )),
        Code::InvalidArgument => AdapterError::Config(format!("{what}: {message}")),
        code => AdapterError::Broker(format!("{what}: {code:?}: {message}")),
    }
}

/// True when trying the call again may work (the service or the connection is away for a while).
fn transient(status: &Status) -> bool {
    matches!(
        status.code(),
        Code::Unavailable
            | Code::Unknown
            | Code::Aborted
            | Code::Cancelled
            | Code::DeadlineExceeded
            | Code::ResourceExhausted
            | Code::Internal
    )
}

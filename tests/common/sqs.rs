//! SQS for the end-to-end tests: the local endpoint (moto_server on 127.0.0.1:9324, started by
//! scripts/services.sh; REDRIVE_TEST_SQS_ENDPOINT overrides), a test's own queues, and `redrive` with test
//! credentials.

use std::process::Command;
use std::time::{Duration, Instant};

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{Message, MessageAttributeValue, MessageSystemAttributeName, QueueAttributeName};

use super::redrive;

pub fn endpoint() -> String {
    std::env::var("REDRIVE_TEST_SQS_ENDPOINT").unwrap_or_else(|_| "http://127.0.0.1:9324".into())
}

/// A moto_server that checks credentials (scripts/services.sh starts it), for refused-credential tests.
pub fn auth_endpoint() -> String {
    let port = std::env::var("REDRIVE_SQS_AUTH_PORT").unwrap_or_else(|_| "9325".into());
    let address = format!("127.0.0.1:{port}");
    assert!(
        std::net::TcpStream::connect(&address).is_ok(),
        "no credential-checking SQS endpoint on {address}: run scripts/services.sh (it starts moto_server with \
         INITIAL_NO_AUTH_ACTION_COUNT=0 there)"
    );
    format!("http://{address}")
}

pub const KEY: &str = "test-key-id";
pub const SECRET: &str = "test-secret-never-printed";

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

pub fn string(value: &str) -> MessageAttributeValue {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(value)
        .build()
        .unwrap()
}

pub fn number(value: i64) -> MessageAttributeValue {
    MessageAttributeValue::builder()
        .data_type("Number")
        .string_value(value.to_string())
        .build()
        .unwrap()
}

/// One test's queues on the local endpoint, deleted on drop.
pub struct Queues {
    /// The runtime the client's calls block on.
    pub rt: tokio::runtime::Runtime,
    /// The SDK client, on the local endpoint.
    pub client: Client,
    prefix: String,
    created: Vec<String>,
}

impl Queues {
    pub fn new(test: &str) -> Self {
        let rt = runtime();
        let config = rt.block_on(
            aws_config::defaults(aws_config::BehaviorVersion::latest())
                .http_client(redrive::brokers::sqs::http_client())
                .endpoint_url(endpoint())
                .region(aws_config::Region::new("us-east-1"))
                .credentials_provider(aws_sdk_sqs::config::Credentials::new(KEY, SECRET, None, None, "test"))
                .load(),
        );
        let client = Client::new(&config);
        if let Err(e) = rt.block_on(client.list_queues().send()) {
            panic!(
                "no SQS endpoint at {}: {}. Start one with scripts/services.sh (moto_server on 127.0.0.1:9324), \
                 or set REDRIVE_TEST_SQS_ENDPOINT",
                endpoint(),
                aws_sdk_sqs::error::DisplayErrorContext(&e)
            );
        }
        Queues {
            rt,
            client,
            prefix: format!("rdt-{test}-{}", std::process::id()),
            created: Vec::new(),
        }
    }

    pub fn name(&self, part: &str) -> String {
        format!("{}-{part}", self.prefix)
    }

    pub fn create(&mut self, part: &str, attributes: &[(QueueAttributeName, String)]) -> String {
        let mut req = self.client.create_queue().queue_name(self.name(part));
        for (k, v) in attributes {
            req = req.attributes(k.clone(), v);
        }
        let url = self.rt.block_on(req.send()).unwrap().queue_url.unwrap();
        self.created.push(url.clone());
        url
    }

    /// A work queue that dead-letters into a DLQ after 2 receives, and a staging queue.
    pub fn topology(&mut self, fifo: bool) -> (String, String, String) {
        let suffix = if fifo { ".fifo" } else { "" };
        let fifo_attrs = |extra: Vec<(QueueAttributeName, String)>| {
            let mut a = extra;
            if fifo {
                a.push((QueueAttributeName::FifoQueue, "true".into()));
            }
            a
        };
        let dlq = self.create(&format!("dlq{suffix}"), &fifo_attrs(vec![]));
        let arn = self.attribute(&dlq, QueueAttributeName::QueueArn);
        let policy = format!(r#"{{"deadLetterTargetArn":"{arn}","maxReceiveCount":2}}"#);
        let work = self.create(
            &format!("work{suffix}"),
            &fifo_attrs(vec![(QueueAttributeName::RedrivePolicy, policy)]),
        );
        let staging = self.create(&format!("staging{suffix}"), &fifo_attrs(vec![]));
        (work, dlq, staging)
    }

    pub fn attribute(&self, url: &str, name: QueueAttributeName) -> String {
        let out = self
            .rt
            .block_on(
                self.client
                    .get_queue_attributes()
                    .queue_url(url)
                    .attribute_names(name.clone())
                    .send(),
            )
            .unwrap();
        out.attributes.unwrap()[&name].clone()
    }

    /// (visible, in flight)
    pub fn counts(&self, url: &str) -> (u64, u64) {
        let out = self
            .rt
            .block_on(
                self.client
                    .get_queue_attributes()
                    .queue_url(url)
                    .attribute_names(QueueAttributeName::All)
                    .send(),
            )
            .unwrap();
        let a = out.attributes.unwrap();
        (
            a[&QueueAttributeName::ApproximateNumberOfMessages].parse().unwrap(),
            a[&QueueAttributeName::ApproximateNumberOfMessagesNotVisible]
                .parse()
                .unwrap(),
        )
    }

    pub fn send(&self, url: &str, body: &str, attributes: &[(&str, MessageAttributeValue)], group: Option<&str>) {
        let mut req = self.client.send_message().queue_url(url).message_body(body);
        for (k, v) in attributes {
            req = req.message_attributes(*k, v.clone());
        }
        if let Some(g) = group {
            req = req.message_group_id(g).message_deduplication_id(format!("{g}-{body}"));
        }
        self.rt.block_on(req.send()).unwrap();
    }

    /// The application's consumer failing every message (receive, then give it back at once) until SQS
    /// has moved them all to the DLQ.
    pub fn fail_until_dead_lettered(&self, work: &str, dlq: &str, n: u64) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while self.counts(dlq).0 < n {
            assert!(
                Instant::now() < deadline,
                "messages did not reach the DLQ: {:?}",
                self.counts(dlq)
            );
            let out = self
                .rt
                .block_on(
                    self.client
                        .receive_message()
                        .queue_url(work)
                        .max_number_of_messages(10)
                        .visibility_timeout(30)
                        .send(),
                )
                .unwrap();
            for m in out.messages.unwrap_or_default() {
                self.rt
                    .block_on(
                        self.client
                            .change_message_visibility()
                            .queue_url(work)
                            .receipt_handle(m.receipt_handle.unwrap())
                            .visibility_timeout(0)
                            .send(),
                    )
                    .unwrap();
            }
        }
    }

    /// Receive and delete everything in a queue, in receive order.
    pub fn drain(&self, url: &str) -> Vec<Message> {
        let mut all = Vec::new();
        let mut empty = 0;
        while empty < 2 {
            let out = self
                .rt
                .block_on(
                    self.client
                        .receive_message()
                        .queue_url(url)
                        .max_number_of_messages(10)
                        .visibility_timeout(60)
                        .message_attribute_names("All")
                        .message_system_attribute_names(MessageSystemAttributeName::All)
                        .send(),
                )
                .unwrap();
            let messages = out.messages.unwrap_or_default();
            if messages.is_empty() {
                empty += 1;
                continue;
            }
            for m in &messages {
                self.rt
                    .block_on(
                        self.client
                            .delete_message()
                            .queue_url(url)
                            .receipt_handle(m.receipt_handle.clone().unwrap())
                            .send(),
                    )
                    .unwrap();
            }
            all.extend(messages);
        }
        all
    }
}

impl Drop for Queues {
    fn drop(&mut self) {
        for url in &self.created {
            let _ = self.rt.block_on(self.client.delete_queue().queue_url(url).send());
        }
    }
}

/// `redrive` with test credentials and the local endpoint (through the standard AWS environment; the
/// `--endpoint-url` flag is tested in `mistakes_are_clear_errors_before_anything_moves`).
pub fn sqs_redrive(tmp: &std::path::Path) -> Command {
    let mut cmd = redrive(tmp);
    cmd.env("AWS_ACCESS_KEY_ID", KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_ENDPOINT_URL")
        .env("AWS_ENDPOINT_URL_SQS", endpoint());
    cmd
}

pub fn order_of(m: &Message) -> u64 {
    let body: serde_json::Value = serde_json::from_str(m.body.as_deref().unwrap()).unwrap();
    body["order"].as_u64().unwrap()
}

pub fn orders(messages: &[Message]) -> Vec<u64> {
    let mut o: Vec<u64> = messages.iter().map(order_of).collect();
    o.sort_unstable();
    o
}

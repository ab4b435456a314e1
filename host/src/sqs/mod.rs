//! Amazon SQS plumbing shared by the `sqs://` source and sink: queue addresses and their options, AWS
//! clients built from the standard AWS configuration chain, queue attributes, and AWS errors explained
//! in words.
//!
//! A queue is named three ways, all resolving to its queue URL (which is also its identity in the run
//! journal and in replay ids):
//!
//! - `sqs://orders-dlq` (looked up with GetQueueUrl in the configured region and account),
//! - its queue URL, `https://sqs.eu-west-1.amazonaws.com/123456789012/orders-dlq` (the region comes from
//!   the host; a URL on another host, such as a local endpoint, also names the endpoint),
//! - its ARN, `arn:aws:sqs:eu-west-1:123456789012:orders-dlq`.
//!
//! Options follow a `?`: `sqs://orders-dlq?receivers=4&visibility=60s`.

pub mod attributes;

use std::time::Duration;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::types::QueueAttributeName;

use crate::source::{AdapterError, redact_url};

/// AWS settings from the command line or the config file. What is not set here comes from the standard
/// AWS chain: `AWS_PROFILE`, `AWS_REGION`, `AWS_ENDPOINT_URL_SQS` / `AWS_ENDPOINT_URL`, `~/.aws/config`,
/// `~/.aws/credentials`, SSO, web identity, the container or instance role.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AwsSettings {
    /// Named profile (`--profile`); overrides `AWS_PROFILE`.
    pub profile: Option<String>,
    /// Region (`--region`); a queue URL or ARN that names its region wins.
    pub region: Option<String>,
    /// Endpoint (`--endpoint-url`), e.g. a local SQS-compatible server.
    pub endpoint_url: Option<String>,
}

/// How a queue was named.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QueueRef {
    /// A queue name, looked up with GetQueueUrl.
    Name(String),
    /// A queue URL, used as it is.
    Url(String),
    /// An ARN: region, account and name.
    Arn {
        /// Region, e.g. `eu-west-1`.
        region: String,
        /// Account id that owns the queue.
        account: String,
        /// Queue name.
        name: String,
    },
}

/// When a source gives back messages it does not remove (skipped, failed, parked, not done).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReleaseAt {
    /// Keep them invisible until the pass ends, so one pass never sees a message twice (the default).
    End,
    /// Make them visible again at once (other consumers may take them during the run).
    Now,
}

/// A parsed `sqs://` URL, queue URL or ARN with its options.
#[derive(Clone, Debug)]
pub struct SqsUrl {
    /// The queue.
    pub queue: QueueRef,
    /// The region the address names (queue URL host, ARN, or `?region=`).
    pub region: Option<String>,
    /// The endpoint a queue URL on a non-AWS host names (`http://127.0.0.1:9324`).
    pub endpoint: Option<String>,
    /// Source: ReceiveMessage calls in flight at once (`receivers=`, default 4).
    pub receivers: usize,
    /// Source: long-poll wait of each receive (`wait=`, 1–20 s, default 2 s). An empty receive after
    /// this wait is how the end of the pass is recognised.
    pub wait: Duration,
    /// Source: visibility timeout of received messages (`visibility=`, default 60 s); the heartbeat
    /// extends it every third of this for messages still in the pipeline or held.
    pub visibility: Duration,
    /// Source: when released messages become visible again (`release=end|now`).
    pub release: ReleaseAt,
    /// Sink: message group for a FIFO destination when a message has none of its own (`group_id=`).
    pub group_id: Option<String>,
    /// Sink: SendMessageBatch calls in flight at once to a standard queue (`concurrency=`, default 8).
    pub concurrency: usize,
    /// How long to keep retrying when SQS cannot be reached (`reconnect=`, default 60 s).
    pub reconnect_for: Duration,
    /// Which of the options above were given, for refusing the ones that do not apply.
    given: Vec<String>,
}

const SOURCE_OPTIONS: [&str; 4] = ["receivers", "wait", "visibility", "release"];
const SINK_OPTIONS: [&str; 2] = ["group_id", "concurrency"];

impl SqsUrl {
    /// Parse `sqs://name[?options]`, `https://sqs.<region>.amazonaws.com/<account>/<name>[?options]`
    /// (or any `http(s)://host/<account>/<name>`), or `arn:aws:sqs:<region>:<account>:<name>[?options]`.
    pub fn parse(text: &str) -> Result<Self, AdapterError> {
        let (address, query) = text.split_once('?').unwrap_or((text, ""));
        let mut region = None;
        let mut endpoint = None;
        let queue = if let Some(name) = address.strip_prefix("sqs://") {
            check_queue_name(name, text)?;
            QueueRef::Name(name.to_owned())
        } else if address.starts_with("arn:") {
            let parts: Vec<&str> = address.split(':').collect();
            match parts.as_slice() {
                ["arn", _partition, "sqs", r, account, name] if !r.is_empty() && !account.is_empty() => {
                    check_queue_name(name, text)?;
                    region = Some((*r).to_owned());
                    QueueRef::Arn {
                        region: (*r).to_owned(),
                        account: (*account).to_owned(),
                        name: (*name).to_owned(),
                    }
                }
                _ => {
                    return Err(AdapterError::Config(format!(
                        "{text:?} is not an SQS queue ARN; expected arn:aws:sqs:<region>:<account>:<queue-name>"
                    )));
                }
            }
        } else if let Some((scheme, rest)) = address.split_once("://")
            && matches!(scheme, "http" | "https")
        {
            let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
            let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
            let [_account, name] = segments.as_slice() else {
                return Err(AdapterError::Config(format!(
                    "{} is not an SQS queue URL; expected https://sqs.<region>.amazonaws.com/<account>/<queue-name>",
                    redact_url(address)
                )));
            };
            check_queue_name(name, text)?;
            let bare_host = host.rsplit_once('@').map_or(host, |(_, h)| h);
            match aws_region_of_host(bare_host) {
                Some(r) => region = Some(r),
                None => endpoint = Some(format!("{scheme}://{host}")),
            }
            QueueRef::Url(address.to_owned())
        } else {
            return Err(AdapterError::Config(format!(
                "{text:?} is not an SQS queue: write sqs://<queue-name>, a queue URL or an ARN"
            )));
        };
        let mut url = SqsUrl {
            queue,
            region,
            endpoint,
            receivers: 4,
            wait: Duration::from_secs(2),
            visibility: Duration::from_secs(60),
            release: ReleaseAt::End,
            group_id: None,
            concurrency: 8,
            reconnect_for: Duration::from_secs(60),
            given: Vec::new(),
        };
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            url.set(&key, &value)
                .map_err(|e| AdapterError::Config(format!("{}: option `{key}`: {e}", redact_url(address))))?;
            url.given.push(key.into_owned());
        }
        Ok(url)
    }

    fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        let count = |max: usize| -> Result<usize, String> {
            match value.parse::<usize>() {
                Ok(n) if (1..=max).contains(&n) => Ok(n),
                _ => Err(format!("expected a whole number from 1 to {max}, got {value:?}")),
            }
        };
        let duration = || humantime::parse_duration(value).map_err(|e| format!("{value:?} is not a duration: {e}"));
        match key {
            "region" => self.region = Some(value.to_owned()),
            "receivers" => self.receivers = count(64)?,
            "concurrency" => self.concurrency = count(64)?,
            "wait" => {
                let wait = duration()?;
                if wait < Duration::from_secs(1) || wait > Duration::from_secs(20) {
                    return Err(format!(
                        "the long-poll wait must be 1s to 20s (SQS allows 0-20 s; 0 would make an empty \
                         receive meaningless), got {value}"
                    ));
                }
                self.wait = wait;
            }
            "visibility" => {
                let v = duration()?;
                if v < Duration::from_secs(3) || v > Duration::from_secs(12 * 3600) {
                    return Err(format!("the visibility timeout must be 3s to 12h, got {value}"));
                }
                self.visibility = v;
            }
            "release" => {
                self.release = match value {
                    "end" => ReleaseAt::End,
                    "now" => ReleaseAt::Now,
                    _ => return Err(format!("expected `end` or `now`, got {value:?}")),
                }
            }
            "group_id" => {
                if value.is_empty() || value.len() > 128 {
                    return Err("a message group id is 1 to 128 characters".into());
                }
                self.group_id = Some(value.to_owned());
            }
            "reconnect" => self.reconnect_for = duration()?,
            _ => {
                return Err(format!(
                    "unknown option; SQS options are region, reconnect, (source) {}, (destination) {}",
                    SOURCE_OPTIONS.join(", "),
                    SINK_OPTIONS.join(", ")
                ));
            }
        }
        Ok(())
    }

    /// Refuse options that only apply to the other side (`role` is "source" or "destination").
    pub fn refuse_options_of_other_side(&self, role: &str) -> Result<(), AdapterError> {
        let other: &[&str] = if role == "source" {
            &SINK_OPTIONS
        } else {
            &SOURCE_OPTIONS
        };
        match self.given.iter().find(|k| other.contains(&k.as_str())) {
            Some(key) => Err(AdapterError::Config(format!(
                "{}: `{key}` is not an option of an SQS {role}",
                self.describe()
            ))),
            None => Ok(()),
        }
    }

    /// The address without options, for messages.
    pub fn describe(&self) -> String {
        match &self.queue {
            QueueRef::Name(name) => format!("sqs://{name}"),
            QueueRef::Url(url) => redact_url(url),
            QueueRef::Arn { region, account, name } => format!("arn:aws:sqs:{region}:{account}:{name}"),
        }
    }
}

/// A queue name as SQS allows it: 1–80 of `A-Z a-z 0-9 - _`, with `.fifo` at the end for FIFO queues.
fn check_queue_name(name: &str, whole: &str) -> Result<(), AdapterError> {
    let stem = name.strip_suffix(".fifo").unwrap_or(name);
    let ok = !stem.is_empty()
        && name.len() <= 80
        && stem
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(AdapterError::Config(format!(
            "{}: `{name}` is not an SQS queue name (1-80 letters, digits, - and _, ending in .fifo for a FIFO queue)",
            redact_url(whole)
        )))
    }
}

/// The region of an AWS SQS host: `sqs.<region>.amazonaws.com[.cn]`, `<region>.queue.amazonaws.com`,
/// `queue.amazonaws.com` (us-east-1). `None` for other hosts.
fn aws_region_of_host(host: &str) -> Option<String> {
    let host = host.split(':').next().unwrap_or(host);
    let base = host
        .strip_suffix(".amazonaws.com")
        .or_else(|| host.strip_suffix(".amazonaws.com.cn"))?;
    if base == "queue" {
        return Some("us-east-1".into());
    }
    if let Some(region) = base.strip_prefix("sqs.") {
        let region = region.strip_suffix(".api.aws").unwrap_or(region);
        return (!region.is_empty()).then(|| region.to_owned());
    }
    base.strip_suffix(".queue").map(str::to_owned)
}

/// The HTTPS client the AWS SDK uses: rustls with ring (the SDK's default, aws-lc, is a long C build).
pub fn http_client() -> aws_sdk_sqs::config::SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https()
}

/// A connected client and where it talks to, for messages.
#[derive(Clone, Debug)]
pub struct SqsClient {
    /// The SDK client.
    pub client: Client,
    /// The endpoint or region, for messages (no credentials).
    pub place: String,
}

/// Build a client from the standard AWS chain, with `settings` and what `url` names on top.
///
/// The region: a queue URL's or ARN's own region, then `--region`, then the chain. The endpoint:
/// `--endpoint-url`, then a queue URL on a non-AWS host, then the chain (`AWS_ENDPOINT_URL_SQS`).
pub async fn connect(settings: &AwsSettings, url: &SqsUrl) -> Result<SqsClient, AdapterError> {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(http_client())
        .timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5))
                // A long poll takes up to 20 s.
                .operation_attempt_timeout(Duration::from_secs(35))
                .build(),
        );
    if let Some(profile) = &settings.profile {
        loader = loader.profile_name(profile);
    }
    if let Some(region) = url.region.clone().or_else(|| settings.region.clone()) {
        loader = loader.region(aws_config::Region::new(region));
    }
    let endpoint = settings.endpoint_url.clone().or_else(|| url.endpoint.clone());
    if let Some(endpoint) = &endpoint {
        loader = loader.endpoint_url(endpoint);
    }
    let config = loader.load().await;
    let Some(region) = config.region().map(|r| r.to_string()) else {
        return Err(AdapterError::Config(format!(
            "{}: no AWS region: give --region, set AWS_REGION, set one in the profile, or use a queue URL or ARN \
             (they name their region)",
            url.describe()
        )));
    };
    let env_endpoint = || {
        std::env::var("AWS_ENDPOINT_URL_SQS")
            .or_else(|_| std::env::var("AWS_ENDPOINT_URL"))
            .ok()
    };
    let place = match endpoint.or_else(env_endpoint) {
        Some(e) => format!("{} ({region})", redact_url(&e)),
        None => format!("SQS in {region}"),
    };
    Ok(SqsClient {
        client: Client::new(&config),
        place,
    })
}

/// ListDeadLetterSourceQueues: the queues whose redrive policy names `dlq_url`.
pub async fn list_source_queues(sqs: &SqsClient, dlq_url: &str) -> Result<Vec<String>, AdapterError> {
    let mut urls = Vec::new();
    let mut token = None;
    loop {
        let out = sqs
            .client
            .list_dead_letter_source_queues()
            .queue_url(dlq_url)
            .set_next_token(token)
            .max_results(1000)
            .send()
            .await
            .map_err(|e| {
                AdapterError::Broker(explain(&e, "listing the queues that dead-letter here", &sqs.place).text)
            })?;
        urls.extend(out.queue_urls);
        match out.next_token {
            Some(t) if !t.is_empty() => token = Some(t),
            _ => return Ok(urls),
        }
    }
}

/// What SQS says about a queue.
#[derive(Clone, Debug)]
pub struct QueueInfo {
    /// Its queue URL (the identity used in journals and replay ids).
    pub url: String,
    /// Its name (the last part of the URL).
    pub name: String,
    /// Its ARN.
    pub arn: Option<String>,
    /// A FIFO queue.
    pub fifo: bool,
    /// The largest message it accepts, in bytes.
    pub max_message_size: usize,
    /// ApproximateNumberOfMessages: visible messages.
    pub visible: u64,
    /// ApproximateNumberOfMessagesNotVisible: messages some consumer holds.
    pub not_visible: u64,
}

/// Resolve a queue to its URL (GetQueueUrl for names and ARNs) and read its attributes. Fails with a
/// clear message when the queue does not exist or SQS refuses.
pub async fn open_queue(sqs: &SqsClient, queue: &QueueRef, what: &str) -> Result<QueueInfo, AdapterError> {
    let url = match queue {
        QueueRef::Url(url) => url.clone(),
        QueueRef::Name(name) => queue_url(sqs, name, None, what).await?,
        QueueRef::Arn { account, name, .. } => queue_url(sqs, name, Some(account), what).await?,
    };
    queue_info(sqs, &url, what).await
}

async fn queue_url(sqs: &SqsClient, name: &str, account: Option<&str>, what: &str) -> Result<String, AdapterError> {
    let out = sqs
        .client
        .get_queue_url()
        .queue_name(name)
        .set_queue_owner_aws_account_id(account.map(str::to_owned))
        .send()
        .await
        .map_err(|e| AdapterError::Broker(explain(&e, &format!("{what} queue `{name}`"), &sqs.place).text))?;
    out.queue_url
        .ok_or_else(|| AdapterError::Broker(format!("{}: GetQueueUrl for `{name}` returned no URL", sqs.place)))
}

/// Read a queue's attributes (depth, FIFO, size limit).
pub async fn queue_info(sqs: &SqsClient, url: &str, what: &str) -> Result<QueueInfo, AdapterError> {
    let name = url.rsplit('/').next().unwrap_or(url).to_owned();
    let out = sqs
        .client
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::All)
        .send()
        .await
        .map_err(|e| AdapterError::Broker(explain(&e, &format!("{what} queue `{name}`"), &sqs.place).text))?;
    let attrs = out.attributes.unwrap_or_default();
    let get = |key: QueueAttributeName| attrs.get(&key).map(String::as_str);
    let number = |key: QueueAttributeName| get(key).and_then(|v| v.parse::<u64>().ok());
    Ok(QueueInfo {
        url: url.to_owned(),
        name,
        arn: get(QueueAttributeName::QueueArn).map(str::to_owned),
        fifo: get(QueueAttributeName::FifoQueue) == Some("true"),
        max_message_size: number(QueueAttributeName::MaximumMessageSize).map_or(262_144, |n| n as usize),
        visible: number(QueueAttributeName::ApproximateNumberOfMessages).unwrap_or(0),
        not_visible: number(QueueAttributeName::ApproximateNumberOfMessagesNotVisible).unwrap_or(0),
    })
}

/// An AWS error in words, and whether trying again may help.
#[derive(Clone, Debug)]
pub struct Explained {
    /// What went wrong, where, and what to do.
    pub text: String,
    /// Throttling, a server error, a timeout or a dropped connection: worth retrying.
    pub transient: bool,
}

/// Explain an SDK error: `what` says what was being done ("source queue `x`"), `place` where.
pub fn explain<E>(err: &SdkError<E>, what: &str, place: &str) -> Explained
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let detail = DisplayErrorContext(err).to_string();
    match err {
        SdkError::ConstructionFailure(_) if detail.contains("credentials") => Explained {
            text: format!(
                "{what}: no usable AWS credentials ({detail}). Set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, \
                 or name a profile with --profile / AWS_PROFILE"
            ),
            transient: false,
        },
        SdkError::DispatchFailure(d) => Explained {
            text: if d.is_timeout() {
                format!("{what}: {place} did not answer in time ({detail})")
            } else {
                format!("{what}: cannot reach {place} ({detail}); check the endpoint (--endpoint-url) and network")
            },
            transient: d.is_io() || d.is_timeout(),
        },
        SdkError::TimeoutError(_) => Explained {
            text: format!("{what}: {place} did not answer in time"),
            transient: true,
        },
        SdkError::ResponseError(_) => Explained {
            text: format!("{what}: {place} sent a response that could not be read ({detail})"),
            transient: true,
        },
        SdkError::ServiceError(_) => {
            let code = err.code().unwrap_or("");
            let message = err.message().unwrap_or("");
            let text = match code {
                "AWS.SimpleQueueService.NonExistentQueue" | "QueueDoesNotExist" => {
                    format!("{what} does not exist at {place}; check the name, the region and the account")
                }
                "InvalidClientTokenId"
                | "UnrecognizedClientException"
                | "SignatureDoesNotMatch"
                | "InvalidSignatureException"
                | "IncompleteSignature"
                | "MissingAuthenticationToken"
                | "ExpiredToken" => format!(
                    "{what}: {place} did not accept the AWS credentials ({code}: {message}); check AWS_PROFILE / \
                     --profile or the access key"
                ),
                "AccessDenied" | "AccessDeniedException" | "AuthorizationError" | "KMS.AccessDeniedException" => {
                    format!(
                        "{what}: access denied ({message}); the identity needs the SQS permissions listed in the README"
                    )
                }
                _ => format!("{what}: {place} answered {code}: {message}"),
            };
            Explained {
                text,
                transient: is_transient_code(code),
            }
        }
        _ => Explained {
            text: format!("{what}: {detail}"),
            transient: false,
        },
    }
}

/// Error codes worth retrying: throttling and server-side failures.
pub fn is_transient_code(code: &str) -> bool {
    matches!(
        code,
        "RequestThrottled"
            | "ThrottlingException"
            | "Throttling"
            | "ServiceUnavailable"
            | "InternalError"
            | "InternalFailure"
            | "KmsThrottled"
            | "KMS.ThrottlingException"
    )
}

/// Split `0..len` into chunks of at most 10 whose sizes (from `size`) add up to at most `max_bytes`;
/// an item bigger than `max_bytes` gets a chunk of its own.
pub fn chunk_indices(len: usize, max_bytes: usize, size: impl Fn(usize) -> usize) -> Vec<Vec<usize>> {
    let mut chunks: Vec<Vec<usize>> = Vec::new();
    let mut current = Vec::new();
    let mut bytes = 0;
    for i in 0..len {
        let n = size(i);
        if !current.is_empty() && (current.len() == 10 || bytes + n > max_bytes) {
            chunks.push(std::mem::take(&mut current));
            bytes = 0;
        }
        current.push(i);
        bytes += n;
    }
    if !current.is_empty() {
        chunks.push(current);
    }
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_urls_and_arns() {
        let u = SqsUrl::parse("sqs://orders-dlq?receivers=2&wait=5s&visibility=30s&release=now").unwrap();
        assert_eq!(u.queue, QueueRef::Name("orders-dlq".into()));
        assert_eq!(
            (u.receivers, u.wait, u.release),
            (2, Duration::from_secs(5), ReleaseAt::Now)
        );
        assert_eq!(u.visibility, Duration::from_secs(30));
        assert!(u.refuse_options_of_other_side("source").is_ok());
        assert!(u.refuse_options_of_other_side("destination").is_err());

        let u = SqsUrl::parse("https://sqs.eu-west-1.amazonaws.com/123456789012/orders.fifo").unwrap();
        assert_eq!(u.region.as_deref(), Some("eu-west-1"));
        assert_eq!(u.endpoint, None);

        let u = SqsUrl::parse("http://127.0.0.1:9324/000000000000/dlq?group_id=g").unwrap();
        assert_eq!(u.endpoint.as_deref(), Some("http://127.0.0.1:9324"));
        assert_eq!(u.queue, QueueRef::Url("http://127.0.0.1:9324/000000000000/dlq".into()));
        assert_eq!(u.group_id.as_deref(), Some("g"));

        let u = SqsUrl::parse("arn:aws:sqs:us-east-2:123456789012:dlq").unwrap();
        assert_eq!(u.region.as_deref(), Some("us-east-2"));
        assert_eq!(
            u.queue,
            QueueRef::Arn {
                region: "us-east-2".into(),
                account: "123456789012".into(),
                name: "dlq".into()
            }
        );
        assert_eq!(aws_region_of_host("queue.amazonaws.com").as_deref(), Some("us-east-1"));
        assert_eq!(
            aws_region_of_host("ap-south-1.queue.amazonaws.com").as_deref(),
            Some("ap-south-1")
        );
    }

    #[test]
    fn bad_addresses_and_options_say_what_is_wrong() {
        for (text, expect) in [
            ("sqs://", "not an SQS queue name"),
            ("sqs://has space", "not an SQS queue name"),
            ("sqs://q?wait=0s", "1s to 20s"),
            ("sqs://q?receivers=0", "1 to 64"),
            ("sqs://q?release=later", "`end` or `now`"),
            ("sqs://q?colour=red", "unknown option"),
            ("arn:aws:sqs:eu-west-1:q", "not an SQS queue ARN"),
            ("https://example.com/q", "not an SQS queue URL"),
            ("kafka://x", "not an SQS queue"),
        ] {
            let err = SqsUrl::parse(text).unwrap_err().to_string();
            assert!(err.contains(expect), "{text}: {err}");
        }
    }

    #[test]
    fn chunks_respect_count_and_bytes() {
        let sizes = [100, 100, 300, 50, 50, 50, 50, 50, 50, 50, 50, 50, 50];
        let chunks = chunk_indices(sizes.len(), 400, |i| sizes[i]);
        assert_eq!(chunks, vec![vec![0, 1], vec![2, 3, 4], vec![5, 6, 7, 8, 9, 10, 11, 12]]);
        let chunks = chunk_indices(3, 100, |i| [10, 500, 10][i]);
        assert_eq!(chunks, vec![vec![0], vec![1], vec![2]], "a big item goes alone");
        let chunks = chunk_indices(23, usize::MAX, |_| 1);
        assert_eq!(chunks.iter().map(Vec::len).collect::<Vec<_>>(), vec![10, 10, 3]);
    }
}

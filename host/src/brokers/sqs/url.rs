//! Queue addresses and their options: `sqs://name`, a queue URL or an ARN, with `?receivers=4&...`.

use std::time::Duration;

use crate::core::{adapter::AdapterError, endpoint::redact};

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
                    redact(address)
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
                .map_err(|e| AdapterError::Config(format!("{}: option `{key}`: {e}", redact(address))))?;
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
            QueueRef::Url(url) => redact(url),
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
            redact(whole)
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
}

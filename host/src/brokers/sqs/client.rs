//! AWS clients built from the standard AWS configuration chain, queue attributes, and AWS errors explained
//! in words.

use std::time::Duration;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::types::QueueAttributeName;

use super::url::{QueueRef, SqsUrl};
use crate::core::AwsSettings;
use crate::core::{adapter::AdapterError, endpoint::redact};

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
        Some(e) => format!("{} ({region})", redact(&e)),
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

/// Whether a failed call may still have been carried out: it went out and its answer was lost (a timeout, a
/// connection that broke after the request was written, an answer that could not be read). A call SQS answered
/// with an error, or one that never got a connection, was not carried out.
///
/// A send whose outcome is unknown may be at the destination already: sending it again can make a second copy
/// (standard queues do not deduplicate), so such a retry is reported, never silent.
pub fn outcome_unknown<E>(err: &SdkError<E>) -> bool {
    match err {
        SdkError::ConstructionFailure(_) | SdkError::ServiceError(_) => false,
        SdkError::DispatchFailure(d) => !d.as_connector_error().is_some_and(|e| never_connected(e)),
        _ => true,
    }
}

/// True when the error's chain holds the HTTP client's "could not connect" (refused, unreachable, DNS, connect
/// timeout): nothing was written.
fn never_connected(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(err);
    while let Some(e) = next {
        if e.downcast_ref::<hyper_util::client::legacy::Error>()
            .is_some_and(hyper_util::client::legacy::Error::is_connect)
        {
            return true;
        }
        next = e.source();
    }
    false
}

/// Settings for a call that sends messages: no retry inside the SDK (redrive retries itself, and reports a
/// retry whose first try may have arrived), and an answer within 20 s (a send needs no long poll).
pub fn send_call_settings() -> aws_sdk_sqs::config::Builder {
    aws_sdk_sqs::config::Builder::default()
        .retry_config(aws_sdk_sqs::config::retry::RetryConfig::disabled())
        .timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5))
                .operation_attempt_timeout(Duration::from_secs(20))
                .build(),
        )
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
            let (status, body) = err
                .raw_response()
                .map_or((None, None), |r| (Some(r.status().as_u16()), r.body().bytes()));
            // An endpoint may answer the JSON protocol in the query protocol's XML (moto does, for a request
            // it refuses before reading it): the code and message are then read from the XML.
            let xml = body
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            let code = err.code().or_else(|| xml_element(&xml, "Code")).unwrap_or("");
            let message = err.message().or_else(|| xml_element(&xml, "Message")).unwrap_or("");
            let code = match (code, status) {
                ("", Some(401 | 403)) => "HTTP 403",
                _ => code,
            };
            let text = match code {
                "AWS.SimpleQueueService.NonExistentQueue" | "QueueDoesNotExist" => {
                    format!("{what} does not exist at {place}; check the name, the region and the account")
                }
                "InvalidClientTokenId"
                | "HTTP 403"
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
                "" => format!(
                    "{what}: {place} answered with an error that names no code (HTTP {}); check that the endpoint \
                     is an SQS endpoint",
                    status.map_or_else(|| "status unknown".to_owned(), |s| s.to_string())
                ),
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

/// The text of the first `<name>…</name>` in `xml`, if any.
fn xml_element<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    let start = xml.find(&format!("<{name}>"))? + name.len() + 2;
    let len = xml[start..].find(&format!("</{name}>"))?;
    Some(xml[start..start + len].trim()).filter(|text| !text.is_empty())
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

#[cfg(test)]
mod tests {
    use super::xml_element;

    #[test]
    fn reads_code_and_message_from_a_query_protocol_error() {
        let xml = "<ErrorResponse><Errors><Error><Code>InvalidClientTokenId</Code><Message>The security token \
                   included in the request is invalid.</Message></Error></Errors></ErrorResponse>";
        assert_eq!(xml_element(xml, "Code"), Some("InvalidClientTokenId"));
        assert_eq!(
            xml_element(xml, "Message"),
            Some("The security token included in the request is invalid.")
        );
        assert_eq!(xml_element(xml, "Type"), None);
        assert_eq!(xml_element("<Code></Code>", "Code"), None);
        assert_eq!(xml_element("<Code>unterminated", "Code"), None);
    }
}

//! Endpoints: a source or destination URL, parsed once into the adapter it names, with its redacted form
//! computed once. Every message, log line, journal name and summary shows [`Endpoint::redacted`]; only the
//! adapter that connects reads [`Endpoint::secret_text`].
//!
//! Redaction works on the *parsed* URL, never on the raw text: a password with an unencoded `#`, `/`, `?` or
//! `@` makes a URL ambiguous, and such a URL is refused with advice to percent-encode, without repeating it.

use std::fmt;

/// The adapter an endpoint is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// `file:path/to/messages.jsonl`.
    File,
    /// `amqp://` or `amqps://` (RabbitMQ).
    Amqp,
    /// `sqs://name`, an SQS queue URL (`https://sqs.REGION.amazonaws.com/ACCOUNT/NAME`) or ARN.
    Sqs,
    /// `redis://` (Redis Streams).
    Redis,
    /// `postgres://` or `postgresql://` (a `failed_jobs` table).
    Postgres,
    /// `kafka://host:port[,host:port]?topic=T` (a dead-letter topic).
    Kafka,
    /// `mysql://` or `mariadb://` (a `failed_jobs` table).
    MySql,
    /// `pubsub://projects/P/subscriptions/S` or `pubsub://projects/P/topics/T` (Google Cloud Pub/Sub).
    PubSub,
}

impl Scheme {
    /// The name used in messages.
    pub fn name(self) -> &'static str {
        match self {
            Scheme::File => "file",
            Scheme::Amqp => "amqp",
            Scheme::Sqs => "sqs",
            Scheme::Redis => "redis",
            Scheme::Postgres => "postgres",
            Scheme::Kafka => "kafka",
            Scheme::MySql => "mysql",
            Scheme::PubSub => "pubsub",
        }
    }
}

/// Every URL form redrive accepts, for error messages.
pub const SUPPORTED: &str = "file:path/to/dlq.jsonl, amqp://host/vhost?queue=name, sqs://queue-name (or an SQS \
                             queue URL or ARN), redis://host/db?stream=name, postgres://user@host/db?table=failed_jobs, \
                             mysql://user@host/db?table=failed_jobs, kafka://host:9092?topic=name, \
                             pubsub://projects/P/subscriptions/S (or .../topics/T)";

/// How to write a password that holds a character URLs give a meaning to.
pub const PERCENT_ENCODE_HINT: &str = "if the user name or password contains # / ? @ % & = or a space, \
                                       percent-encode it (# → %23, / → %2F, ? → %3F, @ → %40, % → %25, & → %26, \
                                       = → %3D, space → %20)";

/// A source or destination as given, parsed once.
#[derive(Clone, PartialEq, Eq)]
pub struct Endpoint {
    scheme: Scheme,
    text: String,
    redacted: String,
}

/// A URL that cannot be used. The message never contains the URL's password.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    /// No `scheme:` at all.
    #[error("{0:?} has no scheme; write file:{0} for a JSONL file (supported: {SUPPORTED})")]
    NoScheme(String),
    /// A scheme redrive has no adapter for.
    #[error("unsupported scheme `{0}:`; supported: {SUPPORTED}")]
    Unsupported(String),
    /// `file:` without a path.
    #[error("file: needs a path, e.g. file:dlq.jsonl")]
    EmptyPath,
    /// The URL does not parse; nothing of it is repeated, as it may hold a password.
    #[error("the {scheme}:// URL cannot be read ({problem}); {PERCENT_ENCODE_HINT}")]
    Unparseable {
        /// The scheme as written.
        scheme: String,
        /// What the parser found wrong, without the URL.
        problem: String,
    },
    /// A URL that parses but not the way its writer meant (a `#` fragment, an `@` after the host, a query
    /// part without `=`): almost always a password with a character that should be percent-encoded.
    #[error("the {scheme}:// URL is ambiguous ({problem}); {PERCENT_ENCODE_HINT}")]
    Ambiguous {
        /// The scheme as written.
        scheme: String,
        /// What is ambiguous.
        problem: &'static str,
    },
}

impl Endpoint {
    /// Parse a URL given on the command line or in the config file.
    pub fn parse(text: &str) -> Result<Self, EndpointError> {
        let Some((scheme_text, rest)) = text.split_once(':') else {
            return Err(EndpointError::NoScheme(text.to_owned()));
        };
        if scheme_text.is_empty() || scheme_text.contains(['/', '\\', '.']) {
            return Err(EndpointError::NoScheme(text.to_owned()));
        }
        let scheme = match scheme_text.to_ascii_lowercase().as_str() {
            "file" => Scheme::File,
            "amqp" | "amqps" => Scheme::Amqp,
            "sqs" | "http" | "https" | "arn" => Scheme::Sqs,
            "redis" | "rediss" => Scheme::Redis,
            "postgres" | "postgresql" => Scheme::Postgres,
            "kafka" => Scheme::Kafka,
            "mysql" | "mariadb" => Scheme::MySql,
            "pubsub" => Scheme::PubSub,
            other => return Err(EndpointError::Unsupported(other.to_owned())),
        };
        let (text, redacted) = match scheme {
            Scheme::File if rest.is_empty() => return Err(EndpointError::EmptyPath),
            // Paths and ARNs carry no credentials.
            Scheme::File => (text.to_owned(), text.to_owned()),
            Scheme::Sqs if scheme_text.eq_ignore_ascii_case("arn") => (text.to_owned(), text.to_owned()),
            Scheme::Kafka => parse_host_list_url(scheme_text, text)?,
            // Adapters get the URL as parsed here, serialised again: every client then reads the same
            // user, password and host (a raw `@` in a password is percent-encoded).
            _ => parse_url(scheme_text, text)?,
        };
        Ok(Self { scheme, text, redacted })
    }

    /// The adapter this endpoint is for.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The URL with its password and secret options replaced by `***`: for every message and log.
    pub fn redacted(&self) -> &str {
        &self.redacted
    }

    /// The URL as given, credentials included: only for the adapter that connects. Never print it.
    pub fn secret_text(&self) -> &str {
        &self.text
    }

    /// The path of a `file:` endpoint.
    pub fn file_path(&self) -> Option<&str> {
        match self.scheme {
            Scheme::File => self.text.split_once(':').map(|(_, path)| path),
            _ => None,
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted)
    }
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Endpoint({})", self.redacted)
    }
}

/// Where replayed (or parked) messages go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Destination {
    /// Back where each message was dead-lettered from (its broker's headers say where).
    Origin,
    /// An endpoint.
    To(Endpoint),
}

impl Destination {
    /// `origin`, or an endpoint URL.
    pub fn parse(text: &str) -> Result<Self, EndpointError> {
        match text {
            "origin" => Ok(Destination::Origin),
            _ => Endpoint::parse(text).map(Destination::To),
        }
    }

    /// The endpoint, unless this is `origin`.
    pub fn endpoint(&self) -> Option<&Endpoint> {
        match self {
            Destination::Origin => None,
            Destination::To(endpoint) => Some(endpoint),
        }
    }
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Destination::Origin => f.write_str("origin"),
            Destination::To(endpoint) => endpoint.fmt(f),
        }
    }
}

/// `url` with any password and secret option replaced by `***`, for messages and logs; a URL that cannot be
/// parsed safely is not shown at all. Adapters use it for URLs other than their endpoint's (an SQS endpoint
/// override, a queue URL found by name).
pub fn redact(url: &str) -> String {
    match Endpoint::parse(url) {
        Ok(endpoint) => endpoint.redacted().to_owned(),
        Err(_) => match url.split_once(':') {
            Some((scheme, _)) if !scheme.contains(['/', '@']) => format!("{scheme}:(URL not shown)"),
            _ => "(URL not shown)".to_owned(),
        },
    }
}

/// True for query keys whose values are secrets (`password`, `sasl.password`, `ssl.key.password`, `token`,
/// `client_secret`, ...).
pub fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    [
        "pass",
        "secret",
        "token",
        "credential",
        "private",
        "key.pem",
        "keystore",
        "pwd",
    ]
    .iter()
    .any(|word| key.contains(word))
}

/// A URL option that must have a value (`stream=`, `topic=`, `group=`, ...).
pub fn non_empty_option(value: &str) -> Result<String, String> {
    if value.is_empty() {
        Err("must not be empty".to_owned())
    } else {
        Ok(value.to_owned())
    }
}

/// A URL option holding a duration (`reconnect=60s`, `claim=10m`).
pub fn duration_option(value: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(value).map_err(|e| format!("{value:?} is not a duration: {e}"))
}

/// A `scheme://` URL, parsed and serialised again, and its redacted form rebuilt from its parsed parts.
fn parse_url(scheme: &str, text: &str) -> Result<(String, String), EndpointError> {
    let unparseable = |problem: String| EndpointError::Unparseable {
        scheme: scheme.to_owned(),
        problem,
    };
    let ambiguous = |problem| EndpointError::Ambiguous {
        scheme: scheme.to_owned(),
        problem,
    };
    if !text[scheme.len() + 1..].starts_with("//") {
        return Err(unparseable(format!("expected {scheme}://...")));
    }
    let url = url::Url::parse(text).map_err(|e| unparseable(e.to_string()))?;
    if url.fragment().is_some() {
        return Err(ambiguous("it has a `#`, which would end the URL there"));
    }
    if url.path().contains('@') {
        return Err(ambiguous("an `@` after the host"));
    }
    let query = url.query().unwrap_or("");
    if query
        .split('&')
        .any(|pair| !pair.is_empty() && (!pair.contains('=') || pair.starts_with('=')))
    {
        return Err(ambiguous("a query part without `name=`"));
    }
    let mut out = format!("{}://", url.scheme());
    let user = url.username();
    if !user.is_empty() || url.password().is_some() {
        out.push_str(user);
        if url.password().is_some() {
            out.push_str(":***");
        }
        out.push('@');
    }
    out.push_str(url.host_str().unwrap_or(""));
    if let Some(port) = url.port() {
        out.push_str(&format!(":{port}"));
    }
    out.push_str(url.path());
    if !query.is_empty() {
        out.push('?');
        let shown: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, _)) if is_secret_key(&decode(key)) => format!("{key}=***"),
                _ => pair.to_owned(),
            })
            .collect();
        out.push_str(&shown.join("&"));
    }
    Ok((url.as_str().to_owned(), out))
}

/// A URL whose authority may list several `host:port` pairs separated by commas (Kafka bootstrap servers):
/// parsed with the first host standing in for the list, which is then put back in both forms.
fn parse_host_list_url(scheme: &str, text: &str) -> Result<(String, String), EndpointError> {
    let rest = text.get(scheme.len() + 3..).unwrap_or("");
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let (user_info, hosts) = match authority.rfind('@') {
        Some(at) => (&authority[..=at], &authority[at + 1..]),
        None => ("", authority),
    };
    let Some((first, _)) = hosts.split_once(',') else {
        return parse_url(scheme, text);
    };
    if first.is_empty() || hosts.split(',').any(str::is_empty) {
        return Err(EndpointError::Unparseable {
            scheme: scheme.to_owned(),
            problem: "an empty host in the host list".into(),
        });
    }
    let single = format!("{}://{user_info}{first}{}", &text[..scheme.len()], &rest[end..]);
    let (secret, shown) = parse_url(scheme, &single)?;
    let hosts = hosts.to_ascii_lowercase();
    let put_back = |serialised: String| -> String {
        let start = serialised.find("://").map_or(0, |i| i + 3);
        let path_start = serialised[start..]
            .find(['/', '?'])
            .map_or(serialised.len(), |i| start + i);
        let host_start = serialised[start..path_start]
            .rfind('@')
            .map_or(start, |i| start + i + 1);
        format!("{}{hosts}{}", &serialised[..host_start], &serialised[path_start..])
    };
    Ok((put_back(secret), put_back(shown)))
}

fn decode(text: &str) -> String {
    form_urlencoded::parse(format!("{text}=").as_bytes())
        .next()
        .map(|(k, _)| k.into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(text: &str) -> String {
        Endpoint::parse(text).unwrap().redacted().to_owned()
    }

    #[test]
    fn passwords_and_secret_options_are_masked() {
        assert_eq!(
            shown("amqp://guest:s3cret@h:5672/%2f?queue=q"),
            "amqp://guest:***@h:5672/%2f?queue=q"
        );
        assert_eq!(shown("amqp://h/?queue=q"), "amqp://h/?queue=q");
        assert_eq!(shown("redis://:pw@h:6379/0?stream=s"), "redis://:***@h:6379/0?stream=s");
        assert_eq!(shown("amqp://user@h"), "amqp://user@h");
        assert_eq!(shown("amqp://a:b@c@h/x"), "amqp://a:***@h/x");
        assert_eq!(
            Endpoint::parse("amqp://a:b@c@h/x").unwrap().secret_text(),
            "amqp://a:b%40c@h/x",
            "every client reads one unambiguous URL"
        );
        assert_eq!(
            shown("postgres://u@h/db?table=t&password=pw&sslmode=disable"),
            "postgres://u@h/db?table=t&password=***&sslmode=disable"
        );
        assert!(is_secret_key("sasl.password") && is_secret_key("ssl.key.password") && !is_secret_key("queue"));
    }

    #[test]
    fn encoded_specials_are_fine_and_masked() {
        for special in ["%23", "%2F", "%3F", "%40", "%25", "%26", "%3D", "%20", ":"] {
            let text = format!("amqp://guest:ab{special}cd@h/%2f?queue=q");
            let e = Endpoint::parse(&text).unwrap();
            assert_eq!(e.redacted(), "amqp://guest:***@h/%2f?queue=q", "{special}");
            assert!(e.secret_text().starts_with("amqp://guest:ab"));
        }
    }

    #[test]
    fn raw_specials_are_refused_without_repeating_the_password() {
        for special in ['#', '/', '?', ' '] {
            let text = format!("amqp://guest:Pz9x{special}Q9zP@h:5672/%2f?queue=q");
            let err = Endpoint::parse(&text).map(|e| e.redacted().to_owned());
            match err {
                Err(e) => {
                    let msg = e.to_string();
                    assert!(!msg.contains("Pz9x") && !msg.contains("Q9zP"), "{special}: {msg}");
                    assert!(msg.contains("percent-encode"), "{msg}");
                }
                Ok(shown) => assert!(!shown.contains("Pz9x") && !shown.contains("Q9zP"), "{special}: {shown}"),
            }
        }
        let err = Endpoint::parse("postgres://u@h/db?table=t&password=Pz9x&Q9zP").unwrap_err();
        assert!(!err.to_string().contains("Q9zP"));
        let err = Endpoint::parse("amqp://guest:5672/abc@h/%2f").unwrap_err();
        assert!(matches!(err, EndpointError::Ambiguous { .. }), "{err}");
    }

    #[test]
    fn redact_shows_nothing_it_cannot_parse() {
        assert_eq!(
            redact("amqp://guest:s3cret@h:5672/%2f?queue=q"),
            "amqp://guest:***@h:5672/%2f?queue=q"
        );
        assert_eq!(redact("amqp://a:b#c@h/x"), "amqp:(URL not shown)");
        assert_eq!(redact("file:dlq.jsonl"), "file:dlq.jsonl");
    }

    #[test]
    fn kafka_host_lists_are_kept_and_passwords_masked() {
        let e = Endpoint::parse("kafka://u:pw@b1:9092,B2:9093?topic=t&sasl.password=x").unwrap();
        assert_eq!(e.scheme(), Scheme::Kafka);
        assert_eq!(e.redacted(), "kafka://u:***@b1:9092,b2:9093?topic=t&sasl.password=***");
        assert_eq!(e.secret_text(), "kafka://u:pw@b1:9092,b2:9093?topic=t&sasl.password=x");
        assert_eq!(shown("kafka://h:9092?topic=t"), "kafka://h:9092?topic=t");
        assert!(Endpoint::parse("kafka://h:1,,h2:2?topic=t").is_err());
    }

    #[test]
    fn schemes_and_files() {
        assert_eq!(Endpoint::parse("file:x.jsonl").unwrap().scheme(), Scheme::File);
        assert_eq!(Endpoint::parse("file:x.jsonl").unwrap().file_path(), Some("x.jsonl"));
        assert_eq!(Endpoint::parse("sqs://q").unwrap().scheme(), Scheme::Sqs);
        assert_eq!(
            Endpoint::parse("arn:aws:sqs:eu-west-1:123:q").unwrap().scheme(),
            Scheme::Sqs
        );
        assert_eq!(Endpoint::parse("postgresql://h/db").unwrap().scheme(), Scheme::Postgres);
        assert!(matches!(Endpoint::parse("dlq.jsonl"), Err(EndpointError::NoScheme(_))));
        assert!(matches!(
            Endpoint::parse("./dlq:1.jsonl"),
            Err(EndpointError::NoScheme(_))
        ));
        assert!(matches!(
            Endpoint::parse("ftp://h/x"),
            Err(EndpointError::Unsupported(_))
        ));
        assert!(matches!(Endpoint::parse("file:"), Err(EndpointError::EmptyPath)));
    }
}

//! AWS settings from the command line or the config file, which the commands read and the `sqs://` broker
//! uses. A plain type here, so that a build without the `sqs` feature still parses the same flags.

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

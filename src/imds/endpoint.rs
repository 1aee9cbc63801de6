//! Which IMDS address to talk to, following the SDKs' order: the config's `endpoint`, then
//! `AWS_EC2_METADATA_SERVICE_ENDPOINT`, then the default for the endpoint mode (config, then
//! `AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE`), IPv4 unless told otherwise.

use super::ImdsError;
use crate::config::{EndpointMode, ImdsConfig};

/// IMDS's IPv4 address, the default.
pub const IPV4_ENDPOINT: &str = "http://169.254.169.254";
/// IMDS's IPv6 address (`endpoint_mode = "IPv6"`).
pub const IPV6_ENDPOINT: &str = "http://[fd00:ec2::254]";

/// Resolves the endpoint base URL (no trailing `/`). `env` reads an environment variable;
/// tests pass a closure instead of touching the process environment.
pub fn resolve_endpoint(
    config: &ImdsConfig,
    env: impl Fn(&str) -> Option<String>,
) -> Result<String, ImdsError> {
    if let Some(value) = env("AWS_EC2_METADATA_DISABLED") {
        if value.trim().eq_ignore_ascii_case("true") {
            return Err(ImdsError::Disabled(value));
        }
    }
    let explicit = Some(config.endpoint.trim().to_string())
        .filter(|e| !e.is_empty())
        .or_else(|| env("AWS_EC2_METADATA_SERVICE_ENDPOINT").filter(|e| !e.trim().is_empty()));
    if let Some(endpoint) = explicit {
        return check_url(endpoint.trim());
    }
    let mode = match config.endpoint_mode {
        Some(mode) => mode,
        None => match env("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE") {
            None => EndpointMode::IPv4,
            Some(m) if m.trim().eq_ignore_ascii_case("ipv4") => EndpointMode::IPv4,
            Some(m) if m.trim().eq_ignore_ascii_case("ipv6") => EndpointMode::IPv6,
            Some(m) => return Err(ImdsError::BadEndpointMode(m)),
        },
    };
    Ok(match mode {
        EndpointMode::IPv4 => IPV4_ENDPOINT,
        EndpointMode::IPv6 => IPV6_ENDPOINT,
    }
    .to_string())
}

fn check_url(endpoint: &str) -> Result<String, ImdsError> {
    let bad = |reason: &str| ImdsError::BadEndpoint {
        endpoint: endpoint.to_string(),
        reason: reason.to_string(),
    };
    let rest = endpoint
        .strip_prefix("http://")
        .or_else(|| endpoint.strip_prefix("https://"))
        .ok_or_else(|| bad("it must start with http:// or https://"))?;
    if rest.trim_end_matches('/').is_empty() {
        return Err(bad("it has no host"));
    }
    Ok(endpoint.trim_end_matches('/').to_string())
}

/// `AWS_EC2_METADATA_V1_DISABLED=true` forbids the IMDSv1 fallback whatever the config says.
pub fn imdsv1_allowed(config: &ImdsConfig, env: impl Fn(&str) -> Option<String>) -> bool {
    let disabled = env("AWS_EC2_METADATA_V1_DISABLED")
        .map(|v| v.trim().eq_ignore_ascii_case("true"))
        .unwrap_or(false);
    config.allow_imdsv1 && !disabled
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn resolve(config: &ImdsConfig, vars: &[(&str, &str)]) -> Result<String, ImdsError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        resolve_endpoint(config, |k| vars.get(k).cloned())
    }

    #[test]
    fn default_is_ipv4() {
        assert_eq!(resolve(&ImdsConfig::default(), &[]).unwrap(), IPV4_ENDPOINT);
    }

    #[test]
    fn config_beats_environment_which_beats_mode() {
        let mut config = ImdsConfig::default();
        let env = [
            ("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://127.0.0.1:9/"),
            ("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE", "IPv6"),
        ];
        assert_eq!(resolve(&config, &env).unwrap(), "http://127.0.0.1:9");
        config.endpoint = "http://[::1]:8".into();
        assert_eq!(resolve(&config, &env).unwrap(), "http://[::1]:8");
    }

    #[test]
    fn mode_from_environment_in_any_case_or_from_config() {
        let env = [("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE", "ipv6")];
        assert_eq!(
            resolve(&ImdsConfig::default(), &env).unwrap(),
            IPV6_ENDPOINT
        );
        let config = ImdsConfig {
            endpoint_mode: Some(EndpointMode::IPv6),
            ..ImdsConfig::default()
        };
        assert_eq!(resolve(&config, &[]).unwrap(), IPV6_ENDPOINT);
        let err = resolve(
            &ImdsConfig::default(),
            &[("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE", "ipv5")],
        );
        assert!(matches!(err, Err(ImdsError::BadEndpointMode(_))));
    }

    #[test]
    fn disabled_flag_is_honoured_with_a_clear_message() {
        let err = resolve(
            &ImdsConfig::default(),
            &[("AWS_EC2_METADATA_DISABLED", "TRUE")],
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("AWS_EC2_METADATA_DISABLED"),
            "{err}"
        );
        assert!(resolve(
            &ImdsConfig::default(),
            &[("AWS_EC2_METADATA_DISABLED", "false")]
        )
        .is_ok());
    }

    #[test]
    fn a_url_without_scheme_is_refused() {
        let config = ImdsConfig {
            endpoint: "169.254.169.254".into(),
            ..ImdsConfig::default()
        };
        assert!(matches!(
            resolve(&config, &[]),
            Err(ImdsError::BadEndpoint { .. })
        ));
    }

    #[test]
    fn v1_disabled_by_environment_overrides_config() {
        let config = ImdsConfig {
            allow_imdsv1: true,
            ..ImdsConfig::default()
        };
        assert!(imdsv1_allowed(&config, |_| None));
        assert!(!imdsv1_allowed(&config, |_| Some("true".into())));
    }
}

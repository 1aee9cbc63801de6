//! The limits STS itself enforces on `AssumeRole` parameters (`DurationSeconds`,
//! `RoleSessionName`, `ExternalId`, the region name, the endpoint), checked when the config
//! is loaded so `check-config` refuses what STS would refuse at every refresh. They live in
//! `config` so that validation needs nothing from `assume`, which uses them in turn.

use super::{is_loopback, AssumeConfig};
use http::Uri;

/// The `DurationSeconds` range STS accepts (the role's own maximum may be lower).
const MIN_DURATION_SECS: u64 = 900;
/// The instance role's credentials are themselves role credentials, so every `[[assume]]`
/// is role chaining, which STS limits to one hour whatever the role's maximum says.
const MAX_DURATION_SECS: u64 = 3_600;

/// STS's `RoleSessionName` characters: `[\w+=,.@-]`.
fn is_session_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "_+=,.@-".contains(c)
}

/// `imds-credd-<instance-id>` made to fit STS's `RoleSessionName`: `[\w+=,.@-]{2,64}`.
pub(crate) fn default_session_name(instance_id: &str) -> String {
    let mut name: String = format!("imds-credd-{}", instance_id.trim())
        .chars()
        .map(|c| if is_session_name_char(c) { c } else { '-' })
        .take(64)
        .collect();
    if name.len() < 2 {
        name.push('-');
    }
    name
}

/// True for a region name as it appears in an endpoint host: `eu-west-1`.
pub(crate) fn is_region_name(region: &str) -> bool {
    !region.is_empty()
        && region
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// Checks an `[[assume]]` entry against the limits STS itself enforces, so `check-config`
/// refuses what STS would refuse at every refresh. Returns the key at fault and why.
pub(crate) fn check_assume_config(config: &AssumeConfig) -> Result<(), (&'static str, String)> {
    let seconds = config.duration.as_secs();
    if !(MIN_DURATION_SECS..=MAX_DURATION_SECS).contains(&seconds)
        || config.duration.subsec_nanos() != 0
    {
        return Err((
            "duration",
            format!(
                "STS accepts whole seconds from 15m to 1h for a role assumed with role credentials (role chaining: the instance role's credentials are role credentials), not {}",
                humantime::format_duration(config.duration)
            ),
        ));
    }
    let name = &config.session_name;
    let name_ok = (2..=64).contains(&name.len()) && name.chars().all(is_session_name_char);
    if !name.is_empty() && !name_ok {
        return Err((
            "session_name",
            format!("{name:?} is not 2-64 of letters, digits and _+=,.@-"),
        ));
    }
    let id = &config.external_id;
    let id_ok = (2..=1224).contains(&id.len())
        && id
            .chars()
            .all(|c| is_session_name_char(c) || ":/".contains(c));
    if !id.is_empty() && !id_ok {
        return Err((
            "external_id",
            "must be 2-1224 of letters, digits and _+=,.@:/-".to_string(),
        ));
    }
    if !config.region.is_empty() && !is_region_name(&config.region) {
        return Err((
            "region",
            format!("{:?} is not an AWS region name", config.region),
        ));
    }
    if !config.sts_endpoint.is_empty() {
        parse_sts_endpoint(&config.sts_endpoint).map_err(|reason| {
            let endpoint = &config.sts_endpoint;
            (
                "sts_endpoint",
                format!("invalid STS endpoint {endpoint:?}: {reason}"),
            )
        })?;
    }
    Ok(())
}

/// Parses an endpoint URL for POSTing to: `http`/`https` with a host; the path defaults to
/// `/`. Plain `http` is for loopback tests only; a real deployment uses `https`. The error is
/// the reason, for the caller to put beside the endpoint.
pub(crate) fn parse_sts_endpoint(endpoint: &str) -> Result<Uri, &'static str> {
    let uri: Uri = endpoint
        .trim()
        .parse()
        .map_err(|_| "not a URL such as https://sts.us-east-1.amazonaws.com")?;
    let host = match uri.host() {
        Some(host) if !host.is_empty() => host,
        _ => return Err("no host"),
    };
    match uri.scheme_str() {
        Some("https") => {}
        Some("http") if is_loopback_host(host) => {}
        Some("http") => {
            return Err(
                "plain http would send signed requests and receive credentials in the clear; use https (http is allowed to loopback only)",
            )
        }
        _ => return Err("the scheme must be https"),
    }
    if uri.query().is_some() {
        return Err("a query string is not allowed");
    }
    let mut parts = uri.into_parts();
    if parts.path_and_query.is_none() {
        parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
    }
    Uri::from_parts(parts).map_err(|_| "not a URL")
}

/// `localhost` or a loopback address (`127.0.0.0/8`, `[::1]`): where a test STS listens.
fn is_loopback_host(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost") || bare.parse().is_ok_and(is_loopback)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn default_session_names_fit_the_sts_pattern() {
        assert_eq!(
            default_session_name("i-0123456789abcdef0"),
            "imds-credd-i-0123456789abcdef0"
        );
        assert_eq!(default_session_name("i 0/1"), "imds-credd-i-0-1");
        let long = default_session_name(&"a".repeat(100));
        assert_eq!(long.len(), 64);
    }

    fn assume(edit: impl FnOnce(&mut AssumeConfig)) -> Result<(), (&'static str, String)> {
        let mut config = AssumeConfig {
            profile: "audit".into(),
            role_arn: "arn:aws:iam::222222222222:role/efgh".into(),
            external_id: String::new(),
            session_name: String::new(),
            duration: Duration::from_secs(3600),
            region: String::new(),
            sts_endpoint: String::new(),
        };
        edit(&mut config);
        check_assume_config(&config)
    }

    #[test]
    fn assume_entries_are_checked_against_the_limits_of_sts() {
        assert_eq!(assume(|_| {}), Ok(()));
        assert_eq!(
            assume(|c| {
                c.session_name = "batch@job.1".into();
                c.external_id = "arn:x/y".into();
                c.region = "cn-north-1".into();
                c.sts_endpoint = "https://sts.vpce.example".into();
                c.duration = Duration::from_secs(900);
            }),
            Ok(())
        );
        let key = |edit: fn(&mut AssumeConfig)| assume(edit).unwrap_err().0;
        assert_eq!(key(|c| c.duration = Duration::from_secs(600)), "duration");
        let (at, message) = assume(|c| c.duration = Duration::from_secs(2 * 3600)).unwrap_err();
        assert!(
            at == "duration" && message.contains("role chaining"),
            "{message}"
        );
        assert_eq!(
            key(|c| c.sts_endpoint = "http://sts.us-east-1.amazonaws.com".into()),
            "sts_endpoint"
        );
        assert_eq!(key(|c| c.session_name = "has space".into()), "session_name");
        assert_eq!(key(|c| c.session_name = "x".into()), "session_name");
        assert_eq!(key(|c| c.external_id = "a b".into()), "external_id");
        assert_eq!(key(|c| c.region = "EU_WEST".into()), "region");
        assert_eq!(
            key(|c| c.sts_endpoint = "sts.amazonaws.com".into()),
            "sts_endpoint"
        );
    }

    #[test]
    fn endpoints_get_a_root_path_and_bad_ones_are_refused() {
        let uri = parse_sts_endpoint("https://sts.us-east-1.amazonaws.com").unwrap();
        assert_eq!(uri.to_string(), "https://sts.us-east-1.amazonaws.com/");
        let uri = parse_sts_endpoint("http://127.0.0.1:8080").unwrap();
        assert_eq!(uri.path(), "/");
        for loopback in [
            "http://[::1]:8080",
            "http://localhost:1",
            "http://127.1.2.3",
        ] {
            assert!(parse_sts_endpoint(loopback).is_ok(), "{loopback}");
        }
        for bad in [
            "sts.amazonaws.com",
            "ftp://sts.amazonaws.com",
            "http://sts.us-east-1.amazonaws.com",
            "http://10.0.0.5",
            "http://127.0.0.1.example.com",
            "https://",
            "https://h/?a=b",
        ] {
            assert!(parse_sts_endpoint(bad).is_err(), "{bad}");
        }
    }
}

//! Where to reach STS: the regional endpoint for a region (partition-aware), and the
//! checks on a configured `sts_endpoint` (https, or plain http to loopback for tests).

use super::StsError;
use http::Uri;

/// `https://sts.REGION.amazonaws.com`, or `.amazonaws.com.cn` in the China partition.
pub fn regional_endpoint(region: &str) -> String {
    let domain = if region.starts_with("cn-") {
        "amazonaws.com.cn"
    } else {
        "amazonaws.com"
    };
    format!("https://sts.{region}.{domain}")
}

/// Parses an endpoint URL for POSTing to: `http`/`https` with a host; the path defaults to
/// `/`. Plain `http` is for loopback tests only; a real deployment uses `https`.
pub fn parse_endpoint(endpoint: &str) -> Result<Uri, StsError> {
    let bad = |reason: &str| StsError::BadEndpoint {
        endpoint: endpoint.to_string(),
        reason: reason.to_string(),
    };
    let uri: Uri = endpoint
        .trim()
        .parse()
        .map_err(|_| bad("not a URL such as https://sts.us-east-1.amazonaws.com"))?;
    let host = match uri.host() {
        Some(host) if !host.is_empty() => host,
        _ => return Err(bad("no host")),
    };
    match uri.scheme_str() {
        Some("https") => {}
        Some("http") if is_loopback_host(host) => {}
        Some("http") => {
            return Err(bad(
                "plain http would send signed requests and receive credentials in the clear; use https (http is allowed to loopback only)",
            ))
        }
        _ => return Err(bad("the scheme must be https")),
    }
    if uri.query().is_some() {
        return Err(bad("a query string is not allowed"));
    }
    let mut parts = uri.into_parts();
    if parts.path_and_query.is_none() {
        parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
    }
    Uri::from_parts(parts).map_err(|_| bad("not a URL"))
}

/// `localhost` or a loopback address (`127.0.0.0/8`, `[::1]`): where a test STS listens.
fn is_loopback_host(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost") || bare.parse().is_ok_and(crate::config::is_loopback)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regional_endpoints_follow_the_partition() {
        assert_eq!(
            regional_endpoint("eu-west-1"),
            "https://sts.eu-west-1.amazonaws.com"
        );
        assert_eq!(
            regional_endpoint("cn-north-1"),
            "https://sts.cn-north-1.amazonaws.com.cn"
        );
    }

    #[test]
    fn endpoints_get_a_root_path_and_bad_ones_are_refused() {
        let uri = parse_endpoint("https://sts.us-east-1.amazonaws.com").unwrap();
        assert_eq!(uri.to_string(), "https://sts.us-east-1.amazonaws.com/");
        let uri = parse_endpoint("http://127.0.0.1:8080").unwrap();
        assert_eq!(uri.path(), "/");
        for loopback in [
            "http://[::1]:8080",
            "http://localhost:1",
            "http://127.1.2.3",
        ] {
            assert!(parse_endpoint(loopback).is_ok(), "{loopback}");
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
            assert!(parse_endpoint(bad).is_err(), "{bad}");
        }
    }
}

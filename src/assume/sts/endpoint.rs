//! Where to reach STS: the regional endpoint for a region (partition-aware), and the
//! configured `sts_endpoint` as a URI (https, or plain http to loopback for tests).

use super::StsError;
use crate::config::sts_limits::parse_sts_endpoint;
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

/// The configured `sts_endpoint` as a URI to POST to (the rules are
/// [`crate::config::sts_limits::parse_sts_endpoint`]'s, which `check-config` applies too).
pub fn parse_endpoint(endpoint: &str) -> Result<Uri, StsError> {
    parse_sts_endpoint(endpoint).map_err(|reason| StsError::BadEndpoint {
        endpoint: endpoint.to_string(),
        reason: reason.to_string(),
    })
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
}

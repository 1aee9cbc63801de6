//! The IMDS paths and headers the daemon uses, named once: the client and the `[[assume]]`
//! resolution ask for them, and the simulator answers them.

/// `PUT` here for a session token.
pub const TOKEN_PATH: &str = "/latest/api/token";
/// The token TTL asked for, in seconds (1..=21600).
pub const TOKEN_TTL_HEADER: &str = "x-aws-ec2-metadata-token-ttl-seconds";
/// The session token, on every `GET`.
pub const TOKEN_HEADER: &str = "x-aws-ec2-metadata-token";
/// The attached role's name; the role's credentials are at this path plus the name.
pub const ROLE_LIST_PATH: &str = "/latest/meta-data/iam/security-credentials/";
/// The same with `AccountId` in the document (older IMDS answers 404).
pub const EXTENDED_PATH: &str = "/latest/meta-data/iam/security-credentials-extended/";
/// The instance profile's ARN, hence the account id.
pub const INFO_PATH: &str = "/latest/meta-data/iam/info";
/// For the default `[[assume]]` session name.
pub const INSTANCE_ID_PATH: &str = "/latest/meta-data/instance-id";
/// For the default STS region.
pub const REGION_PATH: &str = "/latest/meta-data/placement/region";

//! `[[assume]]` profiles: roles assumed with the instance role's credentials.
//! - [`sts`]: the signed STS `AssumeRole` call and its XML answer.
//! - [`chain`]: each profile as an issuer for the refresh engine, chained on the instance
//!   role's state and publishing on the profile's own state channel.

pub(crate) mod chain;
pub mod sts;

pub use chain::{start_profiles, ChainContext, ProfileError};
pub use sts::{StsClient, StsError};

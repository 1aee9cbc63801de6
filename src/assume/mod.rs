//! `[[assume]]` profiles: roles assumed with the instance role's credentials.
//! - [`sts`]: the signed STS `AssumeRole` call and its XML answer.
//! - [`chain`]: one task per profile that keeps its chained credentials fresh and publishes
//!   them on the profile's own state channel.

pub mod chain;
pub mod sts;

pub use chain::{start_profiles, ChainContext, ProfileError};
pub use sts::{StsClient, StsError};

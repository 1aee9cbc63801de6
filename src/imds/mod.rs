//! Everything about talking to the Instance Metadata Service (IMDSv2).
//! - [`endpoint`]: which address, from config and the SDKs' environment variables.
//! - [`token`]: the session token and when to replace it.
//! - [`client`]: requests, retries, the body cap.
//! - [`clock_skew`]: how far the instance clock is from IMDS's (`Date` header).
//! - [`error`]: what went wrong, and whether to retry.

pub mod client;
pub mod clock_skew;
pub mod endpoint;
pub mod error;
pub mod token;

pub use crate::backoff::RetryPolicy;
pub use client::{ImdsClient, ImdsSettings};
pub use error::{error_chain, ImdsError};

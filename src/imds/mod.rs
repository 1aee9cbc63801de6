//! Everything about talking to the Instance Metadata Service (IMDSv2).
//! - [`endpoint`]: which address, from config and the SDKs' environment variables.
//! - [`token`]: the session token and when to replace it.
//! - [`client`]: requests, retries, the body cap.
//! - [`account`]: the extended credentials path or `iam/info`, for the account id.
//! - [`error`]: what went wrong, and whether to retry.
//! - [`paths`]: the paths and headers, named once (the simulator answers the same).
#![warn(missing_docs)]

pub(crate) mod account;
pub(crate) mod client;
pub mod endpoint;
pub mod error;
pub mod paths;
pub(crate) mod token;

pub use crate::backoff::RetryPolicy;
pub use client::{ImdsClient, ImdsSettings};
pub use error::ImdsError;

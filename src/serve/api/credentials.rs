//! The credentials answers of `/v1/credentials` (`docs/DESIGN.md`, "Socket API"): the
//! query (`?format=`, `?profile=`), the channel it reads, the three formats (the
//! `credential_process` JSON, the container shape with `AccountId` and, for a profile,
//! `RoleArn`, and `export` lines; for systemd units also a shared-credentials file), and
//! the cache of rendered bodies per credentials set. The only part of the API that handles
//! secrets.

use super::{echo, reply, Api, ApiError, Body, Endpoint, Status, JSON, TEXT};
use crate::credentials::render::{container_json, process_json, render_env, EnvSyntax};
use crate::credentials::Credentials;
use crate::refresh::state::StateReceiver;
use crate::sink::merge_section;
use bytes::Bytes;
use hyper::Response;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use zeroize::Zeroizing;

/// One refresher channel and the credential answers rendered from its current set.
pub(super) struct Channel {
    pub(super) receiver: StateReceiver,
    /// Whether the state's `role` is a role ARN (an `[[assume]]` profile's), which the
    /// container shape then reports as `RoleArn`. The instance role's is only a name.
    role_is_arn: bool,
    rendered: Mutex<Rendered>,
}

/// The bodies of one credentials set, rendered on first use and kept until the set changes:
/// building the JSON on every request cost a quarter of the throughput
/// (`benches/socket_load.rs`). Cleared when the channel has no valid set, so rendered
/// secrets of an expired set do not linger.
#[derive(Default)]
struct Rendered {
    creds: Option<Arc<Credentials>>,
    bodies: [Option<Bytes>; Format::COUNT],
}

impl Channel {
    pub(super) fn new(receiver: StateReceiver, role_is_arn: bool) -> Self {
        Channel {
            receiver,
            role_is_arn,
            rendered: Mutex::new(Rendered::default()),
        }
    }

    /// The body of `format` for `creds`, which must be this channel's current valid set.
    fn body(&self, creds: &Arc<Credentials>, format: Format) -> Bytes {
        let mut rendered = self.rendered.lock().expect("rendered bodies lock");
        if !rendered
            .creds
            .as_ref()
            .is_some_and(|c| Arc::ptr_eq(c, creds))
        {
            *rendered = Rendered {
                creds: Some(Arc::clone(creds)),
                bodies: Default::default(),
            };
        }
        rendered.bodies[format.slot()]
            .get_or_insert_with(|| {
                let mut text = format.render(creds, self.role_arn().as_deref());
                // The last clone of the body dropped (the cache's or a response's) zeroizes it.
                Bytes::from_owner(Zeroizing::new(std::mem::take(&mut *text).into_bytes()))
            })
            .clone()
    }

    /// A profile's role ARN, constant for the profile's life (so caching bodies that hold
    /// it by credentials set is safe).
    fn role_arn(&self) -> Option<String> {
        if self.role_is_arn {
            self.receiver.borrow().role.clone()
        } else {
            None
        }
    }

    fn forget_rendered(&self) {
        *self.rendered.lock().expect("rendered bodies lock") = Rendered::default();
    }
}

/// A credentials format: one of `?format=`, or the shared-credentials file a unit loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `credential_process` Version 1 JSON (also `json` and the default).
    Process,
    /// The container-credentials shape (`Token`, not `SessionToken`).
    Container,
    /// `export NAME='value'` lines.
    Env,
    /// A shared-credentials file with one `[default]` profile, written by the `[[file]]`
    /// sink's INI writer (only the unit-credentials socket serves it).
    SharedCredentials,
}

impl Format {
    const COUNT: usize = 4;

    fn slot(self) -> usize {
        match self {
            Format::Process => 0,
            Format::Container => 1,
            Format::Env => 2,
            Format::SharedCredentials => 3,
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Format::Process | Format::Container => JSON,
            Format::Env | Format::SharedCredentials => TEXT,
        }
    }

    fn render(self, creds: &Credentials, role_arn: Option<&str>) -> Zeroizing<String> {
        match self {
            Format::Process => process_json(creds),
            Format::Container => container_json(creds, role_arn),
            Format::Env => render_env(creds, EnvSyntax::Sh),
            Format::SharedCredentials => {
                Zeroizing::new(merge_section("", SHARED_CREDENTIALS_PROFILE, Some(creds)))
            }
        }
    }
}

/// The one profile of [`Format::SharedCredentials`]: what an SDK reads without
/// `AWS_PROFILE`.
const SHARED_CREDENTIALS_PROFILE: &str = "default";

impl Api {
    pub(super) fn credentials(
        &self,
        query: Option<&str>,
        endpoint: Endpoint,
    ) -> Result<Response<Body>, ApiError> {
        let (mut format, parameters) = match endpoint {
            Endpoint::Socket => (Format::Process, "format or profile"),
            Endpoint::Container => (Format::Container, "profile"),
        };
        let mut profile = None;
        for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            match key.as_ref() {
                "format" if endpoint == Endpoint::Socket => {
                    format = match value.as_ref() {
                        "json" | "process" => Format::Process,
                        "container" => Format::Container,
                        "env" => Format::Env,
                        other => return Err(ApiError::UnknownFormat(echo(other))),
                    }
                }
                "profile" => profile = Some(value.into_owned()),
                other => {
                    return Err(ApiError::BadQuery(format!(
                        "unknown parameter {:?}: use {parameters}",
                        echo(other)
                    )))
                }
            }
        }
        let body = self.credentials_body(profile.as_deref(), format)?;
        Ok(reply(Status::Ok, format.content_type(), body))
    }

    /// The body of `format` for `profile` (`None`: the instance role), if its credentials
    /// are valid now.
    pub(super) fn credentials_body(
        &self,
        profile: Option<&str>,
        format: Format,
    ) -> Result<Bytes, ApiError> {
        let channel = self.channel(profile)?;
        let creds = self.valid(channel, profile)?;
        Ok(channel.body(&creds, format))
    }

    /// The channel of `profile` (`None`: the instance role).
    pub(super) fn channel(&self, profile: Option<&str>) -> Result<&Channel, ApiError> {
        match profile {
            None => Ok(&self.instance),
            Some(name) => self
                .profiles
                .get(name)
                .ok_or_else(|| ApiError::UnknownProfile(echo(name))),
        }
    }

    /// The credentials of a channel if they are valid now, else why not.
    pub(super) fn valid(
        &self,
        channel: &Channel,
        profile: Option<&str>,
    ) -> Result<Arc<Credentials>, ApiError> {
        let now = self.clock.now();
        let state = channel.receiver.borrow();
        if let Some(creds) = state.valid_credentials(now) {
            return Ok(Arc::clone(creds));
        }
        channel.forget_rendered();
        let whose = match profile {
            None => "the instance role".to_string(),
            Some(name) => format!("profile {name:?}"),
        };
        let mut message = match &state.credentials {
            Some(expired) => format!(
                "the credentials of {whose} expired at {}",
                expired.expiration_rfc3339()
            ),
            None => format!("no valid credentials for {whose}"),
        };
        match &state.last_error {
            Some(error) => write!(message, "; last error: {error}").expect("write to String"),
            None if state.last_refresh.is_none() => {
                message.push_str("; no refresh has succeeded yet")
            }
            None => {}
        }
        Err(ApiError::NoCredentials(message))
    }
}

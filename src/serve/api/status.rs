//! The answers that describe the daemon (`docs/DESIGN.md`, "Socket API"): `/v1/status`
//! (each channel's summary, the sinks, the clock skew and the last clock jump, the counters), `/healthz` and
//! `/v1/consumers`. Built from fields that hold no secret.

use super::{reply, Api, ApiError, Body, Status, JSON, TEXT};
use crate::clock::skew::{ClockSkew, SkewVerdict};
use crate::credentials::format_utc_timestamp;
use crate::health::metrics::{Metrics, RequestCounters};
use crate::refresh::state::CredentialState;
use crate::serve::consumers::Consumer;
use hyper::Response;
use serde_json::{json, Map, Value};
use std::time::SystemTime;

impl Api {
    /// `/v1/status`: the instance role's summary at the top level, then the assumed-role
    /// profiles, the sinks and the counters.
    pub(super) fn status(&self) -> Response<Body> {
        let now = self.clock.now();
        let instance = self.instance.receiver.borrow().clone();
        let mut status = summary(&instance, now, "IMDS");
        status.insert("version".into(), env!("CARGO_PKG_VERSION").into());
        let profiles: Map<String, Value> = self
            .profiles
            .iter()
            .map(|(name, channel)| {
                let state = channel.receiver.borrow();
                (name.clone(), Value::Object(summary(&state, now, "STS")))
            })
            .collect();
        status.insert("profiles".into(), Value::Object(profiles));
        let sinks: Vec<Value> = self
            .sinks
            .snapshot()
            .into_iter()
            .map(|sink| {
                json!({
                    "kind": sink.kind,
                    "target": sink.target,
                    "last_success": sink.last_success.map(format_utc_timestamp),
                    "last_error": sink.last_error,
                    "hook_error": sink.hook_error,
                })
            })
            .collect();
        status.insert("sinks".into(), sinks.into());
        let skew = self.metrics.clock_skew.get();
        status.insert(
            "clock_skew_seconds".into(),
            skew.map(|s| s.imds_ahead_secs).into(),
        );
        // A refusal to correct is what the operator must read; else the latest measure.
        let warning = match instance.clock_skew {
            Some(refused @ SkewVerdict::Refused(..)) => refused.describe("IMDS"),
            _ => skew.filter(|s| s.is_significant()).map(ClockSkew::describe),
        };
        status.insert("clock_skew_warning".into(), warning.into());
        let jump = self.clock.last_jump();
        status.insert(
            "clock_jump".into(),
            jump.map(|jump| {
                json!({
                    "noticed_at": format_utc_timestamp(jump.noticed_at),
                    "forward_seconds": jump.forward_secs,
                    "description": jump.describe(),
                })
            })
            .into(),
        );
        let m = &*self.metrics;
        // Only the statuses answered so far: `status` prints every counter on one line, and
        // a daemon without the container endpoint should not list seven zeros for it.
        // `/metrics` keeps every series.
        let by_code = |counters: &RequestCounters| -> Map<String, Value> {
            Status::ALL
                .iter()
                .map(|s| {
                    (
                        s.code().as_u16().to_string(),
                        Metrics::get(s.counter(counters)),
                    )
                })
                .filter(|(_, count)| *count > 0)
                .map(|(code, count)| (code, count.into()))
                .collect()
        };
        status.insert(
            "counters".into(),
            json!({
                "imds_token_requests": Metrics::get(&m.imds_token_requests),
                "imds_get_requests": Metrics::get(&m.imds_get_requests),
                "imds_errors": Metrics::get(&m.imds_errors),
                "refresh_successes": Metrics::get(&m.refresh_successes),
                "refresh_failures": Metrics::get(&m.refresh_failures),
                "socket_connections": Metrics::get(&m.socket_connections),
                "socket_requests": by_code(&m.socket_requests),
                "container_requests": by_code(&m.container_requests),
            }),
        );
        reply(Status::Ok, JSON, Value::Object(status).to_string())
    }

    /// `/healthz`: `ok` while the instance role's credentials are valid.
    pub(super) fn health(&self) -> Result<Response<Body>, ApiError> {
        self.valid(&self.instance, None)?;
        Ok(reply(Status::Ok, TEXT, "ok\n"))
    }

    /// `/v1/consumers`: the consumer table, as `viewer` may see it.
    pub(super) fn consumer_table(&self, viewer: &Consumer) -> Response<Body> {
        reply(Status::Ok, JSON, self.consumers.to_json(viewer).to_string())
    }
}

/// A channel's state for `/v1/status`, its sets coming from `service`; no secret field is
/// read.
fn summary(state: &CredentialState, now: SystemTime, service: &str) -> Map<String, Value> {
    let expiration = state.credentials.as_ref().map(|c| c.expiration);
    let expires_in = expiration.map(|at| match at.duration_since(now) {
        Ok(left) => left.as_secs() as i64,
        Err(past) => -(past.duration().as_secs() as i64),
    });
    let mut map = Map::new();
    map.insert("role".into(), state.role.clone().into());
    let account = state
        .credentials
        .as_ref()
        .and_then(|c| c.account_id.clone());
    map.insert("account_id".into(), account.into());
    map.insert(
        "credentials_valid".into(),
        state.valid_credentials(now).is_some().into(),
    );
    map.insert(
        "expiration".into(),
        expiration.map(format_utc_timestamp).into(),
    );
    map.insert("expires_in_seconds".into(), expires_in.into());
    map.insert(
        "last_refresh".into(),
        state.last_refresh.map(format_utc_timestamp).into(),
    );
    map.insert(
        "next_refresh".into(),
        state.next_refresh.map(format_utc_timestamp).into(),
    );
    map.insert("last_error".into(), state.last_error.clone().into());
    map.insert(
        "clock_skew".into(),
        state
            .clock_skew
            .and_then(|verdict| verdict.describe(service))
            .into(),
    );
    map
}

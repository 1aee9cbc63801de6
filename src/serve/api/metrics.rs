//! `/metrics` in the Prometheus text exposition format (`docs/DESIGN.md`, "Socket API"):
//! the counters, the instance role's validity and times, the consumer table per uid and
//! each sink's outcome. Built from fields that hold no secret.

use super::{reply, Api, Body, Status};
use crate::health::metrics::{Metrics, RequestCounters};
use hyper::Response;
use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

const PROMETHEUS: &str = "text/plain; version=0.0.4; charset=utf-8";

impl Api {
    /// `/metrics` in the Prometheus text exposition format.
    pub(super) fn prometheus(&self) -> Response<Body> {
        let now = self.clock.now();
        let state = self.instance.receiver.borrow().clone();
        let m = &*self.metrics;
        let mut out = String::new();
        let version = format!("version=\"{}\"", env!("CARGO_PKG_VERSION"));
        family(
            &mut out,
            "imds_credd_build_info",
            "gauge",
            "Version of the running daemon.",
            &[(version, 1)],
        );
        let valid = u64::from(state.valid_credentials(now).is_some());
        family(
            &mut out,
            "imds_credd_credentials_valid",
            "gauge",
            "1 when valid instance-role credentials are held.",
            &[(String::new(), valid)],
        );
        if let Some(creds) = &state.credentials {
            family(
                &mut out,
                "imds_credd_credentials_expiry_timestamp_seconds",
                "gauge",
                "When the held instance-role credentials expire.",
                &[(String::new(), unix_seconds(creds.expiration))],
            );
        }
        if let Some(skew) = self.metrics.clock_skew.get() {
            // Signed, so not through `family`, whose samples are counts.
            writeln!(
                out,
                "# HELP imds_credd_clock_skew_seconds IMDS's clock minus the instance's, from IMDS's Date header; past 300 either way expiry is judged on IMDS time.\n# TYPE imds_credd_clock_skew_seconds gauge\nimds_credd_clock_skew_seconds {}",
                skew.imds_ahead_secs
            )
            .expect("write to String");
        }
        if let Some(at) = state.last_refresh {
            family(
                &mut out,
                "imds_credd_last_refresh_timestamp_seconds",
                "gauge",
                "When credentials were last fetched from IMDS.",
                &[(String::new(), unix_seconds(at))],
            );
        }
        family(
            &mut out,
            "imds_credd_imds_requests_total",
            "counter",
            "Requests sent to IMDS, by kind (token PUT or GET).",
            &[
                (
                    "kind=\"token\"".into(),
                    Metrics::get(&m.imds_token_requests),
                ),
                ("kind=\"get\"".into(), Metrics::get(&m.imds_get_requests)),
            ],
        );
        family(
            &mut out,
            "imds_credd_imds_errors_total",
            "counter",
            "IMDS requests that failed, before retries.",
            &[(String::new(), Metrics::get(&m.imds_errors))],
        );
        family(
            &mut out,
            "imds_credd_refreshes_total",
            "counter",
            "Refresh attempts, by result.",
            &[
                (
                    "result=\"success\"".into(),
                    Metrics::get(&m.refresh_successes),
                ),
                (
                    "result=\"failure\"".into(),
                    Metrics::get(&m.refresh_failures),
                ),
            ],
        );
        family(
            &mut out,
            "imds_credd_socket_connections_total",
            "counter",
            "Connections accepted on the unix socket.",
            &[(String::new(), Metrics::get(&m.socket_connections))],
        );
        let by_status = |counters: &RequestCounters| -> Vec<(String, u64)> {
            Status::ALL
                .iter()
                .map(|s| {
                    (
                        format!("status=\"{}\"", s.code().as_u16()),
                        Metrics::get(s.counter(counters)),
                    )
                })
                .collect()
        };
        family(
            &mut out,
            "imds_credd_socket_requests_total",
            "counter",
            "Requests answered on the unix socket, by HTTP status.",
            &by_status(&m.socket_requests),
        );
        family(
            &mut out,
            "imds_credd_container_requests_total",
            "counter",
            "Requests answered on the container-credentials endpoint, by HTTP status.",
            &by_status(&m.container_requests),
        );
        let units = &m.unit_credentials;
        family(
            &mut out,
            "imds_credd_unit_credentials_total",
            "counter",
            "Connections on the unit-credentials socket (LoadCredential=), by result.",
            &[
                ("result=\"served\"".into(), Metrics::get(&units.served)),
                ("result=\"refused\"".into(), Metrics::get(&units.refused)),
                (
                    "result=\"unavailable\"".into(),
                    Metrics::get(&units.unavailable),
                ),
            ],
        );
        let closed: Vec<(String, u64)> = [
            ("socket", &m.socket_closed),
            ("container", &m.container_closed),
        ]
        .into_iter()
        .flat_map(|(server, c)| {
            [
                ("refused", &c.refused),
                ("over_share", &c.over_share),
                ("silent", &c.silent),
                ("vanished", &c.vanished),
            ]
            .map(|(reason, counter)| {
                (
                    format!("server=\"{server}\",reason=\"{reason}\""),
                    Metrics::get(counter),
                )
            })
        })
        .collect();
        family(
            &mut out,
            "imds_credd_connections_closed_total",
            "counter",
            "Connections closed by admission: refused at accept, over their uid's share, silent past the first-byte deadline, gone before identified.",
            &closed,
        );
        let by_uid: Vec<(String, u64)> = self
            .consumers
            .per_uid()
            .into_iter()
            .flat_map(|(uid, counts)| {
                let uid = uid.map_or_else(|| "unknown".to_string(), |uid| uid.to_string());
                [
                    ("answered", counts.answered),
                    ("refused", counts.refused),
                    ("rate_limited", counts.rate_limited),
                ]
                .map(|(result, count)| (format!("uid=\"{uid}\",result=\"{result}\""), count))
            })
            .collect();
        family(
            &mut out,
            "imds_credd_consumer_requests_total",
            "counter",
            "Credentials requests and refusals on the socket, the container endpoint and the unit-credentials socket, by peer uid and result.",
            &by_uid,
        );
        let by_client: Vec<(String, u64)> = self
            .consumers
            .per_client()
            .into_iter()
            .flat_map(|(client, address, counts)| {
                let peer = address.map_or_else(|| "other".to_string(), |a| a.to_string());
                [
                    ("answered", counts.answered),
                    ("refused", counts.refused),
                    ("rate_limited", counts.rate_limited),
                ]
                .map(|(result, count)| {
                    let labels = format!(
                        "client=\"{}\",peer=\"{}\",result=\"{result}\"",
                        label_value(&client),
                        label_value(&peer)
                    );
                    (labels, count)
                })
            })
            .collect();
        family(
            &mut out,
            "imds_credd_container_client_requests_total",
            "counter",
            "Credentials requests and refusals on the container endpoint, by client and peer address.",
            &by_client,
        );
        family(
            &mut out,
            "imds_credd_consumers_evicted_total",
            "counter",
            "Rows dropped from the consumer table to keep it bounded.",
            &[(String::new(), self.consumers.evicted())],
        );
        let sinks = self.sinks.snapshot();
        let sink_labels = |kind: &str, target: &str| {
            format!(
                "kind=\"{}\",target=\"{}\"",
                label_value(kind),
                label_value(target)
            )
        };
        let errors: Vec<(String, u64)> = sinks
            .iter()
            .map(|s| {
                (
                    sink_labels(s.kind, &s.target),
                    u64::from(s.last_error.is_some()),
                )
            })
            .collect();
        family(
            &mut out,
            "imds_credd_sink_error",
            "gauge",
            "1 while a sink's last attempt failed.",
            &errors,
        );
        let successes: Vec<(String, u64)> = sinks
            .iter()
            .filter_map(|s| {
                Some((
                    sink_labels(s.kind, &s.target),
                    unix_seconds(s.last_success?),
                ))
            })
            .collect();
        family(
            &mut out,
            "imds_credd_sink_last_success_timestamp_seconds",
            "gauge",
            "When a sink last published successfully.",
            &successes,
        );
        reply(Status::Ok, PROMETHEUS, out)
    }
}

/// One metric family: HELP and TYPE lines, then one sample per label set.
fn family(out: &mut String, name: &str, kind: &str, help: &str, samples: &[(String, u64)]) {
    writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}").expect("write to String");
    for (labels, value) in samples {
        if labels.is_empty() {
            writeln!(out, "{name} {value}").expect("write to String");
        } else {
            writeln!(out, "{name}{{{labels}}} {value}").expect("write to String");
        }
    }
}

/// Escapes a label value as the exposition format requires.
fn label_value(value: &str) -> String {
    value
        .replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

fn unix_seconds(at: SystemTime) -> u64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label_value("a\"b\\c\nd"), r#"a\"b\\c\nd"#);
    }
}

//! `/metrics` in the Prometheus text exposition format (`docs/DESIGN.md`, "Socket API"):
//! the counters, the instance role's validity and times, the consumer table per uid and
//! each sink's outcome. Built from fields that hold no secret.

use super::{reply, Api, Body, Status};
use crate::health::metrics::{Metrics, RequestCounters};
use crate::health::SinkReport;
use crate::refresh::state::CredentialState;
use hyper::Response;
use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

const PROMETHEUS: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What every row reads its samples from, taken once per scrape.
struct Reading<'a> {
    api: &'a Api,
    metrics: &'a Metrics,
    now: SystemTime,
    state: CredentialState,
    sinks: Vec<SinkReport>,
}

/// One sample: its label set (`""` for none) and its value (signed: the clock skew is).
type Sample = (String, i128);

/// One metric family of `/metrics`. `samples` answers `None` when the family is left out
/// of this scrape (a time not known yet), and an empty list when it has no row yet.
struct Family {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    samples: fn(&Reading) -> Option<Vec<Sample>>,
}

/// `/metrics`, one row per metric family, in the order they are written.
const FAMILIES: &[Family] = &[
    Family {
        name: "imds_credd_build_info",
        kind: "gauge",
        help: "Version of the running daemon.",
        samples: |_| {
            let version = format!("version=\"{}\"", env!("CARGO_PKG_VERSION"));
            Some(vec![(version, 1)])
        },
    },
    Family {
        name: "imds_credd_credentials_valid",
        kind: "gauge",
        help: "1 when valid instance-role credentials are held.",
        samples: |r| single(r.state.valid_credentials(r.now).is_some().into()),
    },
    Family {
        name: "imds_credd_credentials_expiry_timestamp_seconds",
        kind: "gauge",
        help: "When the held instance-role credentials expire.",
        samples: |r| single(unix_seconds(r.state.credentials.as_ref()?.expiration)),
    },
    Family {
        name: "imds_credd_clock_skew_seconds",
        kind: "gauge",
        help: "IMDS's clock minus the instance's, from IMDS's Date header; past 300 either way expiry is judged on IMDS time.",
        samples: |r| single(r.metrics.clock_skew.get()?.imds_ahead_secs.into()),
    },
    Family {
        name: "imds_credd_last_refresh_timestamp_seconds",
        kind: "gauge",
        help: "When credentials were last fetched from IMDS.",
        samples: |r| single(unix_seconds(r.state.last_refresh?)),
    },
    Family {
        name: "imds_credd_imds_requests_total",
        kind: "counter",
        help: "Requests sent to IMDS, by kind (token PUT or GET).",
        samples: |r| {
            let m = r.metrics;
            labelled([
                ("kind=\"token\"", &m.imds_token_requests),
                ("kind=\"get\"", &m.imds_get_requests),
            ])
        },
    },
    Family {
        name: "imds_credd_imds_errors_total",
        kind: "counter",
        help: "IMDS requests that failed, before retries.",
        samples: |r| single(Metrics::get(&r.metrics.imds_errors).into()),
    },
    Family {
        name: "imds_credd_refreshes_total",
        kind: "counter",
        help: "Refresh attempts, by result.",
        samples: |r| {
            let m = r.metrics;
            labelled([
                ("result=\"success\"", &m.refresh_successes),
                ("result=\"failure\"", &m.refresh_failures),
            ])
        },
    },
    Family {
        name: "imds_credd_socket_connections_total",
        kind: "counter",
        help: "Connections accepted on the unix socket.",
        samples: |r| single(Metrics::get(&r.metrics.socket_connections).into()),
    },
    Family {
        name: "imds_credd_socket_requests_total",
        kind: "counter",
        help: "Requests answered on the unix socket, by HTTP status.",
        samples: |r| Some(by_status(&r.metrics.socket_requests)),
    },
    Family {
        name: "imds_credd_container_requests_total",
        kind: "counter",
        help: "Requests answered on the container-credentials endpoint, by HTTP status.",
        samples: |r| Some(by_status(&r.metrics.container_requests)),
    },
    Family {
        name: "imds_credd_unit_credentials_total",
        kind: "counter",
        help: "Connections on the unit-credentials socket (LoadCredential=), by result.",
        samples: |r| {
            let units = &r.metrics.unit_credentials;
            labelled([
                ("result=\"served\"", &units.served),
                ("result=\"refused\"", &units.refused),
                ("result=\"unavailable\"", &units.unavailable),
            ])
        },
    },
    Family {
        name: "imds_credd_connections_closed_total",
        kind: "counter",
        help: "Connections closed by admission: refused at accept, over their uid's share, silent past the first-byte deadline, gone before identified.",
        samples: closed_by_admission,
    },
    Family {
        name: "imds_credd_consumer_requests_total",
        kind: "counter",
        help: "Credentials requests and refusals on the socket, the container endpoint and the unit-credentials socket, by peer uid and result.",
        samples: by_uid,
    },
    Family {
        name: "imds_credd_container_client_requests_total",
        kind: "counter",
        help: "Credentials requests and refusals on the container endpoint, by client and peer address.",
        samples: by_client,
    },
    Family {
        name: "imds_credd_consumers_evicted_total",
        kind: "counter",
        help: "Rows dropped from the consumer table to keep it bounded.",
        samples: |r| single(r.api.consumers.evicted().into()),
    },
    Family {
        name: "imds_credd_sink_error",
        kind: "gauge",
        help: "1 while a sink's last attempt failed.",
        samples: |r| {
            let rows = r.sinks.iter();
            Some(rows.map(|s| (sink_labels(s), s.last_error.is_some().into())).collect())
        },
    },
    Family {
        name: "imds_credd_sink_last_success_timestamp_seconds",
        kind: "gauge",
        help: "When a sink last published successfully.",
        samples: |r| {
            let rows = r.sinks.iter();
            Some(rows.filter_map(|s| Some((sink_labels(s), unix_seconds(s.last_success?)))).collect())
        },
    },
];

impl Api {
    /// `/metrics` in the Prometheus text exposition format: every row of [`FAMILIES`].
    pub(super) fn prometheus(&self) -> Response<Body> {
        let now = self.clock.now();
        let reading = Reading {
            api: self,
            metrics: &self.metrics,
            now,
            state: self.instance.receiver.borrow().clone(),
            sinks: self.sinks.snapshot(),
        };
        let mut out = String::new();
        for family in FAMILIES {
            if let Some(samples) = (family.samples)(&reading) {
                write_family(&mut out, family, &samples);
            }
        }
        reply(Status::Ok, PROMETHEUS, out)
    }
}

/// A family with one unlabelled sample.
fn single(value: i128) -> Option<Vec<Sample>> {
    Some(vec![(String::new(), value)])
}

/// A family with one sample per counter, each under its label set.
fn labelled<const N: usize>(
    counters: [(&str, &std::sync::atomic::AtomicU64); N],
) -> Option<Vec<Sample>> {
    let samples =
        counters.map(|(labels, counter)| (labels.to_string(), Metrics::get(counter).into()));
    Some(samples.into())
}

/// One sample per listener and reason admission closed connections for.
fn closed_by_admission(r: &Reading) -> Option<Vec<Sample>> {
    let m = r.metrics;
    let servers = [
        ("socket", &m.socket_closed),
        ("container", &m.container_closed),
    ];
    let samples = servers
        .into_iter()
        .flat_map(|(server, c)| {
            [
                ("refused", &c.refused),
                ("over_share", &c.over_share),
                ("silent", &c.silent),
                ("vanished", &c.vanished),
            ]
            .map(|(reason, counter)| {
                let labels = format!("server=\"{server}\",reason=\"{reason}\"");
                (labels, Metrics::get(counter).into())
            })
        })
        .collect();
    Some(samples)
}

/// One sample per HTTP status the API answers with.
fn by_status(counters: &RequestCounters) -> Vec<Sample> {
    Status::ALL
        .iter()
        .map(|s| {
            let labels = format!("status=\"{}\"", s.code().as_u16());
            (labels, Metrics::get(s.counter(counters)).into())
        })
        .collect()
}

/// The consumer table per peer uid: answered, refused and rate-limited requests.
fn by_uid(r: &Reading) -> Option<Vec<Sample>> {
    let rows = r.api.consumers.per_uid().into_iter();
    let samples = rows.flat_map(|(uid, counts)| {
        let uid = uid.map_or_else(|| "unknown".to_string(), |uid| uid.to_string());
        [
            ("answered", counts.answered),
            ("refused", counts.refused),
            ("rate_limited", counts.rate_limited),
        ]
        .map(|(result, count)| (format!("uid=\"{uid}\",result=\"{result}\""), count.into()))
    });
    Some(samples.collect())
}

/// The container endpoint's consumer table per client and peer address.
fn by_client(r: &Reading) -> Option<Vec<Sample>> {
    let rows = r.api.consumers.per_client().into_iter();
    let samples = rows.flat_map(|(client, address, counts)| {
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
            (labels, count.into())
        })
    });
    Some(samples.collect())
}

fn sink_labels(sink: &SinkReport) -> String {
    format!(
        "kind=\"{}\",target=\"{}\"",
        label_value(sink.kind),
        label_value(&sink.target)
    )
}

/// One metric family: HELP and TYPE lines, then one sample per label set.
fn write_family(out: &mut String, family: &Family, samples: &[Sample]) {
    let Family {
        name, kind, help, ..
    } = family;
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

fn unix_seconds(at: SystemTime) -> i128 {
    let since_epoch = at.duration_since(SystemTime::UNIX_EPOCH);
    since_epoch.unwrap_or(Duration::ZERO).as_secs().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label_value("a\"b\\c\nd"), r#"a\"b\\c\nd"#);
    }
}

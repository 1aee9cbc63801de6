//! The whole path an IMDS answer and an STS answer take, for the fuzz target
//! (`fuzz/fuzz_targets/whole_path.rs`) and the property test (`tests/whole_path.rs`), which
//! both include this file: validation, then every renderer a client or a file sees — the
//! socket and container answers (both JSON shapes, env, status JSON, metrics, health), every
//! env format, the credentials-file merge, the systemd status text and the masked key in the
//! log line. Nothing may panic, and no status, metrics or log text may carry a secret.

use hyper::{Method, Uri};
use imds_credd::assume::sts::parse_assume_role_response;
use imds_credd::clock::{ManualClock, SharedClock};
use imds_credd::credentials::render::{render_env, EnvSyntax};
use imds_credd::credentials::Credentials;
use imds_credd::daemon::notify::status_line;
use imds_credd::health::metrics::Metrics;
use imds_credd::health::SinkHealth;
use imds_credd::refresh::{masked, state_channel};
use imds_credd::serve::{Api, Endpoint};
use imds_credd::sink::merge_section;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// One input: the bodies IMDS and STS answered, the credentials file already on disk and
/// the profile name the sink writes.
pub struct Answers<'a> {
    pub imds: &'a [u8],
    pub sts: &'a [u8],
    pub existing_file: &'a str,
    pub profile: &'a str,
    /// Seconds after the IMDS answer at which the requests are made (expiry is checked then).
    pub asked_after: u32,
}

const ROUTES: [&str; 8] = [
    "/v1/credentials",
    "/v1/credentials?format=container",
    "/v1/credentials?format=env",
    "/v1/credentials?profile=audit",
    "/v1/credentials?profile=audit&format=container",
    "/v1/status",
    "/metrics",
    "/healthz",
];

/// Runs `answers` through everything; panics (the fuzzer's crash) on a broken invariant.
/// Returns how many of the two answers passed validation.
pub fn exercise(answers: &Answers) -> usize {
    let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let clock = ManualClock::new(start);
    let instance = Credentials::from_imds_json(answers.imds);
    let assumed = parse_assume_role_response(answers.sts);
    let mut secrets = Vec::new();

    let (instance_tx, instance_rx) = state_channel();
    instance_tx.send_modify(|s| {
        s.role = Some("web".into());
        s.last_refresh = Some(start);
        match &instance {
            Ok(creds) => s.credentials = Some(Arc::new(creds.clone())),
            Err(error) => s.last_error = Some(error.to_string()),
        }
    });
    let (profile_tx, profile_rx) = state_channel();
    profile_tx.send_modify(|s| match &assumed {
        Ok(role) => {
            s.role = Some(role.assumed_role_arn.clone());
            s.credentials = Some(Arc::new(role.credentials.clone()));
        }
        Err(error) => s.last_error = Some(error.to_string()),
    });
    for creds in instance
        .iter()
        .chain(assumed.iter().map(|r| &r.credentials))
    {
        secrets.push(creds.secret_access_key.expose().to_string());
        secrets.push(creds.session_token.expose().to_string());
        log_line(&masked(&creds.access_key_id), &secrets);
        let _ = creds.to_process_json();
        for syntax in <EnvSyntax as clap::ValueEnum>::value_variants() {
            let _ = render_env(creds, *syntax);
        }
        let merged = merge_section(answers.existing_file, answers.profile, Some(creds));
        let withdrawn = merge_section(&merged, answers.profile, None);
        let _ = merge_section(&withdrawn, answers.profile, Some(creds));
    }

    clock.advance(Duration::from_secs(answers.asked_after.into()));
    let shared: SharedClock = Arc::new(clock.clone());
    let profiles = BTreeMap::from([("audit".to_string(), profile_rx)]);
    let api = Api::new(
        instance_rx.clone(),
        profiles,
        shared.clone(),
        Arc::new(Metrics::default()),
        SinkHealth::default(),
    );
    // Root sees every consumer row, so every row is scanned.
    let root = imds_credd::serve::consumers::Consumer {
        uid: Some(0),
        ..imds_credd::serve::consumers::Consumer::unknown()
    };
    for route in ROUTES {
        let uri: Uri = route.parse().unwrap();
        for endpoint in [Endpoint::Socket, Endpoint::Container] {
            let response = api.respond(endpoint, &root, &Method::GET, &uri);
            let carries_secrets = route.starts_with("/v1/credentials") && response.status() == 200;
            if !carries_secrets {
                let body = format!("{:?}", response.body());
                log_line(&body, &secrets);
            }
        }
    }
    let status = status_line(&instance_rx.borrow(), shared.now());
    log_line(&status, &secrets);
    usize::from(instance.is_ok()) + usize::from(assumed.is_ok())
}

/// `text` goes to a log, the journal or a non-secret answer: no secret may be in it.
fn log_line(text: &str, secrets: &[String]) {
    for secret in secrets {
        // A short "secret" can match fixed text ("credentials"); real ones are 40+ bytes.
        if secret.len() >= 24 {
            assert!(
                !text.contains(secret.as_str()),
                "a secret in non-secret output"
            );
        }
    }
}

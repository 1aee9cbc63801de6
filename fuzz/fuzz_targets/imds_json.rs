//! `Credentials::from_imds_json` on any bytes: it never panics, and when it accepts a
//! document the key id, secret and token are exactly the strings in the JSON (checked here
//! with a plain `serde_json` parse), and survive the `credential_process` JSON we serve.
#![no_main]

use imds_credd::credentials::{format_utc_timestamp, parse_utc_timestamp, Credentials};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|body: &[u8]| {
    let Ok(creds) = Credentials::from_imds_json(body) else {
        return;
    };
    let doc: Value = serde_json::from_slice(body).expect("accepted input is JSON");
    assert_eq!(
        doc["AccessKeyId"].as_str(),
        Some(creds.access_key_id.as_str())
    );
    assert_eq!(
        doc["SecretAccessKey"].as_str(),
        Some(creds.secret_access_key.expose())
    );
    assert_eq!(doc["Token"].as_str(), Some(creds.session_token.expose()));
    if let Some(code) = doc.get("Code") {
        assert_eq!(code.as_str(), Some("Success"), "only Success is accepted");
    }

    let served: Value =
        serde_json::from_str(&creds.to_process_json()).expect("we serve valid JSON");
    assert_eq!(served["Version"], 1);
    assert_eq!(served["AccessKeyId"], doc["AccessKeyId"]);
    assert_eq!(served["SecretAccessKey"], doc["SecretAccessKey"]);
    assert_eq!(served["SessionToken"], doc["Token"]);
    // The expiry we serve reads back as the parsed one, to the second.
    let expiration = served["Expiration"]
        .as_str()
        .expect("Expiration is a string");
    let reread = parse_utc_timestamp(expiration).expect("our own timestamp parses");
    assert_eq!(format_utc_timestamp(reread), expiration);
    assert_eq!(expiration, creds.expiration_rfc3339());
});

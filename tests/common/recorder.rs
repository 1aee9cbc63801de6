//! A loopback HTTP server that stands in for AWS STS: it records every request (method,
//! path, headers, body) and answers `GetCallerIdentity`, so `aws sts get-caller-identity
//! --endpoint-url http://127.0.0.1:PORT` succeeds. Tests then check which credentials a real
//! client signed with: the access key id and session token from the headers, and the secret
//! key by verifying the SigV4 signature.

use bytes::Bytes;
use hmac::{Hmac, KeyInit, Mac};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use imds_credd::credentials::Credentials;
use sha2::{Digest, Sha256};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

const CALLER_IDENTITY: &str = r#"<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <GetCallerIdentityResult>
    <Arn>arn:aws:sts::123456789012:assumed-role/test-role/i-0123456789abcdef0</Arn>
    <UserId>AROAEXAMPLEEXAMPLE:i-0123456789abcdef0</UserId>
    <Account>123456789012</Account>
  </GetCallerIdentityResult>
  <ResponseMetadata>
    <RequestId>01234567-89ab-cdef-0123-456789abcdef</RequestId>
  </ResponseMetadata>
</GetCallerIdentityResponse>
"#;

/// One request as the server received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// Path and query, as sent.
    pub target: String,
    /// Header names lower-cased, in arrival order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The access key id in `Authorization: AWS4-HMAC-SHA256 Credential=AKID/…`.
    pub fn access_key_id(&self) -> Option<&str> {
        let auth = self.header("authorization")?;
        let rest = auth.split("Credential=").nth(1)?;
        rest.split('/').next()
    }

    /// Checks the SigV4 signature against `secret_access_key`: only a client holding exactly
    /// that secret can have produced it.
    pub fn verify_signature(&self, secret_access_key: &str) -> Result<(), String> {
        let auth = self.header("authorization").ok_or("no Authorization")?;
        let fields = auth
            .strip_prefix("AWS4-HMAC-SHA256 ")
            .ok_or("not a SigV4 Authorization")?;
        let field = |name: &str| {
            fields
                .split(',')
                .map(str::trim)
                .find_map(|f| f.strip_prefix(name))
                .ok_or(format!("Authorization has no {name}"))
        };
        let credential = field("Credential=")?;
        let signed_headers = field("SignedHeaders=")?;
        let signature = field("Signature=")?;
        let scope = credential.split_once('/').ok_or("bad Credential")?.1;
        let scope_parts: Vec<&str> = scope.split('/').collect();
        let [date, region, service, "aws4_request"] = scope_parts[..] else {
            return Err(format!("bad scope {scope}"));
        };
        let amz_date = self.header("x-amz-date").ok_or("no X-Amz-Date")?;

        let (path, query) = self.target.split_once('?').unwrap_or((&self.target, ""));
        let mut query: Vec<&str> = query.split('&').filter(|q| !q.is_empty()).collect();
        query.sort();
        let mut canonical_headers = String::new();
        for name in signed_headers.split(';') {
            let values: Vec<&str> = self
                .headers
                .iter()
                .filter(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
                .collect();
            let value = values
                .iter()
                .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
                .collect::<Vec<_>>()
                .join(",");
            canonical_headers.push_str(&format!("{name}:{value}\n"));
        }
        let canonical_request = format!(
            "{}\n{}\n{}\n{}\n{}\n{}",
            self.method,
            path,
            query.join("&"),
            canonical_headers,
            signed_headers,
            hex(&Sha256::digest(&self.body)),
        );
        let string_to_sign = format!(
            "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
            hex(&Sha256::digest(canonical_request.as_bytes()))
        );
        let mut key = hmac(
            format!("AWS4{secret_access_key}").as_bytes(),
            date.as_bytes(),
        );
        for part in [region, service, "aws4_request"] {
            key = hmac(&key, part.as_bytes());
        }
        let expected = hex(&hmac(&key, string_to_sign.as_bytes()));
        if expected == signature {
            Ok(())
        } else {
            Err("signature does not match the secret key".into())
        }
    }
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The running server; it stops when dropped.
pub struct Recorder {
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<Recorded>>>,
    task: JoinHandle<()>,
}

impl Recorder {
    pub async fn start() -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&requests);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let log = Arc::clone(&log);
                tokio::spawn(async move {
                    let service = service_fn(move |req| answer(req, Arc::clone(&log)));
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Recorder {
            addr,
            requests,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }

    pub fn clear(&self) {
        self.requests.lock().unwrap().clear();
    }

    /// The last request was signed with exactly `issued` (access key id, session token, and
    /// a signature only its secret key makes); clears the record for the next check.
    pub fn assert_last_signed_with(&self, issued: &Credentials, client: &str) {
        let requests = self.requests();
        let request = requests
            .last()
            .unwrap_or_else(|| panic!("{client} sent no request"));
        assert_eq!(
            request.access_key_id(),
            Some(issued.access_key_id.as_str()),
            "{client}"
        );
        assert_eq!(
            request.header("x-amz-security-token"),
            Some(issued.session_token.expose()),
            "{client}"
        );
        request
            .verify_signature(issued.secret_access_key.expose())
            .unwrap_or_else(|e| panic!("{client}: {e}"));
        self.clear();
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer(
    req: Request<Incoming>,
    log: Arc<Mutex<Vec<Recorded>>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let method = req.method().to_string();
    let target = req
        .uri()
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_else(|| "/".into());
    let headers = req
        .headers()
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes().to_vec())
        .unwrap_or_default();
    log.lock().unwrap().push(Recorded {
        method,
        target,
        headers,
        body,
    });
    Ok(Response::builder()
        .header("content-type", "text/xml")
        .body(Full::new(Bytes::from_static(CALLER_IDENTITY.as_bytes())))
        .expect("static response"))
}

//! What the unit-credentials socket ([`crate::serve::unit_credentials`]) asks of the API: a
//! credentials body with no HTTP around it (systemd reads raw bytes until EOF), counted in
//! the consumer table (endpoint `unit`) and in `/metrics` like every other request.

use super::{Api, ApiError, Format};
use crate::health::metrics::Metrics;
use crate::serve::consumers::{Consumer, RequestResult};
use bytes::Bytes;

/// The consumer table's endpoint name for units.
const ENDPOINT: &str = "unit";

impl Api {
    /// The body of `format` for `profile` (`None`: the instance role) that `consumer`, an
    /// allowed unit, receives; or why there is none. Valid now, never expired.
    pub fn unit_credentials(
        &self,
        consumer: &Consumer,
        profile: Option<&str>,
        format: Format,
    ) -> Result<Bytes, ApiError> {
        let body = self.credentials_body(profile, format);
        let counters = &self.metrics.unit_credentials;
        Metrics::incr(match body {
            Ok(_) => &counters.served,
            Err(_) => &counters.unavailable,
        });
        let now = self.clock.now();
        self.consumers
            .record(ENDPOINT, consumer, profile, RequestResult::Answered, now);
        body
    }

    /// Counts a unit-credentials connection refused before anything was served.
    pub fn note_unit_refused(&self, consumer: &Consumer) {
        Metrics::incr(&self.metrics.unit_credentials.refused);
        let now = self.clock.now();
        self.consumers
            .record(ENDPOINT, consumer, None, RequestResult::Refused, now);
    }
}

//! Request deadlines and phase timing helpers.

use std::time::{Duration, Instant};

/// When the request must be done, if ever.
pub type Deadline = Option<Instant>;

/// Wraps a message into a request carrying the time left until `deadline` as its grpc-timeout.
pub fn request_with_deadline<T>(message: T, deadline: Deadline) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(deadline) = deadline {
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1));
        request.set_timeout(left);
    }
    // One trace per request across the nodes: the caller's span context goes in the metadata.
    scot_telemetry::inject_current_context(request.metadata_mut());
    request
}

pub fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

//! An error as one line with its causes, the way every scot side reports a failed call: tonic's
//! transport errors and refused TLS handshakes say why only in their causes.

/// `error` and each of its causes, joined by ": ", every text said once (tonic's layers repeat the
/// words of the one below).
pub fn error_chain(error: &dyn std::error::Error) -> String {
    with_causes(error.to_string(), error.source())
}

/// A gRPC status's message (not its debug-like `Display`) and its causes, as [`error_chain`].
pub fn status_chain(status: &tonic::Status) -> String {
    with_causes(
        status.message().to_string(),
        std::error::Error::source(status),
    )
}

fn with_causes(mut text: String, mut cause: Option<&(dyn std::error::Error + 'static)>) -> String {
    while let Some(error) = cause {
        let said = error.to_string();
        if !text.contains(&said) {
            text.push_str(&format!(": {said}"));
        }
        cause = error.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<Layer>>);

    impl std::fmt::Display for Layer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Layer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|l| l as _)
        }
    }

    #[test]
    fn causes_follow_once_each() {
        let inner = Layer("certificate unknown", None);
        let middle = Layer("transport error", Some(Box::new(inner)));
        let top = Layer("health check: transport error", Some(Box::new(middle)));
        assert_eq!(
            error_chain(&top),
            "health check: transport error: certificate unknown"
        );
        assert_eq!(error_chain(&Layer("alone", None)), "alone");
    }

    #[test]
    fn a_status_reads_as_its_message() {
        let status = tonic::Status::unavailable("node gone");
        assert_eq!(status_chain(&status), "node gone");
    }
}

//! Every gRPC method scot's servers route (its services and gRPC health), as request paths: the
//! only values a per-method metric label may take, so a caller cannot grow the label set by inventing
//! paths.

/// The label of every path that is not one of `SERVED_METHODS`.
pub const UNROUTED_METHOD: &str = "unrouted";

pub const SERVED_METHODS: &[&str] = &[
    "/scot.v1.DraftService/Draft",
    "/scot.v1.TargetService/Select",
    "/scot.v1.TargetService/Generate",
    "/scot.v1.CoordinatorService/Solve",
    "/scot.v1.NodeLoadService/Load",
    "/grpc.health.v1.Health/Check",
    "/grpc.health.v1.Health/Watch",
];

/// The metric label of a request path: the path itself when it is routed, else `UNROUTED_METHOD`.
pub fn method_label(path: &str) -> &'static str {
    SERVED_METHODS
        .iter()
        .find(|served| **served == path)
        .copied()
        .unwrap_or(UNROUTED_METHOD)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rpc_of_the_contract_is_listed_and_nothing_else() {
        let generated = include_str!(concat!(env!("OUT_DIR"), "/scot.v1.rs"));
        let proto = include_str!("../scot/v1/scot.proto");
        let rpcs = proto
            .lines()
            .filter(|l| l.trim_start().starts_with("rpc "))
            .count();
        let scot_methods: Vec<&&str> = SERVED_METHODS
            .iter()
            .filter(|m| m.starts_with("/scot.v1."))
            .collect();
        assert_eq!(scot_methods.len(), rpcs);
        for method in scot_methods {
            assert!(
                generated.contains(&format!("\"{method}\"")),
                "{method} is not a generated route"
            );
        }
    }

    #[test]
    fn unknown_paths_share_one_label() {
        assert_eq!(
            method_label("/scot.v1.TargetService/Select"),
            "/scot.v1.TargetService/Select"
        );
        assert_eq!(method_label("/scot.v1.TargetService/Nope"), UNROUTED_METHOD);
        assert_eq!(method_label("/x/y?z"), UNROUTED_METHOD);
    }
}

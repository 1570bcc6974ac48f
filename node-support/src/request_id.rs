//! The request id a node call is logged under: the caller's (the coordinator passes its own on), or a
//! fresh one when the caller sent none.

pub fn request_id(given: &str) -> String {
    if given.is_empty() {
        uuid::Uuid::new_v4().to_string()
    } else {
        given.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_callers_id_is_kept_and_a_missing_one_made() {
        assert_eq!(request_id("abc"), "abc");
        let made = request_id("");
        assert_eq!(made.len(), 36);
        assert_ne!(made, request_id(""), "each call gets its own");
    }
}

//! Deterministic stand-ins for what a model would produce: lengths drawn from a seeded log-normal,
//! filler text with one word per simulated token, and the acceptance decision of a request. Everything
//! is a pure function of its inputs so a test can predict the outcome of a simulated run.

/// SplitMix64: a small, good 64-bit mixer (no dependency, stable across platforms).
pub fn mix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// FNV-1a of a string, mixed: a stable hash of request ids.
pub fn hash_str(text: &str) -> u64 {
    let mut h: u64 = 0xCBF2_9CE4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01B3);
    }
    mix64(h)
}

/// A uniform number in (0, 1) from a hash.
fn unit(h: u64) -> f64 {
    ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64
}

/// A log-normal length with the given mean (sigma in log space), from `key`; at least 1.
pub fn lognormal_length(key: u64, mean: f64, sigma: f64) -> usize {
    let u1 = unit(mix64(key));
    let u2 = unit(mix64(key ^ 0x5DEE_CE66_D1CE_4E5B));
    // Box-Muller.
    let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
    let value = mean * (sigma * z - sigma * sigma / 2.0).exp();
    value.round().max(1.0) as usize
}

/// Whether selection accepts a draft for this request: a fixed share `acceptance` of request ids.
pub fn accepts(request_id: &str, acceptance: f64) -> bool {
    unit(hash_str(request_id) ^ 0xACCE_97ED) < acceptance
}

const WORDS: [&str; 16] = [
    "so", "the", "sum", "is", "then", "we", "add", "each", "term", "gives", "check", "value",
    "step", "next", "total", "now",
];

/// `tokens` words of filler text (one word per simulated token), varied by `key`.
pub fn filler_text(key: u64, tokens: usize) -> String {
    let mut text = String::with_capacity(tokens * 5);
    let mut h = mix64(key);
    for i in 0..tokens {
        if i > 0 {
            text.push(' ');
        }
        if i % 16 == 0 {
            h = mix64(h);
        }
        text.push_str(WORDS[((h >> ((i % 16) * 4)) & 15) as usize]);
    }
    text
}

/// Simulated token count of a text: its words.
pub fn token_count(text: &str) -> usize {
    text.split_whitespace().count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_have_the_requested_mean() {
        let n = 20_000;
        let total: usize = (0..n).map(|i| lognormal_length(i, 250.0, 0.9)).sum();
        let mean = total as f64 / n as f64;
        assert!((mean - 250.0).abs() < 10.0, "mean {mean}");
        assert_eq!(
            lognormal_length(7, 250.0, 0.9),
            lognormal_length(7, 250.0, 0.9)
        );
    }

    #[test]
    fn acceptance_share_and_determinism() {
        let accepted = (0..10_000)
            .filter(|i| accepts(&format!("sim-{i}"), 0.85))
            .count();
        assert!((8_300..8_700).contains(&accepted), "{accepted}");
        assert!(accepts("x", 1.0));
        assert!(!accepts("x", 0.0));
    }

    #[test]
    fn filler_has_one_word_per_token() {
        assert_eq!(token_count(&filler_text(3, 37)), 37);
        assert_eq!(filler_text(3, 0), "");
    }
}

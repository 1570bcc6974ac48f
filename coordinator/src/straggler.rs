//! Straggler control (beyond the paper; off by default): stop waiting for drafts once k of them are
//! done, or once every unfinished draft has run past m times the median length of the finished ones.

/// The two switches; both off is the paper's behaviour (wait for every draft).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StragglerPolicy {
    pub select_after_k: Option<u32>,
    pub straggler_ratio: Option<f32>,
}

/// Why drafting stopped before every draft finished.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cutoff {
    /// `k` drafts were done.
    EnoughDrafts { k: u32 },
    /// Every unfinished draft was longer than `ratio` x the median finished length (`median`).
    Stragglers { ratio: f32, median: f32 },
}

impl Cutoff {
    pub fn describe(&self) -> String {
        match self {
            Cutoff::EnoughDrafts { k } => format!("selected after {k} finished drafts"),
            Cutoff::Stragglers { ratio, median } => format!(
                "unfinished drafts passed {ratio} x the median finished length ({median} tokens)"
            ),
        }
    }
}

impl StragglerPolicy {
    /// Whether to stop waiting, given the token counts of the finished drafts and the progress (tokens
    /// so far) of the unfinished ones. `None` while there is no reason to stop early; when nothing is
    /// unfinished drafting is simply over and this returns `None` too.
    pub fn cutoff(&self, finished: &[u32], unfinished: &[u32]) -> Option<Cutoff> {
        if unfinished.is_empty() || finished.is_empty() {
            return None;
        }
        if let Some(k) = self.select_after_k {
            if finished.len() >= k as usize {
                return Some(Cutoff::EnoughDrafts { k });
            }
        }
        if let Some(ratio) = self.straggler_ratio {
            let median = median(finished)?;
            let limit = ratio * median;
            if unfinished.iter().all(|&tokens| tokens as f32 > limit) {
                return Some(Cutoff::Stragglers { ratio, median });
            }
        }
        None
    }
}

fn median(values: &[u32]) -> Option<f32> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let mid = sorted.len() / 2;
    Some(if sorted.len() % 2 == 1 {
        sorted[mid] as f32
    } else {
        (sorted[mid - 1] as f32 + sorted[mid] as f32) / 2.0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_waits_for_everything() {
        let p = StragglerPolicy::default();
        assert_eq!(p.cutoff(&[10, 20], &[10_000]), None);
    }

    #[test]
    fn k_of_n() {
        let p = StragglerPolicy {
            select_after_k: Some(2),
            straggler_ratio: None,
        };
        assert_eq!(p.cutoff(&[10], &[5, 5]), None);
        assert_eq!(
            p.cutoff(&[10, 12], &[5]),
            Some(Cutoff::EnoughDrafts { k: 2 })
        );
        assert_eq!(
            p.cutoff(&[10, 12, 14], &[]),
            None,
            "all done is not a cut-off"
        );
    }

    #[test]
    fn ratio_of_median() {
        let p = StragglerPolicy {
            select_after_k: None,
            straggler_ratio: Some(2.0),
        };
        // median of [100, 200, 300] = 200: cut once every unfinished draft passes 400.
        assert_eq!(p.cutoff(&[100, 200, 300], &[401, 399]), None);
        assert_eq!(
            p.cutoff(&[100, 200, 300], &[401, 500]),
            Some(Cutoff::Stragglers {
                ratio: 2.0,
                median: 200.0
            })
        );
        assert_eq!(median(&[1, 2, 3, 4]), Some(2.5));
        assert_eq!(p.cutoff(&[], &[1000]), None, "needs one finished draft");
    }
}

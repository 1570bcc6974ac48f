//! Answer agreement among drafts: the drafts grouped by equivalent final answer (self-consistency,
//! Wang et al. 2023), and the leading group.

use scot_answers::{answers_equal, extract_answer, stated_answer};

/// The answer a draft votes with: what the grader extracts from a draft that ended on its own; from
/// one cut off (cap, cancellation) only an answer it states as such, since its last number is
/// mid-reasoning.
pub fn draft_answer(text: &str, ended_on_its_own: bool) -> Option<String> {
    if ended_on_its_own {
        extract_answer(text)
    } else {
        stated_answer(text)
    }
}

/// Drafts (by option position, 0-based among the offered drafts) grouped by equivalent answer.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AnswerTally {
    /// (representative answer, positions), groups in order of first appearance.
    groups: Vec<(String, Vec<usize>)>,
}

impl AnswerTally {
    /// Groups `answers` (one per offered draft; `None` = no answer could be extracted, no vote).
    pub fn count(answers: &[Option<String>]) -> Self {
        let mut groups: Vec<(String, Vec<usize>)> = Vec::new();
        for (position, answer) in answers.iter().enumerate() {
            let Some(answer) = answer.as_deref() else {
                continue;
            };
            match groups.iter_mut().find(|(rep, _)| equivalent(rep, answer)) {
                Some((_, members)) => members.push(position),
                None => groups.push((answer.to_string(), vec![position])),
            }
        }
        Self { groups }
    }

    /// Votes of the largest group (0 when no draft has an answer).
    pub fn top_votes(&self) -> u32 {
        self.groups
            .iter()
            .map(|(_, m)| m.len() as u32)
            .max()
            .unwrap_or(0)
    }

    /// The answer and positions of the largest group when it is the only one of its size.
    pub fn leader(&self) -> Option<(&str, &[usize])> {
        let top = self.top_votes() as usize;
        let mut leaders = self.groups.iter().filter(|(_, m)| m.len() == top);
        match (leaders.next(), leaders.next()) {
            (Some((answer, members)), None) if top > 0 => Some((answer.as_str(), members)),
            _ => None,
        }
    }

    /// The leading group's positions when it holds at least `min_votes` drafts.
    pub fn agreement(&self, min_votes: u32) -> Option<&[usize]> {
        self.leader()
            .map(|(_, members)| members)
            .filter(|members| members.len() as u32 >= min_votes.max(1))
    }

    /// How many distinct answers the drafts gave.
    pub fn distinct_answers(&self) -> usize {
        self.groups.len()
    }
}

/// The grader's equivalence, tried both ways round (it normalises its second argument as a gold
/// answer, which is more lenient about forms like `x = 5`).
fn equivalent(a: &str, b: &str) -> bool {
    answers_equal(a, b) || answers_equal(b, a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally(answers: &[Option<&str>]) -> AnswerTally {
        AnswerTally::count(
            &answers
                .iter()
                .map(|a| a.map(str::to_string))
                .collect::<Vec<_>>(),
        )
    }

    #[test]
    fn equivalent_answers_vote_together() {
        let t = tally(&[
            Some("18"),
            Some("18.0"),
            None,
            Some("\\frac{36}{2}"),
            Some("7"),
        ]);
        assert_eq!(t.top_votes(), 3);
        assert_eq!(t.leader(), Some(("18", &[0usize, 1, 3][..])));
        assert_eq!(t.agreement(3), Some(&[0usize, 1, 3][..]));
        assert_eq!(t.agreement(4), None);
        assert_eq!(t.distinct_answers(), 2);
    }

    #[test]
    fn ties_and_silence_have_no_leader() {
        assert_eq!(
            tally(&[Some("1"), Some("2"), Some("2"), Some("1")]).leader(),
            None
        );
        let silent = tally(&[None, None]);
        assert_eq!((silent.leader(), silent.top_votes()), (None, 0));
        assert_eq!(silent.agreement(1), None);
        assert_eq!(tally(&[]).leader(), None);
    }

    #[test]
    fn cut_off_drafts_vote_only_with_a_stated_answer() {
        let text = "Half of 48 is 24, and 48 + 24 = 72, then 72 - 3";
        assert_eq!(draft_answer(text, true).as_deref(), Some("3"));
        assert_eq!(draft_answer(text, false), None);
        let boxed = "so the total is \\boxed{72}. Let me double-check 48";
        assert_eq!(draft_answer(boxed, false).as_deref(), Some("72"));
    }

    #[test]
    fn a_single_draft_leads_alone() {
        let t = tally(&[Some("4")]);
        assert_eq!(t.agreement(1), Some(&[0usize][..]));
        assert_eq!(t.agreement(2), None);
    }
}

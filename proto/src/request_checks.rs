//! The shape checks of the node calls (Draft, Select, Generate), shared by the real nodes and the
//! simulated ones: what any node refuses as INVALID_ARGUMENT before it looks at a model.

use std::collections::HashSet;

use tonic::Status;

use crate::limits::{MAX_DRAFTS, MAX_DRAFT_INDEX};
use crate::v1::{DraftRequest, GenerateRequest, GenerateResume, SelectRequest};

fn check_problem(problem: &str) -> Result<(), Status> {
    if problem.trim().is_empty() {
        return Err(Status::invalid_argument("problem is empty"));
    }
    Ok(())
}

fn check_temperature(temperature: f32) -> Result<(), Status> {
    if !temperature.is_finite() || temperature < 0.0 {
        return Err(Status::invalid_argument(format!(
            "temperature = {temperature}: must be a number >= 0 (0 = greedy)"
        )));
    }
    Ok(())
}

/// A Draft call: a problem, 1 to MAX_DRAFTS distinct indices, sane sampling, a token cap.
pub fn check_draft_request(request: &DraftRequest) -> Result<(), Status> {
    check_problem(&request.problem)?;
    let count = request.draft_indices.len();
    if count == 0 || count > MAX_DRAFTS as usize {
        return Err(Status::invalid_argument(format!(
            "draft_indices must list 1 to {MAX_DRAFTS} drafts, got {count}"
        )));
    }
    let mut seen = HashSet::new();
    for &index in &request.draft_indices {
        if index > MAX_DRAFT_INDEX || !seen.insert(index) {
            return Err(Status::invalid_argument(format!(
                "draft_indices must be distinct and at most {MAX_DRAFT_INDEX}; {index} is not"
            )));
        }
    }
    check_temperature(request.temperature)?;
    if !request.top_p.is_finite() || request.top_p < 0.0 || request.top_p > 1.0 {
        return Err(Status::invalid_argument(format!(
            "top_p = {}: must be in (0, 1] (0 or 1 = off)",
            request.top_p
        )));
    }
    if request.max_tokens == 0 {
        return Err(Status::invalid_argument("max_tokens must be at least 1"));
    }
    Ok(())
}

/// A Select call: a problem, 1 to MAX_DRAFTS drafts, at most one cyclic order per draft.
pub fn check_select_request(request: &SelectRequest) -> Result<(), Status> {
    check_problem(&request.problem)?;
    let n = request.drafts.len();
    if n == 0 || n > MAX_DRAFTS as usize {
        return Err(Status::invalid_argument(format!(
            "drafts must hold 1 to {MAX_DRAFTS} drafts, got {n}"
        )));
    }
    if request.permutations as usize > n {
        return Err(Status::invalid_argument(format!(
            "permutations = {}: at most the number of drafts ({n}); 0 or 1 = the order given",
            request.permutations
        )));
    }
    Ok(())
}

/// A Generate call: a problem, an answer cap, a thinking cap when the target thinks itself.
pub fn check_generate_request(request: &GenerateRequest) -> Result<(), Status> {
    check_problem(&request.problem)?;
    if request.max_answer_tokens == 0 {
        return Err(Status::invalid_argument(
            "max_answer_tokens must be at least 1",
        ));
    }
    if request.accepted_draft.is_none() && request.max_thinking_tokens == 0 {
        return Err(Status::invalid_argument(
            "max_thinking_tokens must be at least 1 when the target thinks itself",
        ));
    }
    if let Some(resume) = &request.resume {
        check_resume(request, resume)?;
    }
    check_temperature(request.temperature)
}

/// A migration's output fits the request it continues: thinking only where the target thinks, answer
/// tokens only once the answer began, neither over its cap. (Token ids are checked against the
/// model's vocabulary on the node.)
fn check_resume(request: &GenerateRequest, resume: &GenerateResume) -> Result<(), Status> {
    let thinking = resume.thinking_tokens.len();
    let answer = resume.answer_tokens.len();
    if request.accepted_draft.is_some() && thinking > 0 {
        return Err(Status::invalid_argument(
            "resume.thinking_tokens: an answer after an accepted draft has no thinking of its own",
        ));
    }
    if thinking > request.max_thinking_tokens as usize {
        return Err(Status::invalid_argument(format!(
            "resume.thinking_tokens: {thinking} tokens exceed max_thinking_tokens {}",
            request.max_thinking_tokens
        )));
    }
    if answer > 0 && !resume.answer_started {
        return Err(Status::invalid_argument(
            "resume.answer_tokens given but resume.answer_started is false",
        ));
    }
    if answer > request.max_answer_tokens as usize {
        return Err(Status::invalid_argument(format!(
            "resume.answer_tokens: {answer} tokens exceed max_answer_tokens {}",
            request.max_answer_tokens
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draft() -> DraftRequest {
        DraftRequest {
            request_id: "r".into(),
            problem: "What is 2+2?".into(),
            draft_indices: vec![0, 3],
            temperature: 0.6,
            top_p: 0.0,
            max_tokens: 100,
            seed: 10,
            ..Default::default()
        }
    }

    #[test]
    fn bad_draft_calls_are_refused() {
        assert!(check_draft_request(&draft()).is_ok());
        let cases = [
            DraftRequest {
                draft_indices: vec![],
                ..draft()
            },
            DraftRequest {
                draft_indices: vec![1, 1],
                ..draft()
            },
            DraftRequest {
                draft_indices: vec![MAX_DRAFT_INDEX + 1],
                ..draft()
            },
            DraftRequest {
                draft_indices: (0..=MAX_DRAFTS).collect(),
                ..draft()
            },
            DraftRequest {
                temperature: f32::NAN,
                ..draft()
            },
            DraftRequest {
                temperature: -1.0,
                ..draft()
            },
            DraftRequest {
                top_p: 1.5,
                ..draft()
            },
            DraftRequest {
                max_tokens: 0,
                ..draft()
            },
            DraftRequest {
                problem: " ".into(),
                ..draft()
            },
        ];
        for case in cases {
            let status = check_draft_request(&case).unwrap_err();
            assert_eq!(status.code(), tonic::Code::InvalidArgument);
        }
    }

    #[test]
    fn bad_select_and_generate_calls_are_refused() {
        let select = SelectRequest {
            problem: "p".into(),
            drafts: vec!["a".into(), "b".into()],
            ..Default::default()
        };
        assert!(check_select_request(&select).is_ok());
        for bad in [
            SelectRequest {
                drafts: vec![],
                ..select.clone()
            },
            SelectRequest {
                permutations: 3,
                ..select.clone()
            },
            SelectRequest {
                problem: "".into(),
                ..select.clone()
            },
        ] {
            assert!(check_select_request(&bad).is_err());
        }
        let generate = GenerateRequest {
            problem: "p".into(),
            max_thinking_tokens: 10,
            max_answer_tokens: 10,
            ..Default::default()
        };
        assert!(check_generate_request(&generate).is_ok());
        for bad in [
            GenerateRequest {
                max_answer_tokens: 0,
                ..generate.clone()
            },
            GenerateRequest {
                max_thinking_tokens: 0,
                ..generate.clone()
            },
            GenerateRequest {
                temperature: -0.5,
                ..generate.clone()
            },
        ] {
            assert!(check_generate_request(&bad).is_err());
        }
        let resumed = |thinking: usize, answer_started: bool, answer: usize| GenerateRequest {
            resume: Some(GenerateResume {
                thinking_tokens: vec![1; thinking],
                answer_started,
                answer_tokens: vec![1; answer],
            }),
            ..generate.clone()
        };
        assert!(check_generate_request(&resumed(10, true, 10)).is_ok());
        for (bad, why) in [
            (resumed(11, false, 0), "exceed max_thinking_tokens"),
            (resumed(3, false, 2), "answer_started is false"),
            (resumed(3, true, 11), "exceed max_answer_tokens"),
            (
                GenerateRequest {
                    accepted_draft: Some("d".into()),
                    ..resumed(1, false, 0)
                },
                "no thinking of its own",
            ),
        ] {
            let status = check_generate_request(&bad).unwrap_err();
            assert!(status.message().contains(why), "{status:?}");
        }
        let after_draft = GenerateRequest {
            accepted_draft: Some("d".into()),
            max_thinking_tokens: 0,
            ..generate
        };
        assert!(check_generate_request(&after_draft).is_ok());
    }
}

//! The gate's outputs by name, as the conversation cases in
//! `tests/data/gate/cases.yaml` and `tests/data/understanding/cases.yaml`
//! list them.

use voicegate::gate::Output;

/// The name a case's `expect:` uses for `output`.
pub fn name(output: &Output) -> &'static str {
    match output {
        Output::Intent(_) => "intent",
        Output::RunLow(_) => "run_low",
        Output::ConfirmRequest { .. } => "confirm_request",
        Output::Reprompt { .. } => "reprompt",
        Output::RunHigh { .. } => "run_high",
        Output::Declined { .. } => "declined",
        Output::Expired { .. } => "expired",
        Output::Superseded { .. } => "superseded",
        Output::Refused { .. } => "refused",
        Output::NotUnderstood { .. } => "not_understood",
        Output::Ask { .. } => "ask",
        Output::DidYouMean { .. } => "did_you_mean",
        Output::Say(_) => "say",
    }
}

//! Katib's condition bookkeeping, reasons and messages.
//!
//! Conditions are a list keyed by type. Setting a condition whose status, reason and
//! message are unchanged is a no-op; when the status is unchanged `lastTransitionTime`
//! is kept; the updated condition moves to the end, so the last element is always the
//! most recently changed one (Katib's printer columns and SDK read `conditions[-1]`).

use crate::crd::Condition;

/// Condition types of an Experiment.
pub mod experiment {
    pub const CREATED: &str = "Created";
    pub const RUNNING: &str = "Running";
    pub const RESTARTING: &str = "Restarting";
    pub const SUCCEEDED: &str = "Succeeded";
    pub const FAILED: &str = "Failed";

    pub const REASON_CREATED: &str = "ExperimentCreated";
    pub const REASON_RUNNING: &str = "ExperimentRunning";
    pub const REASON_RESTARTING: &str = "ExperimentRestarting";
    pub const REASON_GOAL_REACHED: &str = "ExperimentGoalReached";
    pub const REASON_MAX_TRIALS_REACHED: &str = "ExperimentMaxTrialsReached";
    /// Defined but never emitted by Katib; katib-rs emits it when the search space is exhausted.
    pub const REASON_SUGGESTION_END_REACHED: &str = "ExperimentSuggestionEndReached";
    pub const REASON_FAILED: &str = "ExperimentFailed";

    pub const MSG_CREATED: &str = "Experiment is created";
    pub const MSG_RUNNING: &str = "Experiment is running";
    pub const MSG_RESTARTING: &str = "Experiment is restarted";
    pub const MSG_GOAL_REACHED: &str = "Experiment has succeeded because Objective goal has reached";
    pub const MSG_MAX_FAILED_REACHED: &str = "Experiment has failed because max failed count has reached";
    pub const MSG_MAX_TRIALS_REACHED: &str = "Experiment has succeeded because max trial count has reached";
    pub const MSG_SUGGESTION_FAILED: &str = "Suggestion has failed";
}

/// Condition types of a Trial.
pub mod trial {
    pub const CREATED: &str = "Created";
    pub const RUNNING: &str = "Running";
    pub const SUCCEEDED: &str = "Succeeded";
    pub const KILLED: &str = "Killed";
    pub const FAILED: &str = "Failed";
    pub const METRICS_UNAVAILABLE: &str = "MetricsUnavailable";
    pub const EARLY_STOPPED: &str = "EarlyStopped";

    pub const REASON_CREATED: &str = "TrialCreated";
    pub const REASON_RUNNING: &str = "TrialRunning";
    pub const REASON_SUCCEEDED: &str = "TrialSucceeded";
    pub const REASON_METRICS_UNAVAILABLE: &str = "MetricsUnavailable";
    pub const REASON_FAILED: &str = "TrialFailed";
    pub const REASON_KILLED: &str = "TrialKilled";
    pub const REASON_EARLY_STOPPED: &str = "TrialEarlyStopped";

    pub const MSG_CREATED: &str = "Trial is created";
    pub const MSG_RUNNING: &str = "Trial is running";
    pub const MSG_SUCCEEDED: &str = "Trial has succeeded";
    pub const MSG_METRICS_UNAVAILABLE: &str = "Metrics are not available";
    pub const MSG_FAILED: &str = "Trial has failed";
    pub const MSG_EARLY_STOPPED: &str = "Trial is early stopped";
}

/// Sets (or updates) the condition `type_` following Katib's rules; `now` is RFC 3339.
pub fn set(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
    now: &str,
) {
    let status = if status { "True" } else { "False" };
    let mut transition = now.to_string();
    if let Some(pos) = conditions.iter().position(|c| c.type_ == type_) {
        let old = &conditions[pos];
        if old.status == status && old.reason == reason && old.message == message {
            return;
        }
        if old.status == status
            && let Some(t) = &old.last_transition_time
        {
            transition = t.clone();
        }
        conditions.remove(pos);
    }
    conditions.push(Condition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: reason.to_string(),
        message: message.to_string(),
        last_update_time: Some(now.to_string()),
        last_transition_time: Some(transition),
    });
}

/// True when a condition of `type_` is present with status "True".
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    conditions.iter().any(|c| c.type_ == type_ && c.status == "True")
}

/// The condition of `type_`, if present.
pub fn get<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Marks a terminal condition the way Katib does: an existing `Running` condition is first
/// flipped to False (keeping its reason and message).
pub fn set_terminal(conditions: &mut Vec<Condition>, type_: &str, reason: &str, message: &str, now: &str) {
    if let Some(running) = get(conditions, experiment::RUNNING).cloned()
        && running.status == "True"
    {
        set(
            conditions,
            experiment::RUNNING,
            false,
            &running.reason,
            &running.message,
            now,
        );
    }
    set(conditions, type_, true, reason, message, now);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unchanged_condition_is_a_no_op_and_changed_moves_to_end() {
        let mut c = Vec::new();
        set(&mut c, "Created", true, "R", "m", "t1");
        set(&mut c, "Running", true, "R2", "m2", "t2");
        set(&mut c, "Created", true, "R", "m", "t3");
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].last_update_time.as_deref(), Some("t1"));
        assert_eq!(c[1].type_, "Running");

        // Same status, new message: transition time kept, moved to the end.
        set(&mut c, "Created", true, "R", "other", "t4");
        assert_eq!(c[1].type_, "Created");
        assert_eq!(c[1].last_transition_time.as_deref(), Some("t1"));
        assert_eq!(c[1].last_update_time.as_deref(), Some("t4"));
    }

    #[test]
    fn terminal_flips_running_to_false() {
        let mut c = Vec::new();
        set(
            &mut c,
            "Running",
            true,
            "ExperimentRunning",
            "Experiment is running",
            "t1",
        );
        set_terminal(&mut c, "Succeeded", "ExperimentMaxTrialsReached", "done", "t2");
        let running = get(&c, "Running").unwrap();
        assert_eq!(running.status, "False");
        assert_eq!(running.reason, "ExperimentRunning");
        assert_eq!(c.last().unwrap().type_, "Succeeded");
        assert!(is_true(&c, "Succeeded"));
        assert!(!is_true(&c, "Running"));
    }
}

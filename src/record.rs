//! Tees the local runtime's events to the progress display and to the experiment store
//! (through the UI's [`Recorder`], which also publishes them for live pages).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use katib_api::crd::{Experiment, Trial};
use katib_controller::local::runner::Event;
use katib_ui::record::Recorder;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// How often at most the store (and live pages) get the run's state. Each write carries the
/// whole experiment, whose status lists every trial by name, so writing on every event made
/// a run of `n` trials write O(n^2) bytes; a few writes a second is all a page can show.
const FLUSH_EVERY: Duration = Duration::from_millis(250);

/// What arrived since the last write: the latest experiment and the latest snapshot of each
/// trial, in the order first seen (the recorder numbers them).
#[derive(Default)]
struct Pending {
    experiment: bool,
    trials: Vec<Trial>,
    at: HashMap<String, usize>,
}

impl Pending {
    fn is_empty(&self) -> bool {
        !self.experiment && self.trials.is_empty()
    }

    /// Empties it, keeping the allocations: a flush's worth of trial snapshots is hundreds
    /// of kilobytes, and growing a fresh vector to that size after every flush meant fresh
    /// pages each time.
    fn clear(&mut self) {
        self.experiment = false;
        self.trials.clear();
        self.at.clear();
    }

    fn trial(&mut self, trial: Trial) {
        let name = trial.metadata.name.clone().unwrap_or_default();
        match self.at.get(&name) {
            Some(&i) => self.trials[i] = trial,
            None => {
                self.at.insert(name, self.trials.len());
                self.trials.push(trial);
            }
        }
    }
}

/// Forwards every event to `progress` at once, and writes snapshots through `recorder` at
/// most every [`FLUSH_EVERY`] (one experiment write and one trial transaction each time),
/// plus a last write when the run ends, so the store always ends with the final state.
pub async fn tee(
    mut rx: mpsc::UnboundedReceiver<Event>,
    progress: Option<mpsc::UnboundedSender<Event>>,
    mut recorder: Option<Recorder>,
    mut experiment: Arc<Experiment>,
) {
    let mut warned = false;
    let mut pending = Pending::default();
    // The first write goes out at once: the run shows up in the UI as soon as it starts.
    let mut next_flush = Instant::now();
    loop {
        let event = tokio::select! {
            event = rx.recv() => event,
            () = tokio::time::sleep_until(next_flush), if !pending.is_empty() => {
                flush(&mut recorder, &experiment, &mut pending, &mut warned).await;
                next_flush = Instant::now() + FLUSH_EVERY;
                continue;
            }
        };
        let Some(event) = event else { break };
        match event {
            Event::Status { experiment: e } => {
                experiment = e.clone();
                pending.experiment = true;
                if let Some(p) = &progress {
                    let _ = p.send(Event::Status { experiment: e });
                }
            }
            // Snapshots are the store's alone (moved, not copied); the display has
            // TrialStarted and TrialFinished.
            Event::Trial { trial } => pending.trial(*trial),
            other => {
                if let Some(p) = &progress {
                    let _ = p.send(other);
                }
            }
        }
        if recorder.is_none() {
            pending.clear();
        }
    }
    flush(&mut recorder, &experiment, &mut pending, &mut warned).await;
}

async fn flush(
    recorder: &mut Option<Recorder>,
    experiment: &Experiment,
    pending: &mut Pending,
    warned: &mut bool,
) {
    let Some(rec) = recorder.as_mut() else {
        pending.clear();
        return;
    };
    let mut result = Ok(());
    if pending.experiment {
        result = rec.experiment(experiment).await;
    }
    if result.is_ok() {
        result = rec.trials(experiment, &pending.trials).await;
    }
    pending.clear();
    if let Err(e) = result
        && !*warned
    {
        *warned = true;
        tracing::warn!(error = %crate::run::chain(&e), "cannot record the run for the web UI");
    }
}

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

/// Trial snapshots that are written without waiting for [`FLUSH_EVERY`]: the last write
/// happens after the run's last trial, while nothing else runs, so what it carries is time
/// added to the run; capping what can pile up keeps it short (at a few hundred trials a
/// second, a quarter second gathered a hundred or more).
const FLUSH_TRIALS: usize = 64;

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
        } else if pending.trials.len() >= FLUSH_TRIALS {
            flush(&mut recorder, &experiment, &mut pending, &mut warned).await;
            next_flush = Instant::now() + FLUSH_EVERY;
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

#[cfg(test)]
mod tests {
    use super::*;
    use katib_ui::{Change, Hub};

    fn experiment() -> Experiment {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/random.yaml");
        katib_api::validate::load_and_validate(&path).expect("examples/random.yaml")
    }

    fn trial(exp: &Experiment, i: usize) -> Trial {
        katib_controller::core::trial::new_trial(
            exp,
            format!("random-example-{i:04}"),
            Vec::new(),
            Default::default(),
            None,
        )
    }

    /// The next write's trial rows (skipping experiment writes).
    async fn next_trial_write(changes: &mut tokio::sync::broadcast::Receiver<Change>) -> usize {
        loop {
            match changes.recv().await.expect("a change") {
                Change::Trials { rows, .. } => return rows.len(),
                _ => continue,
            }
        }
    }

    /// Snapshots that pile up are written [`FLUSH_TRIALS`] at a time, without waiting for
    /// [`FLUSH_EVERY`]; the rest go with the last write. All events are queued before the
    /// recorder runs (one thread), so only a pause of a quarter second between two events
    /// could split them otherwise.
    #[tokio::test]
    async fn piled_up_trial_snapshots_are_written_without_waiting_for_the_interval() {
        let (store, _) = katib_db_manager::experiments::open_experiment_store("sqlite::memory:")
            .await
            .expect("store");
        let exp = experiment();
        let hub = Hub::default();
        let mut changes = hub.subscribe();
        let recorder = Recorder::new(store.clone(), hub, None);
        let (tx, rx) = mpsc::unbounded_channel();
        let tee = tokio::spawn(tee(rx, None, Some(recorder), Arc::new(exp.clone())));

        let extra = 10;
        for i in 0..FLUSH_TRIALS + extra {
            tx.send(Event::Trial {
                trial: Box::new(trial(&exp, i)),
            })
            .expect("send");
        }
        assert_eq!(next_trial_write(&mut changes).await, FLUSH_TRIALS);
        drop(tx);
        assert_eq!(next_trial_write(&mut changes).await, extra);
        tee.await.expect("tee");
        let name = exp.metadata.name.clone().expect("name");
        let namespace = katib_ui::record::namespace_of(&exp.metadata);
        let stored = store.trial_rows(&namespace, &name).await.expect("rows");
        assert_eq!(stored.len(), FLUSH_TRIALS + extra);
    }
}

//! Tees the local runtime's events to the progress display and to the experiment store
//! (through the UI's [`Recorder`], which also publishes them for live pages).

use std::collections::HashMap;

use katib_api::crd::{Experiment, Trial};
use katib_controller::local::runner::Event;
use katib_ui::record::Recorder;
use tokio::sync::mpsc;

/// Forwards every event to `progress` and writes snapshots through `recorder`, coalescing
/// what arrived together into one experiment write and one trial transaction.
pub async fn tee(
    mut rx: mpsc::UnboundedReceiver<Event>,
    progress: Option<mpsc::UnboundedSender<Event>>,
    mut recorder: Option<Recorder>,
    mut experiment: Experiment,
) {
    let mut warned = false;
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
        }
        let mut exp_changed = false;
        // Latest snapshot per trial, in the order first seen (the recorder numbers them).
        let mut trials: Vec<Trial> = Vec::new();
        let mut at: HashMap<String, usize> = HashMap::new();
        for ev in batch {
            match &ev {
                Event::Status { experiment: e } => {
                    experiment = (**e).clone();
                    exp_changed = true;
                }
                Event::Trial { trial } => {
                    let name = trial.metadata.name.clone().unwrap_or_default();
                    match at.get(&name) {
                        Some(&i) => trials[i] = (**trial).clone(),
                        None => {
                            at.insert(name, trials.len());
                            trials.push((**trial).clone());
                        }
                    }
                }
                _ => {}
            }
            if let Some(p) = &progress
                && !matches!(ev, Event::Trial { .. })
            {
                let _ = p.send(ev);
            }
        }
        let Some(rec) = recorder.as_mut() else { continue };
        let mut result = Ok(());
        if exp_changed {
            result = rec.experiment(&experiment).await;
        }
        if result.is_ok() {
            result = rec.trials(&experiment, &trials).await;
        }
        if let Err(e) = result
            && !warned
        {
            warned = true;
            tracing::warn!(error = %crate::run::chain(&e), "cannot record the run for the web UI");
        }
    }
}

//! The reload thread: watches the intent files, loads a changed set that
//! checks clean (with its transcription grammar, built here, off the
//! runtime) and sends it to the coordinator; a set with errors is reported
//! and the running one kept.

use super::*;
use crate::intent::ListDef;
use std::collections::HashMap;

/// Newest modification time of the intent files (or `None` if unreadable).
pub(super) fn intents_stamp(dir: &Path) -> Option<SystemTime> {
    let files = crate::intent::load::read_dir(dir).ok()?;
    files
        .iter()
        .filter_map(|f| std::fs::metadata(&f.path).and_then(|m| m.modified()).ok())
        .max()
}

/// Watches the intent files; a change that checks clean is loaded (with
/// `lists`, the catalogue's, as at start), one with errors is reported
/// (with file:line:col) and the running set kept.
///
/// With `grammar` (the transcription grammar in use, as a template), a set
/// that loads is sent with its own grammar, built here like the template
/// (same options and penalty): building it is heavy work, kept off the
/// coordinator's runtime.
pub(super) fn spawn_reload(
    dir: PathBuf,
    lists: HashMap<String, ListDef>,
    grammar: Option<SttGrammar>,
    tx: mpsc::Sender<Input>,
) -> Result<(), AppError> {
    // Taken before the thread starts, so a change made right after this
    // returns is seen as one.
    let mut stamp = intents_stamp(&dir);
    thread::Builder::new()
        .name("voicegate-reload".into())
        .spawn(move || {
            loop {
                thread::sleep(StdDuration::from_secs(1));
                if tx.is_closed() {
                    return;
                }
                let now = intents_stamp(&dir);
                if now == stamp {
                    continue;
                }
                stamp = now;
                let input = match IntentSet::load_path(&dir, &lists) {
                    Ok((set, diags)) => {
                        let errors: Vec<String> = diags
                            .iter()
                            .filter(|d| d.is_error())
                            .map(|d| d.to_string())
                            .collect();
                        if errors.is_empty() {
                            let rebuilt = grammar.as_ref().map(|g| g.rebuilt(&set));
                            Input::Reload(Box::new(set), rebuilt)
                        } else {
                            Input::ReloadFailed(errors.join("\n\n"))
                        }
                    }
                    Err(e) => Input::ReloadFailed(e.to_string()),
                };
                if tx.blocking_send(input).is_err() {
                    return;
                }
            }
        })
        .map_err(AppError::Output)?;
    Ok(())
}

//! Command: an action's kind and slots decoded into a [`MusicCommand`].
//!
//! Exists so that the rest of the module (and its tests) work on plain
//! typed data: the slot map is read here, once, and nowhere else.

use super::*;

/// One music request, decoded from an intent's action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MusicCommand {
    /// Replace the queue with songs by this artist (as spoken).
    PlayArtist(String),
    /// Replace the queue with this album, in track order.
    PlayAlbum(String),
    /// Replace the queue with songs of this genre.
    PlayGenre(String),
    /// Replace the queue with this stored playlist.
    PlayPlaylist(String),
    /// Free search: artist, album, title or any tag.
    PlayQuery(String),
    /// Several things said together ("X by Y", "jazz from the fifties"),
    /// or a song title or year: songs matching all of them.
    PlaySearch(MusicSearch),
    /// Pause playback.
    Pause,
    /// Resume paused (or start stopped) playback.
    Resume,
    /// Skip to the next song.
    Next,
    /// Go back to the previous song.
    Previous,
    /// Set the volume (0-100; larger values are treated as 100).
    SetVolume(u8),
    /// Raise the volume by this many points.
    VolumeUp(u8),
    /// Lower the volume by this many points.
    VolumeDown(u8),
}

/// What a play request said, when it said more than one thing (or a song
/// title, or a year): every part given narrows the search.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MusicSearch {
    /// Artist or album artist, as spoken.
    pub artist: Option<String>,
    /// Album title, as spoken.
    pub album: Option<String>,
    /// Song title as spoken; tried as an album title too when no album was
    /// named ("play Nevermind by Nirvana").
    pub track: Option<String>,
    /// Genre.
    pub genre: Option<String>,
    /// A year ("1958") or a decade ("1980s").
    pub year: Option<String>,
    /// Free words, searched in any tag.
    pub query: Option<String>,
}

impl MusicSearch {
    /// The parts in words, for answers: "So What by Miles Davis".
    pub fn describe(&self) -> String {
        let mut text = String::new();
        let title = self.track.as_ref().or(self.album.as_ref());
        for part in [title, self.query.as_ref(), self.genre.as_ref()]
            .into_iter()
            .flatten()
        {
            if !text.is_empty() {
                text.push(' ');
            }
            text.push_str(part);
        }
        if let Some(artist) = &self.artist {
            if text.is_empty() {
                text = format!("music by {artist}");
            } else {
                text = format!("{text} by {artist}");
            }
        }
        if let Some(year) = &self.year {
            if text.is_empty() {
                text = format!("music from {year}");
            } else {
                text = format!("{text} from {year}");
            }
        }
        text
    }
}

impl MusicCommand {
    /// Decodes an action: `kind` is the executor name from the intent file
    /// (`music.play`, `music.pause`, `music.resume`, `music.next`,
    /// `music.previous`, `music.volume` or `music.volume_set`,
    /// `music.volume_up`, `music.volume_down`) and `slots` its slot values.
    ///
    /// `music.play` needs exactly one of the slots `artist`, `album`, `genre`,
    /// `playlist`, `query`. `music.volume` needs `volume` (a JSON number or a
    /// numeric string), clamped to 0-100. The volume steps take an optional
    /// `step` slot (default [`DEFAULT_VOLUME_STEP`]).
    pub fn from_action(kind: &str, slots: &Map<String, Value>) -> Result<Self, MusicError> {
        match kind.parse() {
            Ok(kind) => Self::from_kind(kind, slots),
            Err(_) => Err(not_music(kind)),
        }
    }

    /// [`MusicCommand::from_action`] for a kind already parsed (what the
    /// pipeline calls).
    pub fn from_kind(kind: ActionKind, slots: &Map<String, Value>) -> Result<Self, MusicError> {
        match kind {
            ActionKind::MusicPlay => Self::play_from_slots(slots),
            ActionKind::MusicPause => Ok(MusicCommand::Pause),
            ActionKind::MusicResume => Ok(MusicCommand::Resume),
            ActionKind::MusicNext => Ok(MusicCommand::Next),
            ActionKind::MusicPrevious => Ok(MusicCommand::Previous),
            ActionKind::MusicVolume | ActionKind::MusicVolumeSet => {
                let value = slots.get("volume").ok_or_else(|| {
                    MusicError::InvalidCommand(format!("{kind} needs a `volume` slot"))
                })?;
                let level = number_slot(value).ok_or_else(|| {
                    MusicError::InvalidCommand(format!("volume {value} is not a number"))
                })?;
                Ok(MusicCommand::SetVolume(clamp_percent(level)))
            }
            ActionKind::MusicVolumeUp | ActionKind::MusicVolumeDown => {
                let step = match slots.get("step") {
                    None | Some(Value::Null) => DEFAULT_VOLUME_STEP,
                    Some(value) => {
                        let step = number_slot(value).ok_or_else(|| {
                            MusicError::InvalidCommand(format!("step {value} is not a number"))
                        })?;
                        clamp_percent(step).max(1)
                    }
                };
                if kind == ActionKind::MusicVolumeUp {
                    Ok(MusicCommand::VolumeUp(step))
                } else {
                    Ok(MusicCommand::VolumeDown(step))
                }
            }
            other => Err(not_music(other.as_str())),
        }
    }

    pub(super) fn play_from_slots(slots: &Map<String, Value>) -> Result<Self, MusicError> {
        let mut found: Vec<(&str, String)> = Vec::new();
        for name in PLAY_SLOTS {
            let text = match slots.get(name) {
                Some(Value::String(s)) => clean_text(s),
                Some(Value::Number(n)) => n.to_string(),
                _ => String::new(),
            };
            if !text.is_empty() {
                found.push((name, text));
            }
        }
        let names = || {
            let names: Vec<&str> = found.iter().map(|(name, _)| *name).collect();
            names.join(", ")
        };
        // A playlist is played as stored: nothing narrows it.
        if found.is_empty() || (found.len() > 1 && found.iter().any(|(n, _)| *n == "playlist")) {
            return Err(MusicError::InvalidCommand(format!(
                "music.play needs a playlist alone, or some of artist, album, track, genre, year, query; got [{}]",
                names()
            )));
        }
        if let [(name, text)] = found.as_slice() {
            let text = text.clone();
            match *name {
                "artist" => return Ok(MusicCommand::PlayArtist(text)),
                "album" => return Ok(MusicCommand::PlayAlbum(text)),
                "genre" => return Ok(MusicCommand::PlayGenre(text)),
                "playlist" => return Ok(MusicCommand::PlayPlaylist(text)),
                "query" => return Ok(MusicCommand::PlayQuery(text)),
                _ => {}
            }
        }
        let mut search = MusicSearch::default();
        for (name, text) in found {
            let field = match name {
                "artist" => &mut search.artist,
                "album" => &mut search.album,
                "track" => &mut search.track,
                "genre" => &mut search.genre,
                "year" => &mut search.year,
                _ => &mut search.query,
            };
            *field = Some(text);
        }
        Ok(MusicCommand::PlaySearch(search))
    }

    /// Whether running the command twice has the same effect as once, so it
    /// may be retried after a connection dropped mid-way.
    pub(super) fn is_retry_safe(&self) -> bool {
        !matches!(
            self,
            MusicCommand::Next
                | MusicCommand::Previous
                | MusicCommand::VolumeUp(_)
                | MusicCommand::VolumeDown(_)
        )
    }
}

/// The value of a JSON number or numeric string, rounded.
pub(super) fn number_slot(value: &Value) -> Option<i64> {
    let number = match value {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => s.trim().trim_end_matches('%').trim().parse::<f64>().ok()?,
        _ => return None,
    };
    number.is_finite().then(|| number.round() as i64)
}

pub(super) fn clamp_percent(value: i64) -> u8 {
    // The clamp makes the cast lossless.
    value.clamp(0, 100) as u8
}

fn not_music(kind: &str) -> MusicError {
    MusicError::InvalidCommand(format!("`{kind}` is not a music action"))
}

//! Phrasing: what music answers say.
//!
//! Exists so that the sentences (tag spelling over the words heard, "not
//! found" per kind of search) are in one place, apart from the protocol.

use super::*;

pub(super) fn not_found_message(kind: SearchKind, name: &str) -> String {
    match kind {
        SearchKind::Artist => format!("I couldn't find any music by {name}"),
        SearchKind::Album => format!("I couldn't find the album {name}"),
        SearchKind::Genre => format!("I couldn't find any {name} music"),
        SearchKind::Playlist => format!("I couldn't find a playlist called {name}"),
        SearchKind::Query => format!("I couldn't find anything matching {name}"),
    }
}

/// Words the reply to a play request from what was said and what was found.
pub(super) type Sentence = fn(&str, &[Track]) -> String;

pub(super) fn artist_sentence(spoken: &str, tracks: &[Track]) -> String {
    let artist = single_value(tracks, Track::main_artist).unwrap_or(spoken);
    format!("Playing music by {artist}.")
}

pub(super) fn album_sentence(spoken: &str, tracks: &[Track]) -> String {
    let album = single_value(tracks, |t| t.album.as_deref()).unwrap_or(spoken);
    match single_value(tracks, Track::main_artist) {
        Some(artist) => format!("Playing the album {album} by {artist}."),
        None => format!("Playing the album {album}."),
    }
}

pub(super) fn songs_sentence(spoken: &str, tracks: &[Track]) -> String {
    match tracks {
        [only] => format!("Playing {}.", only.describe()),
        _ => format!("Playing {} songs matching {spoken}.", tracks.len()),
    }
}

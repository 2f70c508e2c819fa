//! Search: finding the songs the user meant and queueing them.
//!
//! Exists because people say "miles davis" and tags say "Miles Davis":
//! filter expressions (escaped here, not by `mpd_client`), exact-then-
//! contains searches, sorting and de-duplicating tracks, and deciding what a
//! free query named all live here, apart from the connection handling.

use super::*;

/// The filter expression `(tag op "value")`, escaped for mpd's filter
/// parser. Built here because `mpd_client::filter::Filter` escapes quotes
/// in values wrongly and does not escape backslashes. The expression is
/// then sent as an ordinary (quoted, escaped) argument.
pub(super) fn filter_expr(tag: &str, op: &str, value: &str) -> String {
    let escaped = value.replace('\\', "\\\\").replace('"', "\\\"");
    format!("({tag} {op} \"{escaped}\")")
}

/// All of `exprs` (an `AND` needs at least two; one is used as it is).
pub(super) fn all_of(exprs: &[String]) -> String {
    match exprs {
        [one] => one.clone(),
        _ => format!("({})", exprs.join(" AND ")),
    }
}

/// One song from a search or `currentsong`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Track {
    pub(super) file: String,
    pub(super) artist: Option<String>,
    pub(super) album_artist: Option<String>,
    pub(super) album: Option<String>,
    pub(super) title: Option<String>,
    pub(super) disc: u32,
    pub(super) track: u32,
}

impl Track {
    /// Album artist if tagged, else artist.
    pub(super) fn main_artist(&self) -> Option<&str> {
        self.album_artist.as_deref().or(self.artist.as_deref())
    }

    /// "Title by Artist", or whatever part is known, or the file name.
    pub(super) fn describe(&self) -> String {
        match (self.title.as_deref(), self.artist.as_deref()) {
            (Some(title), Some(artist)) => format!("{title} by {artist}"),
            (Some(title), None) => title.to_string(),
            _ => self
                .file
                .rsplit('/')
                .next()
                .unwrap_or(&self.file)
                .to_string(),
        }
    }
}

/// Reads songs from `key: value` pairs; each song starts at `file`.
pub(super) fn parse_tracks<'a>(fields: impl IntoIterator<Item = (&'a str, &'a str)>) -> Vec<Track> {
    let mut tracks = Vec::new();
    let mut current: Option<Track> = None;
    for (key, value) in fields {
        if key == "file" {
            tracks.extend(current.take());
            current = Some(Track {
                file: value.to_string(),
                disc: u32::MAX,
                track: u32::MAX,
                ..Track::default()
            });
            continue;
        }
        let Some(track) = current.as_mut() else {
            continue;
        };
        // Multi-valued tags repeat the key; the first value wins.
        let first = |slot: &mut Option<String>| {
            if slot.is_none() {
                *slot = Some(value.to_string());
            }
        };
        match key {
            "Artist" => first(&mut track.artist),
            "AlbumArtist" => first(&mut track.album_artist),
            "Album" => first(&mut track.album),
            "Title" => first(&mut track.title),
            "Track" if track.track == u32::MAX => track.track = leading_number(value),
            "Disc" if track.disc == u32::MAX => track.disc = leading_number(value),
            _ => {}
        }
    }
    tracks.extend(current);
    tracks
}

/// `3/12` → 3; no digits → `u32::MAX` (sorts last).
pub(super) fn leading_number(text: &str) -> u32 {
    let digits: String = text
        .trim()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().unwrap_or(u32::MAX)
}

/// Library order: artist, album, disc, track, file.
pub(super) fn sort_tracks(tracks: &mut [Track]) {
    tracks.sort_by_cached_key(|t| {
        (
            normalize(t.main_artist().unwrap_or("")),
            normalize(t.album.as_deref().unwrap_or("")),
            t.disc,
            t.track,
            t.file.clone(),
        )
    });
}

/// Keeps the first of each file, in order.
pub(super) fn dedup_tracks(tracks: Vec<Track>) -> Vec<Track> {
    let mut seen = std::collections::HashSet::new();
    tracks
        .into_iter()
        .filter(|t| seen.insert(t.file.clone()))
        .collect()
}

/// Spoken text made safe for the protocol: control characters become
/// spaces, runs of whitespace collapse, ends are trimmed.
pub(super) fn clean_text(text: &str) -> String {
    text.split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// For comparing what was said with what is tagged.
pub(super) fn normalize(text: &str) -> String {
    clean_text(text).to_lowercase()
}

/// What a free query turned out to name.
pub(super) enum QueryMatch {
    Artist(Vec<Track>),
    Album(Vec<Track>),
    Title(Vec<Track>),
    Any(Vec<Track>),
}

/// Decides what a query meant, from the songs where any tag contains it:
/// an artist if some artist is exactly the query, else an album, else a
/// title, else all of them.
pub(super) fn classify_query(query: &str, tracks: Vec<Track>) -> QueryMatch {
    let wanted = normalize(query);
    let is = |field: Option<&str>| field.is_some_and(|v| normalize(v) == wanted);
    let pick = |test: &dyn Fn(&Track) -> bool| -> Vec<Track> {
        tracks.iter().filter(|t| test(t)).cloned().collect()
    };
    let by_artist = pick(&|t| is(t.artist.as_deref()) || is(t.album_artist.as_deref()));
    if !by_artist.is_empty() {
        return QueryMatch::Artist(by_artist);
    }
    let by_album = pick(&|t| is(t.album.as_deref()));
    if !by_album.is_empty() {
        return QueryMatch::Album(by_album);
    }
    let by_title = pick(&|t| is(t.title.as_deref()));
    if !by_title.is_empty() {
        return QueryMatch::Title(by_title);
    }
    QueryMatch::Any(tracks)
}

/// Chooses a stored playlist: exact name, else case-insensitive name, else
/// the only one containing the words.
pub(super) fn pick_playlist<'a>(wanted: &str, names: &'a [String]) -> Option<&'a str> {
    if let Some(exact) = names.iter().find(|n| n.as_str() == wanted) {
        return Some(exact);
    }
    let wanted = normalize(wanted);
    if let Some(name) = names.iter().find(|n| normalize(n) == wanted) {
        return Some(name);
    }
    let mut containing = names.iter().filter(|n| normalize(n).contains(&wanted));
    match (containing.next(), containing.next()) {
        (Some(only), None) => Some(only),
        _ => None,
    }
}

/// The one distinct value of `field` among `tracks`, if there is exactly one
/// (compared case-insensitively).
pub(super) fn single_value<'a>(
    tracks: &'a [Track],
    field: impl Fn(&'a Track) -> Option<&'a str>,
) -> Option<&'a str> {
    let mut values = tracks.iter().filter_map(&field);
    let first = values.next()?;
    let key = normalize(first);
    values.all(|v| normalize(v) == key).then_some(first)
}

/// The mpd filter for a year ("1958": the date contains it) or a decade
/// ("1980s": the date contains "198"); dates are tagged "1985" or
/// "1985-03-01".
fn year_filter(year: &str) -> String {
    let digits: String = year.chars().filter(char::is_ascii_digit).collect();
    let decade = year.trim_end().ends_with('s') && digits.len() == 4;
    let wanted = if decade {
        &digits[..3]
    } else {
        digits.as_str()
    };
    filter_expr("date", "contains", wanted)
}

/// The searches for a [`MusicSearch`], tried in order until one finds
/// songs: each is the filters that must all hold. A title is tried as a
/// song's, then as an album's (people say "play Nevermind by Nirvana");
/// an artist as the artist, then as the album artist.
pub(super) fn search_plan(search: &MusicSearch) -> Vec<String> {
    let mut titles: Vec<Option<String>> = Vec::new();
    match &search.track {
        Some(track) => {
            titles.push(Some(filter_expr("title", "contains", track)));
            if search.album.is_none() {
                titles.push(Some(filter_expr("album", "contains", track)));
            }
        }
        None => titles.push(None),
    }
    let artists: Vec<Option<String>> = match &search.artist {
        Some(artist) => ["artist", "albumartist"]
            .iter()
            .map(|tag| Some(filter_expr(tag, "contains", artist)))
            .collect(),
        None => vec![None],
    };
    let mut rest = Vec::new();
    if let Some(album) = &search.album {
        rest.push(filter_expr("album", "contains", album));
    }
    if let Some(genre) = &search.genre {
        rest.push(filter_expr("genre", "contains", genre));
    }
    if let Some(year) = &search.year {
        rest.push(year_filter(year));
    }
    if let Some(query) = &search.query {
        rest.push(filter_expr("any", "contains", query));
    }
    let mut plan = Vec::new();
    for title in &titles {
        for artist in &artists {
            let exprs: Vec<String> = title
                .iter()
                .chain(artist.iter())
                .chain(rest.iter())
                .cloned()
                .collect();
            if !exprs.is_empty() {
                plan.push(all_of(&exprs));
            }
        }
    }
    plan
}

impl Mpd<'_> {
    /// Songs matching everything said; if a title and an artist find
    /// nothing together, the words as one free query ("stand by me" heard
    /// as the song "stand" by "me").
    pub(super) async fn play_search(&self, search: &MusicSearch) -> Result<String, MusicError> {
        let spoken = search.describe();
        for filter in search_plan(search) {
            let mut tracks = self.search(&filter).await?;
            if !tracks.is_empty() {
                sort_tracks(&mut tracks);
                self.play_tracks(&tracks).await?;
                return Ok(songs_sentence(&spoken, &tracks));
            }
        }
        if let Some(track) = &search.track {
            let words = match &search.artist {
                Some(artist) => format!("{track} {artist}"),
                None => track.clone(),
            };
            match self.play_query(&clean_text(&words)).await {
                Err(MusicError::NotFound { .. }) => {}
                other => return other,
            }
        }
        Err(MusicError::NotFound {
            kind: SearchKind::Query,
            name: spoken,
        })
    }

    pub(super) async fn play_artist(&self, name: &str) -> Result<String, MusicError> {
        let not_found = || MusicError::NotFound {
            kind: SearchKind::Artist,
            name: name.to_string(),
        };
        if name.is_empty() {
            return Err(not_found());
        }
        let mut tracks = self
            .search_exact_then_contains(&["artist", "albumartist"], name)
            .await?;
        if tracks.is_empty() {
            return Err(not_found());
        }
        sort_tracks(&mut tracks);
        self.play_tracks(&tracks).await?;
        Ok(artist_sentence(name, &tracks))
    }

    pub(super) async fn play_album(&self, name: &str) -> Result<String, MusicError> {
        let not_found = || MusicError::NotFound {
            kind: SearchKind::Album,
            name: name.to_string(),
        };
        if name.is_empty() {
            return Err(not_found());
        }
        let mut tracks = self.search_exact_then_contains(&["album"], name).await?;
        if tracks.is_empty() {
            return Err(not_found());
        }
        sort_tracks(&mut tracks);
        self.play_tracks(&tracks).await?;
        Ok(album_sentence(name, &tracks))
    }

    pub(super) async fn play_genre(&self, name: &str) -> Result<String, MusicError> {
        let not_found = || MusicError::NotFound {
            kind: SearchKind::Genre,
            name: name.to_string(),
        };
        if name.is_empty() {
            return Err(not_found());
        }
        let mut tracks = self.search_exact_then_contains(&["genre"], name).await?;
        if tracks.is_empty() {
            return Err(not_found());
        }
        sort_tracks(&mut tracks);
        self.play_tracks(&tracks).await?;
        Ok(format!("Playing {} music.", name.to_lowercase()))
    }

    pub(super) async fn play_playlist(&self, name: &str) -> Result<String, MusicError> {
        let not_found = || MusicError::NotFound {
            kind: SearchKind::Playlist,
            name: name.to_string(),
        };
        if name.is_empty() {
            return Err(not_found());
        }
        let frame = self.send(new_command("listplaylists", &[])?).await?;
        let names: Vec<String> = frame
            .fields()
            .filter(|(key, _)| *key == "playlist")
            .map(|(_, value)| value.to_string())
            .collect();
        let chosen = pick_playlist(name, &names).ok_or_else(not_found)?;
        let contents = self.send(new_command("listplaylist", &[chosen])?).await?;
        if !contents.fields().any(|(key, _)| key == "file") {
            return Err(MusicError::NothingToPlay(format!(
                "the playlist {chosen} is empty"
            )));
        }
        self.send_list(vec![
            new_command("clear", &[])?,
            new_command("load", &[chosen])?,
            new_command("play", &["0"])?,
        ])
        .await?;
        Ok(format!("Playing the playlist {chosen}."))
    }

    pub(super) async fn play_query(&self, text: &str) -> Result<String, MusicError> {
        let not_found = || MusicError::NotFound {
            kind: SearchKind::Query,
            name: text.to_string(),
        };
        if text.is_empty() {
            return Err(not_found());
        }
        let mut tracks = self.search_tags(&["any"], "contains", text).await?;
        let words: Vec<String> = text
            .split(' ')
            .map(|word| filter_expr("any", "contains", word))
            .collect();
        if tracks.is_empty() && words.len() > 1 {
            // "smells like spirit": every word somewhere, not the phrase.
            tracks = self.search(&all_of(&words)).await?;
        }
        if tracks.is_empty() {
            return Err(not_found());
        }
        let (mut chosen, sentence): (Vec<Track>, Sentence) = match classify_query(text, tracks) {
            QueryMatch::Artist(t) => (t, artist_sentence),
            QueryMatch::Album(t) => (t, album_sentence),
            QueryMatch::Title(t) => (t, songs_sentence),
            QueryMatch::Any(t) => (t, songs_sentence),
        };
        sort_tracks(&mut chosen);
        self.play_tracks(&chosen).await?;
        Ok(sentence(text, &chosen))
    }
}

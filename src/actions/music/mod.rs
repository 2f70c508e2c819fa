//! Music: the executor for the `music.*` actions, talking to the Music Player
//! Daemon (mpd).
//!
//! Why it exists: the intent engine turns "play some Miles Davis" into a
//! `PlayMusic` intent with an `artist` slot; something has to turn that into
//! mpd protocol commands, find the songs the user meant (people say
//! "miles davis", the tags say "Miles Davis"), and come back with a sentence
//! to say. That is this module.
//!
//! The rest of the program sees only the small synchronous [`MusicPlayer`]
//! trait and the plain-data [`MusicCommand`], so the executor can be replaced
//! by a fake in tests. [`MpdPlayer`] is the real one: it uses the `mpd_client`
//! crate (async, tokio) on a current-thread tokio runtime that lives on a
//! private worker thread. Callers stay synchronous, the player never runs on
//! anyone else's runtime, and the worker keeps driving the connection between
//! commands (so mpd sees an idling client instead of a silent one).
//!
//! Every network step is bounded: connecting by
//! [`MpdConfig::connect_timeout`], each mpd round trip by
//! [`MpdConfig::command_timeout`]. A lost connection (mpd restarted, or it
//! dropped us) is noticed with a `ping` before each command and re-opened.
//!
//! Searching uses mpd's `search` (case-insensitive) with filter expressions
//! built here, not `mpd_client::filter::Filter`, whose escaping of quotes is
//! wrong; see the private `Cmd::arg` for the one argument shape that
//! `mpd_client` cannot send at all. Needs mpd 0.21 or newer (filter
//! expressions).

use std::fmt;
use std::path::PathBuf;
use std::sync::mpsc as std_mpsc;
use std::thread;
use std::time::Duration;

use mpd_client::Client;
use mpd_client::client::CommandError;
use mpd_client::protocol::MpdProtocolError;
use mpd_client::protocol::command::{Command as RawCommand, CommandList as RawCommandList};
use mpd_client::protocol::response::Frame;
use serde_json::{Map, Value};
use thiserror::Error;

use crate::request::ActionKind;
use tokio::sync::mpsc as tokio_mpsc;

/// The action kinds this module executes.
pub const KINDS: &[&str] = &[
    "music.play",
    "music.pause",
    "music.resume",
    "music.next",
    "music.previous",
    "music.volume",
    "music.volume_set",
    "music.volume_up",
    "music.volume_down",
];

/// How far "louder" / "quieter" move the volume when no `step` slot is given.
pub const DEFAULT_VOLUME_STEP: u8 = 10;

/// mpd's standard host.
pub const DEFAULT_HOST: &str = "127.0.0.1";

/// mpd's standard TCP port.
pub const DEFAULT_PORT: u16 = 6600;

/// The slots of `music.play`, in the order they are reported.
const PLAY_SLOTS: [&str; 7] = [
    "artist", "album", "track", "genre", "playlist", "year", "query",
];

/// Songs added to the queue per command list.
const ADD_CHUNK: usize = 200;

/// Anything that can carry out a [`MusicCommand`].
///
/// Synchronous on purpose: executors run on their own threads, and a fake
/// for tests is a plain struct.
pub trait MusicPlayer: Send {
    /// Carries out `cmd`; on success returns the sentence to say.
    fn execute(&mut self, cmd: &MusicCommand) -> Result<String, MusicError>;
}

mod command;
mod phrasing;
mod search;
mod session;

pub use command::{MusicCommand, MusicSearch};
pub use session::{MpdAddress, MpdConfig, MpdPlayer};

use self::{command::*, phrasing::*, search::*, session::*};

/// What a search was looking for; words the user-facing messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchKind {
    /// An artist (or album artist).
    Artist,
    /// An album title.
    Album,
    /// A genre.
    Genre,
    /// A stored playlist.
    Playlist,
    /// A free query over all tags.
    Query,
}

/// Why a music command failed.
#[derive(Debug, Error)]
pub enum MusicError {
    /// The action could not be turned into a [`MusicCommand`].
    #[error("invalid music command: {0}")]
    InvalidCommand(String),
    /// mpd could not be reached or did not complete the handshake.
    #[error("couldn't connect to mpd at {addr}: {reason}")]
    Connect {
        /// `host:port` or socket path.
        addr: String,
        /// What went wrong, in words.
        reason: String,
    },
    /// mpd did not answer a command in time.
    #[error("mpd at {addr} did not answer `{operation}` within {timeout:?}")]
    Timeout {
        /// `host:port` or socket path.
        addr: String,
        /// The mpd command that timed out.
        operation: String,
        /// The limit that was exceeded.
        timeout: Duration,
    },
    /// The connection broke during a command.
    #[error("lost the connection to mpd at {addr} during `{operation}`: {reason}")]
    Disconnected {
        /// `host:port` or socket path.
        addr: String,
        /// The mpd command that was running.
        operation: String,
        /// What went wrong, in words.
        reason: String,
    },
    /// mpd rejected a command or sent a reply we could not use.
    #[error("mpd error on `{command}`: {message}")]
    Protocol {
        /// The mpd command.
        command: String,
        /// mpd's message (or what was wrong with its reply).
        message: String,
    },
    /// Nothing in the library matched.
    #[error("{}", not_found_message(*.kind, .name))]
    NotFound {
        /// What was searched for.
        kind: SearchKind,
        /// The name as the user said it.
        name: String,
    },
    /// mpd's output has no mixer, so the volume cannot be changed.
    #[error("the music player has no volume control (its audio output has no mixer)")]
    NoMixer,
    /// The command needs something playing (or paused), and nothing is.
    #[error("nothing is playing right now")]
    NotPlaying,
    /// There is nothing to play (an empty queue or playlist).
    #[error("there's nothing to play: {0}")]
    NothingToPlay(String),
    /// The player's own worker thread or runtime failed.
    #[error("music player internals: {0}")]
    Runtime(String),
}

impl MusicError {
    /// A sentence to say to the user about this error.
    pub fn user_message(&self) -> String {
        match self {
            MusicError::InvalidCommand(_) => {
                "Sorry, I didn't understand that music request.".to_string()
            }
            MusicError::Connect { .. }
            | MusicError::Timeout { .. }
            | MusicError::Disconnected { .. }
            | MusicError::Runtime(_) => "I can't reach the music player right now.".to_string(),
            MusicError::Protocol { message, .. } => {
                format!("The music player reported a problem: {message}.")
            }
            MusicError::NotFound { kind, name } => format!("{}.", not_found_message(*kind, name)),
            MusicError::NoMixer => "I can't change the volume on this music player.".to_string(),
            MusicError::NotPlaying => "Nothing is playing right now.".to_string(),
            MusicError::NothingToPlay(what) => format!("There's nothing to play: {what}."),
        }
    }

    /// Errors after which the connection must not be reused.
    fn breaks_connection(&self) -> bool {
        matches!(
            self,
            MusicError::Disconnected { .. } | MusicError::Timeout { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn music_kinds_are_the_music_family() {
        let family: Vec<&str> = ActionKind::all()
            .filter(|k| k.family() == crate::request::kind::Family::Music)
            .map(ActionKind::as_str)
            .collect();
        assert_eq!(KINDS, family.as_slice());
    }
    use serde_json::json;

    fn slots(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => panic!("slots must be an object"),
        }
    }

    fn track(file: &str, artist: &str, album: &str, title: &str, number: u32) -> Track {
        Track {
            file: file.to_string(),
            artist: Some(artist.to_string()),
            album_artist: None,
            album: Some(album.to_string()),
            title: Some(title.to_string()),
            disc: u32::MAX,
            track: number,
        }
    }

    #[test]
    fn music_play_slots_map_to_commands() {
        let cases = [
            (
                json!({"artist": "miles davis"}),
                MusicCommand::PlayArtist("miles davis".into()),
            ),
            (
                json!({"album": "kind of blue"}),
                MusicCommand::PlayAlbum("kind of blue".into()),
            ),
            (
                json!({"genre": "jazz"}),
                MusicCommand::PlayGenre("jazz".into()),
            ),
            (
                json!({"playlist": "road trip"}),
                MusicCommand::PlayPlaylist("road trip".into()),
            ),
            (
                json!({"query": " so  what\n"}),
                MusicCommand::PlayQuery("so what".into()),
            ),
            (
                json!({"query": 1999}),
                MusicCommand::PlayQuery("1999".into()),
            ),
            (
                json!({"artist": "nirvana", "album": "", "genre": null}),
                MusicCommand::PlayArtist("nirvana".into()),
            ),
        ];
        for (value, want) in cases {
            let got = MusicCommand::from_action("music.play", &slots(value.clone()));
            assert_eq!(got.ok(), Some(want), "slots {value}");
        }
    }

    #[test]
    fn music_play_with_several_slots_is_one_search() {
        let cases = [
            (
                json!({"track": "so what", "artist": "miles davis"}),
                MusicSearch {
                    track: Some("so what".into()),
                    artist: Some("miles davis".into()),
                    ..MusicSearch::default()
                },
            ),
            (
                json!({"artist": "a", "album": "b"}),
                MusicSearch {
                    artist: Some("a".into()),
                    album: Some("b".into()),
                    ..MusicSearch::default()
                },
            ),
            (
                json!({"year": "1980s"}),
                MusicSearch {
                    year: Some("1980s".into()),
                    ..MusicSearch::default()
                },
            ),
            (
                json!({"genre": "jazz", "year": 1958}),
                MusicSearch {
                    genre: Some("jazz".into()),
                    year: Some("1958".into()),
                    ..MusicSearch::default()
                },
            ),
        ];
        for (value, want) in cases {
            let got = MusicCommand::from_action("music.play", &slots(value.clone()));
            assert_eq!(
                got.ok(),
                Some(MusicCommand::PlaySearch(want)),
                "slots {value}"
            );
        }
    }

    #[test]
    fn music_search_plan_narrows_by_everything_said() {
        let search = MusicSearch {
            track: Some("nevermind".into()),
            artist: Some("nirvana".into()),
            year: Some("1990s".into()),
            ..MusicSearch::default()
        };
        assert_eq!(
            search_plan(&search),
            vec![
                r#"((title contains "nevermind") AND (artist contains "nirvana") AND (date contains "199"))"#,
                r#"((title contains "nevermind") AND (albumartist contains "nirvana") AND (date contains "199"))"#,
                r#"((album contains "nevermind") AND (artist contains "nirvana") AND (date contains "199"))"#,
                r#"((album contains "nevermind") AND (albumartist contains "nirvana") AND (date contains "199"))"#,
            ]
        );
        let year_only = MusicSearch {
            year: Some("1958".into()),
            ..MusicSearch::default()
        };
        assert_eq!(search_plan(&year_only), vec![r#"(date contains "1958")"#]);
        assert_eq!(search.describe(), "nevermind by nirvana from 1990s");
    }

    #[test]
    fn music_play_needs_a_slot_and_a_playlist_alone() {
        for value in [
            json!({}),
            json!({"playlist": "a", "artist": "b"}),
            json!({"artist": "  "}),
        ] {
            let got = MusicCommand::from_action("music.play", &slots(value.clone()));
            assert!(
                matches!(got, Err(MusicError::InvalidCommand(_))),
                "slots {value}: {got:?}"
            );
        }
    }

    #[test]
    fn music_transport_and_volume_kinds() {
        let empty = Map::new();
        let cases = [
            ("music.pause", json!({}), MusicCommand::Pause),
            ("music.resume", json!({}), MusicCommand::Resume),
            ("music.next", json!({}), MusicCommand::Next),
            ("music.previous", json!({}), MusicCommand::Previous),
            (
                "music.volume",
                json!({"volume": 40}),
                MusicCommand::SetVolume(40),
            ),
            (
                "music.volume_set",
                json!({"volume": 40.4}),
                MusicCommand::SetVolume(40),
            ),
            (
                "music.volume",
                json!({"volume": "55%"}),
                MusicCommand::SetVolume(55),
            ),
            (
                "music.volume",
                json!({"volume": 150}),
                MusicCommand::SetVolume(100),
            ),
            (
                "music.volume",
                json!({"volume": -5}),
                MusicCommand::SetVolume(0),
            ),
            (
                "music.volume_up",
                json!({}),
                MusicCommand::VolumeUp(DEFAULT_VOLUME_STEP),
            ),
            (
                "music.volume_down",
                json!({"step": 5}),
                MusicCommand::VolumeDown(5),
            ),
            (
                "music.volume_up",
                json!({"step": 0}),
                MusicCommand::VolumeUp(1),
            ),
        ];
        for (kind, value, want) in cases {
            let got = MusicCommand::from_action(kind, &slots(value.clone()));
            assert_eq!(got.ok(), Some(want), "{kind} {value}");
        }
        for (kind, value) in [
            ("music.volume", json!({})),
            ("music.volume", json!({"volume": "loud"})),
            ("music.volume", json!({"volume": [1]})),
            ("music.volume_up", json!({"step": "lots"})),
        ] {
            let got = MusicCommand::from_action(kind, &slots(value.clone()));
            assert!(
                matches!(got, Err(MusicError::InvalidCommand(_))),
                "{kind} {value}"
            );
        }
        assert!(matches!(
            MusicCommand::from_action("alarm.set", &empty),
            Err(MusicError::InvalidCommand(_))
        ));
        for kind in KINDS {
            // Every listed kind is understood (volume ones need a slot).
            let got = MusicCommand::from_action(kind, &slots(json!({"volume": 1, "query": "x"})));
            assert!(got.is_ok(), "{kind}: {got:?}");
        }
    }

    #[test]
    fn music_not_found_messages_name_what_was_asked() {
        let err = MusicError::NotFound {
            kind: SearchKind::Artist,
            name: "the nobodies".into(),
        };
        assert_eq!(err.to_string(), "I couldn't find any music by the nobodies");
        assert_eq!(
            err.user_message(),
            "I couldn't find any music by the nobodies."
        );
        let err = MusicError::Connect {
            addr: "127.0.0.1:6600".into(),
            reason: "refused".into(),
        };
        assert!(err.to_string().contains("127.0.0.1:6600"));
        assert_eq!(
            err.user_message(),
            "I can't reach the music player right now."
        );
    }

    #[test]
    fn music_addresses_parse_and_print() {
        let cases = [
            ("localhost", "localhost:6600"),
            ("10.0.0.2:6601", "10.0.0.2:6601"),
            ("[::1]:6602", "[::1]:6602"),
            ("::1", "[::1]:6600"),
            ("/run/mpd/socket", "/run/mpd/socket"),
        ];
        for (text, shown) in cases {
            let address = MpdAddress::parse(text);
            assert_eq!(
                address.map(|a| a.to_string()).ok().as_deref(),
                Some(shown),
                "{text}"
            );
        }
        for bad in ["", "host:port", "[::1", "[::1]x"] {
            assert!(MpdAddress::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(MpdAddress::default().to_string(), "127.0.0.1:6600");
    }

    #[test]
    fn music_config_debug_hides_password() {
        let config = MpdConfig {
            password: Some("hunter2".into()),
            ..MpdConfig::default()
        };
        let shown = format!("{config:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn music_tracks_parse_from_fields() {
        let fields = [
            ("file", "a/3.ogg"),
            ("Artist", "Miles Davis"),
            ("Artist", "John Coltrane"),
            ("Album", "Kind of Blue"),
            ("Title", "Blue in Green"),
            ("Track", "3/5"),
            ("Disc", "1"),
            ("file", "b.ogg"),
            ("Title", "Untitled"),
        ];
        let tracks = parse_tracks(fields);
        assert_eq!(tracks.len(), 2);
        assert_eq!(tracks[0].artist.as_deref(), Some("Miles Davis"));
        assert_eq!((tracks[0].disc, tracks[0].track), (1, 3));
        assert_eq!(tracks[1].track, u32::MAX);
        assert_eq!(tracks[1].describe(), "Untitled");
        assert!(parse_tracks([("volume", "3")]).is_empty());
    }

    #[test]
    fn music_sort_is_artist_album_track() {
        let mut tracks = vec![
            track("z.ogg", "Miles Davis", "Kind of Blue", "Blue in Green", 3),
            track("y.ogg", "Miles Davis", "Kind of Blue", "So What", 1),
            track("x.ogg", "Alpha", "Zeta", "First", 2),
            track(
                "w.ogg",
                "Miles Davis",
                "Kind of Blue",
                "Freddie Freeloader",
                2,
            ),
            track(
                "v.ogg",
                "Miles Davis",
                "Kind of Blue",
                "Untracked",
                u32::MAX,
            ),
        ];
        sort_tracks(&mut tracks);
        let files: Vec<&str> = tracks.iter().map(|t| t.file.as_str()).collect();
        assert_eq!(files, ["x.ogg", "y.ogg", "w.ogg", "z.ogg", "v.ogg"]);
    }

    #[test]
    fn music_query_prefers_artist_then_album_then_title() {
        let library = vec![
            track("1.ogg", "Blue Train Band", "Songs", "Intro", 1),
            track("2.ogg", "John Coltrane", "Blue Train", "Blue Train", 1),
            track("3.ogg", "John Coltrane", "Blue Train", "Moment's Notice", 2),
            track("4.ogg", "Other", "Mix", "Blue Train", 7),
        ];
        let files = |tracks: &[Track]| tracks.iter().map(|t| t.file.clone()).collect::<Vec<_>>();
        match classify_query("blue train", library.clone()) {
            QueryMatch::Album(t) => assert_eq!(files(&t), ["2.ogg", "3.ogg"]),
            _ => panic!("expected the album"),
        }
        match classify_query("BLUE TRAIN BAND", library.clone()) {
            QueryMatch::Artist(t) => assert_eq!(files(&t), ["1.ogg"]),
            _ => panic!("expected the artist"),
        }
        match classify_query("moment's notice", library.clone()) {
            QueryMatch::Title(t) => assert_eq!(files(&t), ["3.ogg"]),
            _ => panic!("expected the title"),
        }
        match classify_query("train", library) {
            QueryMatch::Any(t) => assert_eq!(t.len(), 4),
            _ => panic!("expected everything"),
        }
    }

    #[test]
    fn music_playlist_names_match_loosely() {
        let names = vec![
            "Road Trip".to_string(),
            "road trip".to_string(),
            "Chill Evening".to_string(),
        ];
        assert_eq!(pick_playlist("road trip", &names), Some("road trip"));
        assert_eq!(pick_playlist("ROAD  TRIP", &names), Some("Road Trip"));
        assert_eq!(pick_playlist("chill", &names), Some("Chill Evening"));
        assert_eq!(pick_playlist("trip", &names), None, "two candidates");
        assert_eq!(pick_playlist("workout", &names), None);
    }

    #[test]
    fn music_sentences_use_tag_spelling() {
        let tracks = vec![
            track("1.ogg", "Miles Davis", "Kind of Blue", "So What", 1),
            track(
                "2.ogg",
                "Miles Davis",
                "Kind of Blue",
                "Freddie Freeloader",
                2,
            ),
        ];
        assert_eq!(
            artist_sentence("miles davis", &tracks),
            "Playing music by Miles Davis."
        );
        assert_eq!(
            album_sentence("kind of blue", &tracks),
            "Playing the album Kind of Blue by Miles Davis."
        );
        assert_eq!(
            songs_sentence("so what", &tracks[..1]),
            "Playing So What by Miles Davis."
        );
        assert_eq!(
            songs_sentence("blue", &tracks),
            "Playing 2 songs matching blue."
        );
    }

    #[test]
    fn music_filter_expressions_escape_values() {
        assert_eq!(
            filter_expr("artist", "==", "miles davis"),
            r#"(artist == "miles davis")"#
        );
        assert_eq!(
            filter_expr("any", "contains", r#"say "hi" \ ok"#),
            r#"(any contains "say \"hi\" \\ ok")"#
        );
        let words = ["a".to_string(), "b".to_string()];
        assert_eq!(all_of(&words), "(a AND b)");
        assert_eq!(all_of(&words[..1]), "a");
    }

    #[test]
    fn music_awkward_uris_are_added_through_a_filter() {
        assert!(breaks_unquoted("it's.ogg"));
        assert!(!breaks_unquoted("it's here.ogg"));
        assert!(!breaks_unquoted("plain.ogg"));
        let add = add_command("jazz/moment's_notice.ogg").map(|c| c.name);
        assert_eq!(add.ok().as_deref(), Some("findadd"));
        let add = add_command("jazz/moment's notice.ogg").map(|c| c.name);
        assert_eq!(add.ok().as_deref(), Some("add"));
        let load = new_command("load", &["rock'n'roll"]);
        assert!(matches!(load, Err(MusicError::Protocol { .. })));
    }

    #[test]
    fn music_raw_commands_reject_bad_input() {
        let command = new_command("search", &["a b"]).map(|c| c.name);
        assert_eq!(command.ok().as_deref(), Some("search"));
        assert!(new_command("add", &["bad\nline"]).is_err());
        assert!(new_command("not a command", &[]).is_err());
    }

    fn free_port() -> u16 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    }

    #[test]
    fn music_nothing_listening_is_a_connect_error() {
        let port = free_port();
        let mut player = MpdPlayer::new(MpdConfig::tcp("127.0.0.1", port)).expect("player");
        let err = player
            .execute(&MusicCommand::Pause)
            .expect_err("nothing listens");
        match &err {
            MusicError::Connect { addr, .. } => assert_eq!(addr, &format!("127.0.0.1:{port}")),
            other => panic!("expected a connect error, got {other:?}"),
        }
    }

    #[test]
    fn music_silent_server_times_out() {
        // Accepts TCP but never greets: the connect timeout must fire.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let mut config = MpdConfig::tcp("127.0.0.1", port);
        config.connect_timeout = Duration::from_millis(300);
        let mut player = MpdPlayer::new(config).expect("player");
        let started = std::time::Instant::now();
        let err = player
            .execute(&MusicCommand::Next)
            .expect_err("no greeting");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        match &err {
            MusicError::Connect { reason, .. } => assert!(reason.contains("no answer"), "{reason}"),
            other => panic!("expected a connect error, got {other:?}"),
        }
        drop(listener);
    }

    #[test]
    fn music_wrong_server_is_a_connect_error() {
        // Something that is not mpd answers on the port.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let server = std::thread::spawn(move || {
            use std::io::Write;
            if let Ok((mut stream, _)) = listener.accept() {
                let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n");
            }
        });
        let mut player = MpdPlayer::new(MpdConfig::tcp("127.0.0.1", port)).expect("player");
        let err = player.execute(&MusicCommand::Pause).expect_err("not mpd");
        assert!(matches!(err, MusicError::Connect { .. }), "{err:?}");
        let _ = server.join();
    }

    #[test]
    fn music_player_works_from_inside_async_code() {
        // Blocking, but no "runtime inside a runtime" panic.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let port = free_port();
        let result = runtime.block_on(async move {
            let mut player = MpdPlayer::new(MpdConfig::tcp("127.0.0.1", port)).expect("player");
            let result = player.execute(&MusicCommand::Resume);
            drop(player);
            result
        });
        assert!(
            matches!(result, Err(MusicError::Connect { .. })),
            "{result:?}"
        );
    }
}

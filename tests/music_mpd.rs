//! Integration tests: the music executor against a real `mpd`.
//!
//! Why it exists: the mpd protocol's details (case-insensitive `search`,
//! stored playlists, mixers, dropped connections) only show up against the
//! real daemon. Each test starts its own private mpd on a free loopback port
//! (see `support/mpd.rs`), drives it through [`MpdPlayer`], and checks the
//! result through a separate plain protocol connection.
//!
//! Without `mpd` or `sox` installed the tests print why and pass as skipped.

#[path = "support/mpd.rs"]
mod mpd_support;
#[path = "support/skip.rs"]
mod skip;

use std::time::{Duration, Instant};

use mpd_support::{MpdOptions, MpdServer, titles_of};
use serde_json::{Map, Value, json};
use voicegate::actions::music::{
    MpdAddress, MpdConfig, MpdPlayer, MusicCommand, MusicError, MusicPlayer, SearchKind,
};

/// Time allowed for mpd's player to reach a state after a command.
const SETTLE: Duration = Duration::from_secs(3);

fn player_for(server: &MpdServer) -> MpdPlayer {
    let mut config = MpdConfig::tcp("127.0.0.1", server.port());
    config.connect_timeout = Duration::from_secs(2);
    config.command_timeout = Duration::from_secs(5);
    MpdPlayer::new(config).expect("start the mpd player")
}

fn run(player: &mut MpdPlayer, cmd: MusicCommand) -> String {
    match player.execute(&cmd) {
        Ok(said) => said,
        Err(e) => panic!("{cmd:?} failed: {e}"),
    }
}

fn slots(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("slots must be an object, got {other}"),
    }
}

#[test]
fn play_artist_is_case_insensitive() {
    let Some(server) = MpdServer::start_or_skip(MpdOptions::default()) else {
        return;
    };
    let mut player = player_for(&server);
    let mut probe = server.probe();

    // As the intent engine hands it over, spoken in lower case.
    let cmd = MusicCommand::from_action("music.play", &slots(json!({"artist": "miles davis"})))
        .expect("decode");
    let said = run(&mut player, cmd);
    assert_eq!(said, "Playing music by Miles Davis.");
    probe.wait_for_state("play", SETTLE);
    assert_eq!(
        probe.queue_titles(),
        ["So What", "Freddie Freeloader", "Blue in Green"]
    );
    assert_eq!(probe.current_title().as_deref(), Some("So What"));

    // A different artist replaces the queue.
    run(&mut player, MusicCommand::PlayArtist("DAFT PUNK".into()));
    assert_eq!(probe.queue_titles(), ["One More Time", "Aerodynamic"]);
    probe.wait_for_state("play", SETTLE);
}

#[test]
fn play_album_in_track_order() {
    let Some(server) = MpdServer::start_or_skip(MpdOptions::default()) else {
        return;
    };
    let mut player = player_for(&server);
    let mut probe = server.probe();

    let said = run(&mut player, MusicCommand::PlayAlbum("kind of blue".into()));
    assert_eq!(said, "Playing the album Kind of Blue by Miles Davis.");
    // Files are named a_, b_, c_ in a different order from the track tags.
    assert_eq!(
        probe.queue_files(),
        [
            "jazz/miles/c_so_what.ogg",
            "jazz/miles/a_freddie_freeloader.ogg",
            "jazz/miles/b_blue_in_green.ogg",
        ]
    );
    probe.wait_for_state("play", SETTLE);
    assert_eq!(probe.current_title().as_deref(), Some("So What"));
}

#[test]
fn play_genre_is_case_insensitive() {
    let Some(server) = MpdServer::start_or_skip(MpdOptions::default()) else {
        return;
    };
    let mut player = player_for(&server);
    let mut probe = server.probe();

    let said = run(&mut player, MusicCommand::PlayGenre("electronic".into()));
    assert_eq!(said, "Playing electronic music.");
    assert_eq!(probe.queue_titles(), ["One More Time", "Aerodynamic"]);
    probe.wait_for_state("play", SETTLE);

    // Several artists: grouped by artist, each album in track order.
    run(&mut player, MusicCommand::PlayGenre("JAZZ".into()));
    assert_eq!(
        probe.queue_titles(),
        [
            "Blue Train",
            "Moment's Notice",
            "So What",
            "Freddie Freeloader",
            "Blue in Green",
        ]
    );
}

#[test]
fn play_stored_playlist_by_spoken_name() {
    let Some(server) = MpdServer::start_or_skip(MpdOptions::default()) else {
        return;
    };
    let mut player = player_for(&server);
    let mut probe = server.probe();

    let said = run(&mut player, MusicCommand::PlayPlaylist("road trip".into()));
    assert_eq!(said, "Playing the playlist Road Trip.");
    let (_, files) = mpd_support::PLAYLISTS[0];
    assert_eq!(probe.queue_titles(), titles_of(files));
    probe.wait_for_state("play", SETTLE);
    assert_eq!(probe.current_title().as_deref(), Some("Come as You Are"));

    // Quotes in names are sent correctly.
    let said = run(
        &mut player,
        MusicCommand::PlayPlaylist("rock 'n' jazz".into()),
    );
    assert_eq!(said, "Playing the playlist Rock 'n' Jazz.");
    let (_, files) = mpd_support::PLAYLISTS[2];
    assert_eq!(probe.queue_titles(), titles_of(files));

    // An empty stored playlist is reported, and the queue is left alone.
    let err = player
        .execute(&MusicCommand::PlayPlaylist("empty shelf".into()))
        .expect_err("empty playlist");
    assert!(matches!(err, MusicError::NothingToPlay(_)), "{err:?}");
    assert_eq!(probe.queue_titles(), titles_of(files));
}

#[test]
fn play_query_finds_artist_album_or_title() {
    let Some(server) = MpdServer::start_or_skip(MpdOptions::default()) else {
        return;
    };
    let mut player = player_for(&server);
    let mut probe = server.probe();

    // An album name that is also a song title: the album wins, in order.
    let said = run(&mut player, MusicCommand::PlayQuery("blue train".into()));
    assert_eq!(said, "Playing the album Blue Train by John Coltrane.");
    assert_eq!(probe.queue_titles(), ["Blue Train", "Moment's Notice"]);
    probe.wait_for_state("play", SETTLE);

    let said = run(&mut player, MusicCommand::PlayQuery("nirvana".into()));
    assert_eq!(said, "Playing music by Nirvana.");
    assert_eq!(
        probe.queue_titles(),
        ["Smells Like Teen Spirit", "Come as You Are"]
    );

    let said = run(&mut player, MusicCommand::PlayQuery("so what".into()));
    assert_eq!(said, "Playing So What by Miles Davis.");
    assert_eq!(probe.queue_titles(), ["So What"]);

    // Part of a title.
    let said = run(&mut player, MusicCommand::PlayQuery("teen spirit".into()));
    assert_eq!(said, "Playing Smells Like Teen Spirit by Nirvana.");

    // Quotes in what was said reach mpd escaped.
    let said = run(
        &mut player,
        MusicCommand::PlayQuery("moment's notice".into()),
    );
    assert_eq!(said, "Playing Moment's Notice by John Coltrane.");
    let err = player
        .execute(&MusicCommand::PlayQuery(r#"say "hi" \ there"#.into()))
        .expect_err("nothing matches");
    assert!(matches!(err, MusicError::NotFound { .. }), "{err:?}");

    // The words, not the phrase.
    run(&mut player, MusicCommand::PlayQuery("smells spirit".into()));
    assert_eq!(probe.queue_titles(), ["Smells Like Teen Spirit"]);
}

#[test]
fn pause_resume_next_previous_drive_mpd() {
    let Some(server) = MpdServer::start_or_skip(MpdOptions::default()) else {
        return;
    };
    let mut player = player_for(&server);
    let mut probe = server.probe();

    // Nothing queued yet.
    let err = player.execute(&MusicCommand::Pause).expect_err("stopped");
    assert!(matches!(err, MusicError::NotPlaying), "{err:?}");
    let err = player.execute(&MusicCommand::Resume).expect_err("empty");
    assert!(matches!(err, MusicError::NothingToPlay(_)), "{err:?}");
    let err = player.execute(&MusicCommand::Next).expect_err("stopped");
    assert!(matches!(err, MusicError::NotPlaying), "{err:?}");

    run(&mut player, MusicCommand::PlayAlbum("Kind of Blue".into()));
    probe.wait_for_state("play", SETTLE);

    assert_eq!(run(&mut player, MusicCommand::Pause), "Paused.");
    probe.wait_for_state("pause", SETTLE);
    assert_eq!(
        run(&mut player, MusicCommand::Pause),
        "It's already paused."
    );

    assert_eq!(run(&mut player, MusicCommand::Resume), "Resuming.");
    probe.wait_for_state("play", SETTLE);

    let said = run(&mut player, MusicCommand::Next);
    assert_eq!(said, "Playing Freddie Freeloader by Miles Davis.");
    assert_eq!(probe.current_title().as_deref(), Some("Freddie Freeloader"));
    run(&mut player, MusicCommand::Next);
    assert_eq!(probe.current_title().as_deref(), Some("Blue in Green"));

    let said = run(&mut player, MusicCommand::Previous);
    assert_eq!(said, "Playing Freddie Freeloader by Miles Davis.");
    assert_eq!(probe.current_title().as_deref(), Some("Freddie Freeloader"));
    probe.wait_for_state("play", SETTLE);

    // Past the end of the queue: mpd stops.
    run(&mut player, MusicCommand::Next);
    let said = run(&mut player, MusicCommand::Next);
    assert_eq!(said, "That was the last song in the queue.");
    probe.wait_for_state("stop", SETTLE);

    // Stopped with songs queued: resume starts playing again.
    assert_eq!(run(&mut player, MusicCommand::Resume), "Playing.");
    probe.wait_for_state("play", SETTLE);
}

#[test]
fn volume_set_up_and_down() {
    let Some(server) = MpdServer::start_or_skip(MpdOptions::default()) else {
        return;
    };
    let mut player = player_for(&server);
    let mut probe = server.probe();
    let volume = |probe: &mut mpd_support::Probe| probe.status().remove("volume");

    run(&mut player, MusicCommand::PlayArtist("nirvana".into()));
    probe.wait_for_state("play", SETTLE);

    let cmd =
        MusicCommand::from_action("music.volume", &slots(json!({"volume": 40}))).expect("decode");
    assert_eq!(run(&mut player, cmd), "Volume set to 40 percent.");
    assert_eq!(volume(&mut probe).as_deref(), Some("40"));

    assert_eq!(
        run(&mut player, MusicCommand::VolumeUp(10)),
        "Volume up to 50 percent."
    );
    assert_eq!(volume(&mut probe).as_deref(), Some("50"));
    run(&mut player, MusicCommand::VolumeDown(20));
    assert_eq!(volume(&mut probe).as_deref(), Some("30"));

    // Clamped at both ends.
    run(&mut player, MusicCommand::VolumeDown(90));
    assert_eq!(volume(&mut probe).as_deref(), Some("0"));
    let cmd =
        MusicCommand::from_action("music.volume", &slots(json!({"volume": 250}))).expect("decode");
    run(&mut player, cmd);
    assert_eq!(volume(&mut probe).as_deref(), Some("100"));
    run(&mut player, MusicCommand::SetVolume(200));
    assert_eq!(volume(&mut probe).as_deref(), Some("100"));
    assert_eq!(
        run(&mut player, MusicCommand::VolumeUp(10)),
        "The volume is already at its maximum."
    );
}

#[test]
fn volume_without_mixer_is_a_clear_error() {
    let options = MpdOptions {
        mixer: "none",
        ..MpdOptions::default()
    };
    let Some(server) = MpdServer::start_or_skip(options) else {
        return;
    };
    let mut player = player_for(&server);
    run(&mut player, MusicCommand::PlayArtist("nirvana".into()));
    server.probe().wait_for_state("play", SETTLE);

    for cmd in [
        MusicCommand::SetVolume(40),
        MusicCommand::VolumeUp(10),
        MusicCommand::VolumeDown(10),
    ] {
        let err = player.execute(&cmd).expect_err("no mixer");
        assert!(matches!(err, MusicError::NoMixer), "{cmd:?}: {err:?}");
        assert_eq!(
            err.user_message(),
            "I can't change the volume on this music player."
        );
    }
}

#[test]
fn not_found_leaves_the_queue_alone() {
    let Some(server) = MpdServer::start_or_skip(MpdOptions::default()) else {
        return;
    };
    let mut player = player_for(&server);
    let mut probe = server.probe();

    run(&mut player, MusicCommand::PlayAlbum("nevermind".into()));
    probe.wait_for_state("play", SETTLE);
    let before = probe.queue_files();

    let cases = [
        (
            MusicCommand::PlayArtist("the nobodies".into()),
            SearchKind::Artist,
            "I couldn't find any music by the nobodies",
        ),
        (
            MusicCommand::PlayAlbum("greatest misses".into()),
            SearchKind::Album,
            "I couldn't find the album greatest misses",
        ),
        (
            MusicCommand::PlayGenre("polka".into()),
            SearchKind::Genre,
            "I couldn't find any polka music",
        ),
        (
            MusicCommand::PlayPlaylist("workout".into()),
            SearchKind::Playlist,
            "I couldn't find a playlist called workout",
        ),
        (
            MusicCommand::PlayQuery("zzz qqq".into()),
            SearchKind::Query,
            "I couldn't find anything matching zzz qqq",
        ),
    ];
    for (cmd, want_kind, want_text) in cases {
        let err = player.execute(&cmd).expect_err("nothing matches");
        match &err {
            MusicError::NotFound { kind, .. } => assert_eq!(*kind, want_kind, "{cmd:?}"),
            other => panic!("{cmd:?}: expected NotFound, got {other:?}"),
        }
        assert_eq!(err.to_string(), want_text);
        assert_eq!(probe.queue_files(), before, "{cmd:?} touched the queue");
        assert_eq!(probe.state(), "play", "{cmd:?} stopped playback");
    }
}

#[test]
fn stopped_mpd_is_a_connection_error() {
    let Some(mut server) = MpdServer::start_or_skip(MpdOptions::default()) else {
        return;
    };
    let port = server.port();
    let mut player = player_for(&server);
    run(&mut player, MusicCommand::PlayArtist("nirvana".into()));

    server.stop();
    let started = Instant::now();
    let err = player
        .execute(&MusicCommand::Pause)
        .expect_err("mpd is gone");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    match &err {
        MusicError::Connect { addr, .. } => assert_eq!(addr, &format!("127.0.0.1:{port}")),
        other => panic!("expected a connection error, got {other:?}"),
    }
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
    assert_eq!(
        err.user_message(),
        "I can't reach the music player right now."
    );

    // A player that never connected says the same.
    let mut fresh = player_for(&server);
    let err = fresh
        .execute(&MusicCommand::Resume)
        .expect_err("mpd is gone");
    assert!(matches!(err, MusicError::Connect { .. }), "{err:?}");
}

#[test]
fn reconnects_after_mpd_restarts() {
    let Some(mut server) = MpdServer::start_or_skip(MpdOptions::default()) else {
        return;
    };
    let mut player = player_for(&server);
    run(&mut player, MusicCommand::PlayAlbum("discovery".into()));

    server.restart().expect("restart mpd");
    let mut probe = server.probe();
    run(
        &mut player,
        MusicCommand::PlayArtist("john coltrane".into()),
    );
    assert_eq!(probe.queue_titles(), ["Blue Train", "Moment's Notice"]);
    probe.wait_for_state("play", SETTLE);
}

#[test]
fn survives_mpd_connection_timeout() {
    // mpd drops clients that stay silent longer than connection_timeout.
    let options = MpdOptions {
        connection_timeout: Some(1),
        ..MpdOptions::default()
    };
    let Some(server) = MpdServer::start_or_skip(options) else {
        return;
    };
    let mut player = player_for(&server);
    let mut probe = server.probe();
    run(&mut player, MusicCommand::PlayAlbum("kind of blue".into()));
    probe.wait_for_state("play", SETTLE);

    std::thread::sleep(Duration::from_millis(2500));
    // The probe itself was silent too; use a fresh one.
    let mut probe = server.probe();
    assert_eq!(run(&mut player, MusicCommand::Pause), "Paused.");
    probe.wait_for_state("pause", SETTLE);
}

#[test]
fn connects_over_a_unix_socket() {
    let Some(server) = MpdServer::start_or_skip(MpdOptions::default()) else {
        return;
    };
    let socket = server.socket_path();
    let address = MpdAddress::parse(&socket.to_string_lossy()).expect("socket path");
    assert_eq!(address, MpdAddress::Unix(socket));
    let mut player = MpdPlayer::new(MpdConfig {
        connect_timeout: Duration::from_secs(2),
        ..MpdConfig::new(address)
    })
    .expect("start the mpd player");
    let mut probe = server.probe();

    run(&mut player, MusicCommand::PlayAlbum("nevermind".into()));
    assert_eq!(
        probe.queue_titles(),
        ["Smells Like Teen Spirit", "Come as You Are"]
    );
    probe.wait_for_state("play", SETTLE);
}

#[test]
fn play_title_by_artist_tries_the_song_then_the_album() {
    let Some(server) = MpdServer::start_or_skip(MpdOptions::default()) else {
        return;
    };
    let mut player = player_for(&server);
    let song = MusicCommand::from_action(
        "music.play",
        &slots(json!({"track": "so what", "artist": "miles davis"})),
    )
    .expect("decode");
    assert_eq!(run(&mut player, song), "Playing So What by Miles Davis.");
    // "play Kind of Blue by Miles Davis": no such song, but that album.
    let album = MusicCommand::from_action(
        "music.play",
        &slots(json!({"track": "kind of blue", "artist": "miles davis"})),
    )
    .expect("decode");
    assert_eq!(
        run(&mut player, album),
        "Playing 3 songs matching kind of blue by miles davis."
    );
}

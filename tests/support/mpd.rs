//! Test support: a real, private `mpd` for the music integration tests.
//!
//! Why it exists: the music executor speaks the mpd protocol, and the only
//! convincing test is against the real daemon. [`MpdServer`] starts
//! `mpd --no-daemon` on a free loopback port (and a unix socket) with its own temporary
//! directory (config, database, state, log, stored playlists), a null audio
//! output with a software mixer (plays without sound hardware; volume
//! works), and a small tagged music library generated once with `sox`.
//! [`Probe`] is a plain, separate protocol connection for checking what mpd
//! really did (`status`, `currentsong`, `playlistinfo`).
//!
//! Every wait here is bounded; nothing loops forever. The child process is
//! killed when the server is dropped, including when a test panics.

#![allow(dead_code)]

use std::collections::HashMap;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// How long mpd may take to start, or to scan the library.
const STARTUP_LIMIT: Duration = Duration::from_secs(15);

/// Length of every generated song. Long enough that nothing ends on its own
/// during a test, still tiny on disk (8 kHz mono Vorbis).
const SONG_SECONDS: u32 = 30;

/// Bump when [`LIBRARY`] changes, so a stale cached library is not reused.
const LIBRARY_VERSION: u32 = 2;

/// One generated song and its tags.
#[derive(Debug, Clone, Copy)]
pub struct Song {
    /// Path below the music directory.
    pub file: &'static str,
    /// ARTIST tag.
    pub artist: &'static str,
    /// ALBUM tag.
    pub album: &'static str,
    /// TITLE tag.
    pub title: &'static str,
    /// GENRE tag.
    pub genre: &'static str,
    /// TRACKNUMBER tag.
    pub track: u32,
}

/// The test library. File names deliberately do not sort in track order,
/// so playing "in track order" is really checked; one has an apostrophe and
/// no space (the awkward case for argument quoting).
pub const LIBRARY: &[Song] = &[
    Song {
        file: "jazz/miles/c_so_what.ogg",
        artist: "Miles Davis",
        album: "Kind of Blue",
        title: "So What",
        genre: "Jazz",
        track: 1,
    },
    Song {
        file: "jazz/miles/a_freddie_freeloader.ogg",
        artist: "Miles Davis",
        album: "Kind of Blue",
        title: "Freddie Freeloader",
        genre: "Jazz",
        track: 2,
    },
    Song {
        file: "jazz/miles/b_blue_in_green.ogg",
        artist: "Miles Davis",
        album: "Kind of Blue",
        title: "Blue in Green",
        genre: "Jazz",
        track: 3,
    },
    Song {
        file: "jazz/coltrane/2_blue_train.ogg",
        artist: "John Coltrane",
        album: "Blue Train",
        title: "Blue Train",
        genre: "Jazz",
        track: 1,
    },
    Song {
        file: "jazz/coltrane/1_moment's_notice.ogg",
        artist: "John Coltrane",
        album: "Blue Train",
        title: "Moment's Notice",
        genre: "Jazz",
        track: 2,
    },
    Song {
        file: "electronic/daft_punk/one_more_time.ogg",
        artist: "Daft Punk",
        album: "Discovery",
        title: "One More Time",
        genre: "Electronic",
        track: 1,
    },
    Song {
        file: "electronic/daft_punk/aerodynamic.ogg",
        artist: "Daft Punk",
        album: "Discovery",
        title: "Aerodynamic",
        genre: "Electronic",
        track: 2,
    },
    Song {
        file: "rock/nirvana/teen_spirit.ogg",
        artist: "Nirvana",
        album: "Nevermind",
        title: "Smells Like Teen Spirit",
        genre: "Rock",
        track: 1,
    },
    Song {
        file: "rock/nirvana/come_as_you_are.ogg",
        artist: "Nirvana",
        album: "Nevermind",
        title: "Come as You Are",
        genre: "Rock",
        track: 3,
    },
];

/// Stored playlists written as `<name>.m3u`: name and files in order.
pub const PLAYLISTS: &[(&str, &[&str])] = &[
    (
        "Road Trip",
        &[
            "rock/nirvana/come_as_you_are.ogg",
            "jazz/coltrane/2_blue_train.ogg",
            "electronic/daft_punk/aerodynamic.ogg",
        ],
    ),
    ("Empty Shelf", &[]),
    (
        "Rock 'n' Jazz",
        &[
            "jazz/coltrane/1_moment's_notice.ogg",
            "rock/nirvana/teen_spirit.ogg",
        ],
    ),
];

/// Titles of the library songs with `file`s, in the given order.
pub fn titles_of(files: &[&str]) -> Vec<String> {
    files
        .iter()
        .map(|file| {
            LIBRARY
                .iter()
                .find(|song| song.file == *file)
                .map(|song| song.title.to_string())
                .unwrap_or_else(|| panic!("{file} is not in the test library"))
        })
        .collect()
}

/// Why the mpd tests cannot run here, if they cannot: `mpd` or `sox` is not
/// installed.
pub fn missing_tools() -> Option<String> {
    for (tool, arg) in [("mpd", "--version"), ("sox", "--version")] {
        let runs = Command::new(tool)
            .arg(arg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !runs {
            return Some(format!(
                "{tool} not installed (scripts/setup.sh installs it; or apt-get install -y mpd sox libsox-fmt-all)"
            ));
        }
    }
    None
}

/// How to configure one mpd.
#[derive(Debug, Clone)]
pub struct MpdOptions {
    /// `mixer_type` of the null output: `software`, or `none` for no volume.
    pub mixer: &'static str,
    /// mpd's `connection_timeout` in seconds (how soon it drops silent
    /// clients); mpd's default when `None`.
    pub connection_timeout: Option<u32>,
}

impl Default for MpdOptions {
    fn default() -> Self {
        MpdOptions {
            mixer: "software",
            connection_timeout: None,
        }
    }
}

/// A running private mpd. Killed on drop.
pub struct MpdServer {
    dir: TempDir,
    port: u16,
    child: Option<Child>,
}

impl MpdServer {
    /// Starts mpd with the test library and waits until its database is
    /// loaded. Prints a skip reason and returns `None` when mpd or sox is
    /// missing; panics when they are present but mpd does not come up.
    pub fn start_or_skip(options: MpdOptions) -> Option<MpdServer> {
        if let Some(reason) = missing_tools() {
            super::skip::missing(reason);
            return None;
        }
        match MpdServer::start(options) {
            Ok(server) => Some(server),
            Err(e) => panic!("could not start mpd: {e}"),
        }
    }

    /// Starts mpd (see [`MpdServer::start_or_skip`]).
    pub fn start(options: MpdOptions) -> Result<MpdServer, String> {
        let music = music_dir()?;
        let dir = tempfile::Builder::new()
            .prefix("voicegate-mpd-")
            .tempdir()
            .map_err(|e| format!("temp dir: {e}"))?;
        let playlists = dir.path().join("playlists");
        fs::create_dir_all(&playlists).map_err(|e| format!("playlists dir: {e}"))?;
        for (name, files) in PLAYLISTS {
            let mut text = String::new();
            for file in *files {
                text.push_str(file);
                text.push('\n');
            }
            fs::write(playlists.join(format!("{name}.m3u")), text)
                .map_err(|e| format!("playlist {name}: {e}"))?;
        }
        let marker = marker_playlist(dir.path());
        fs::write(playlists.join(format!("{marker}.m3u")), "")
            .map_err(|e| format!("playlist {marker}: {e}"))?;
        // Another process may grab the port between our probe and mpd's
        // bind; then try another.
        let mut last_error = String::new();
        for _ in 0..4 {
            let port = free_port()?;
            write_config(dir.path(), &music, port, &options)?;
            match launch(dir.path(), port) {
                Ok(child) => {
                    let server = MpdServer {
                        dir,
                        port,
                        child: Some(child),
                    };
                    server.update_database()?;
                    return Ok(server);
                }
                Err(e) => last_error = e,
            }
        }
        Err(last_error)
    }

    /// The TCP port mpd listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// mpd's unix socket (it listens there too).
    pub fn socket_path(&self) -> PathBuf {
        self.dir.path().join("socket")
    }

    /// mpd's log, for failure messages.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }

    /// Kills mpd (no-op when it is not running).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills mpd and starts it again on the same port with the same files.
    pub fn restart(&mut self) -> Result<(), String> {
        self.stop();
        let deadline = Instant::now() + STARTUP_LIMIT;
        loop {
            match launch(self.dir.path(), self.port) {
                Ok(child) => {
                    self.child = Some(child);
                    return Ok(());
                }
                // The old socket may linger for a moment.
                Err(e) if Instant::now() < deadline => {
                    eprintln!("mpd restart: {e}; retrying");
                    thread::sleep(Duration::from_millis(200));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// A fresh plain protocol connection to this mpd.
    pub fn probe(&self) -> Probe {
        Probe::connect(self.port).unwrap_or_else(|e| panic!("probe: {e}\nmpd log:\n{}", self.log()))
    }

    /// Runs `update` and waits until mpd knows every song of [`LIBRARY`].
    fn update_database(&self) -> Result<(), String> {
        let mut probe = Probe::connect(self.port)?;
        probe.command("update")?;
        let deadline = Instant::now() + STARTUP_LIMIT;
        loop {
            let status = probe.command("status")?;
            let updating = status.iter().any(|(k, _)| k == "updating_db");
            let stats = probe.command("stats")?;
            let songs = stats
                .iter()
                .find(|(k, _)| k == "songs")
                .and_then(|(_, v)| v.parse::<usize>().ok())
                .unwrap_or(0);
            if !updating && songs == LIBRARY.len() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "mpd database has {songs} of {} songs after {STARTUP_LIMIT:?}; log:\n{}",
                    LIBRARY.len(),
                    self.log()
                ));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for MpdServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Spawns `mpd --no-daemon` with `dir/mpd.conf` and waits for its greeting
/// on `port`; kills it again if it does not come up.
fn launch(dir: &Path, port: u16) -> Result<Child, String> {
    let log = || fs::read_to_string(dir.join("log")).unwrap_or_default();
    let marker = marker_playlist(dir);
    let mut child = Command::new("mpd")
        .arg("--no-daemon")
        .arg(dir.join("mpd.conf"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("spawn mpd: {e}"))?;
    let deadline = Instant::now() + STARTUP_LIMIT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("mpd exited early ({status}); log:\n{}", log()));
        }
        // Make sure it is our mpd that answers, not another test's that
        // won a race for the port: ours has our marker playlist.
        if let Ok(mut probe) = Probe::connect(port)
            && let Ok(playlists) = probe.command("listplaylists")
        {
            if playlists
                .iter()
                .any(|(k, v)| k == "playlist" && v == &marker)
            {
                return Ok(child);
            }
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("port {port} is taken by another mpd"));
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "mpd did not accept connections on port {port} within {STARTUP_LIMIT:?}; log:\n{}",
                log()
            ));
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// The name of the empty playlist that identifies the mpd serving `dir`.
fn marker_playlist(dir: &Path) -> String {
    let id = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    format!("zz-marker-{id}")
}

/// A port that was free a moment ago.
pub fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("local_addr: {e}"))
}

/// mpd's config syntax: a double-quoted string.
fn quoted(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

fn write_config(dir: &Path, music: &Path, port: u16, options: &MpdOptions) -> Result<(), String> {
    let path = |name: &str| quoted(&dir.join(name).to_string_lossy());
    let mut conf = String::new();
    conf.push_str(&format!(
        "music_directory {}\n",
        quoted(&music.to_string_lossy())
    ));
    conf.push_str(&format!("playlist_directory {}\n", path("playlists")));
    conf.push_str(&format!("db_file {}\n", path("db")));
    conf.push_str(&format!("state_file {}\n", path("state")));
    conf.push_str(&format!("pid_file {}\n", path("pid")));
    conf.push_str(&format!("log_file {}\n", path("log")));
    conf.push_str("bind_to_address \"127.0.0.1\"\n");
    conf.push_str(&format!("bind_to_address {}\n", path("socket")));
    conf.push_str(&format!("port \"{port}\"\n"));
    conf.push_str("auto_update \"no\"\n");
    conf.push_str("zeroconf_enabled \"no\"\n");
    if let Some(seconds) = options.connection_timeout {
        conf.push_str(&format!("connection_timeout \"{seconds}\"\n"));
    }
    conf.push_str(&format!(
        "audio_output {{\n    type \"null\"\n    name \"null\"\n    mixer_type {}\n}}\n",
        quoted(options.mixer)
    ));
    fs::write(dir.join("mpd.conf"), conf).map_err(|e| format!("mpd.conf: {e}"))
}

/// The generated library, made once and cached under the target directory
/// (`CARGO_TARGET_TMPDIR`), shared read-only by every mpd in every test
/// process.
fn music_dir() -> Result<PathBuf, String> {
    static DIR: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    DIR.get_or_init(generate_library).clone()
}

fn generate_library() -> Result<PathBuf, String> {
    let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let dir = base.join(format!("mpd-music-v{LIBRARY_VERSION}"));
    if dir.join(".complete").exists() {
        return Ok(dir);
    }
    // Build beside it and rename into place, so a concurrent test process
    // never sees a half-written library.
    let staging = base.join(format!(
        "mpd-music-v{LIBRARY_VERSION}.tmp-{}",
        std::process::id()
    ));
    let _ = fs::remove_dir_all(&staging);
    for song in LIBRARY {
        let target = staging.join(song.file);
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        let comments = [
            format!("ARTIST={}", song.artist),
            format!("ALBUM={}", song.album),
            format!("TITLE={}", song.title),
            format!("GENRE={}", song.genre),
            format!("TRACKNUMBER={}", song.track),
        ];
        let mut sox = Command::new("sox");
        sox.args(["-q", "-n", "-r", "8000", "-c", "1"]);
        for comment in &comments {
            sox.arg("--add-comment").arg(comment);
        }
        let pitch = 220 + 55 * song.track;
        let output = sox
            .arg(&target)
            .args([
                "synth",
                &SONG_SECONDS.to_string(),
                "sine",
                &pitch.to_string(),
            ])
            .output()
            .map_err(|e| format!("run sox: {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "sox failed for {}: {}",
                song.file,
                String::from_utf8_lossy(&output.stderr)
            ));
        }
    }
    fs::write(staging.join(".complete"), "").map_err(|e| format!("marker: {e}"))?;
    if fs::rename(&staging, &dir).is_err() {
        // Someone else finished first; theirs is as good as ours.
        let _ = fs::remove_dir_all(&staging);
    }
    if dir.join(".complete").exists() {
        Ok(dir)
    } else {
        Err(format!("could not create {}", dir.display()))
    }
}

/// A plain mpd protocol connection, independent of the code under test.
pub struct Probe {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Probe {
    /// Connects and reads the greeting; bounded by short timeouts.
    pub fn connect(port: u16) -> Result<Probe, String> {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500))
            .map_err(|e| format!("connect {addr}: {e}"))?;
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .map_err(|e| e.to_string())?;
        stream
            .set_write_timeout(Some(Duration::from_secs(5)))
            .map_err(|e| e.to_string())?;
        let writer = stream.try_clone().map_err(|e| e.to_string())?;
        let mut reader = BufReader::new(stream);
        let mut greeting = String::new();
        reader
            .read_line(&mut greeting)
            .map_err(|e| format!("greeting: {e}"))?;
        if !greeting.starts_with("OK MPD") {
            return Err(format!("unexpected greeting {greeting:?}"));
        }
        Ok(Probe { reader, writer })
    }

    /// Sends one command line; returns the `key: value` pairs, or mpd's
    /// `ACK` line as the error.
    pub fn command(&mut self, line: &str) -> Result<Vec<(String, String)>, String> {
        self.writer
            .write_all(format!("{line}\n").as_bytes())
            .map_err(|e| format!("send {line}: {e}"))?;
        let mut pairs = Vec::new();
        loop {
            let mut text = String::new();
            let n = self
                .reader
                .read_line(&mut text)
                .map_err(|e| format!("read reply to {line}: {e}"))?;
            if n == 0 {
                return Err(format!("mpd closed the connection during {line}"));
            }
            let text = text.trim_end_matches('\n');
            if text == "OK" {
                return Ok(pairs);
            }
            if text.starts_with("ACK") {
                return Err(text.to_string());
            }
            if let Some((key, value)) = text.split_once(": ") {
                pairs.push((key.to_string(), value.to_string()));
            }
        }
    }

    /// `status` as a map.
    pub fn status(&mut self) -> HashMap<String, String> {
        self.command("status")
            .unwrap_or_else(|e| panic!("status: {e}"))
            .into_iter()
            .collect()
    }

    /// `state` from `status`: `play`, `pause` or `stop`.
    pub fn state(&mut self) -> String {
        self.status().remove("state").unwrap_or_default()
    }

    /// Title of `currentsong`, if any.
    pub fn current_title(&mut self) -> Option<String> {
        self.command("currentsong")
            .unwrap_or_else(|e| panic!("currentsong: {e}"))
            .into_iter()
            .find(|(k, _)| k == "Title")
            .map(|(_, v)| v)
    }

    /// Files in the queue, in order.
    pub fn queue_files(&mut self) -> Vec<String> {
        self.field_values("playlistinfo", "file")
    }

    /// Titles in the queue, in order.
    pub fn queue_titles(&mut self) -> Vec<String> {
        self.field_values("playlistinfo", "Title")
    }

    fn field_values(&mut self, command: &str, key: &str) -> Vec<String> {
        self.command(command)
            .unwrap_or_else(|e| panic!("{command}: {e}"))
            .into_iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v)
            .collect()
    }

    /// Polls `state` until it is `want` (or panics after `limit`).
    pub fn wait_for_state(&mut self, want: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let state = self.state();
            if state == want {
                return;
            }
            if Instant::now() >= deadline {
                panic!("mpd state is {state:?}, wanted {want:?} within {limit:?}");
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

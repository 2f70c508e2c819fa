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
const PLAY_SLOTS: [&str; 5] = ["artist", "album", "genre", "playlist", "query"];

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
        match kind {
            "music.play" => Self::play_from_slots(slots),
            "music.pause" => Ok(MusicCommand::Pause),
            "music.resume" => Ok(MusicCommand::Resume),
            "music.next" => Ok(MusicCommand::Next),
            "music.previous" => Ok(MusicCommand::Previous),
            "music.volume" | "music.volume_set" => {
                let value = slots.get("volume").ok_or_else(|| {
                    MusicError::InvalidCommand(format!("{kind} needs a `volume` slot"))
                })?;
                let level = number_slot(value).ok_or_else(|| {
                    MusicError::InvalidCommand(format!("volume {value} is not a number"))
                })?;
                Ok(MusicCommand::SetVolume(clamp_percent(level)))
            }
            "music.volume_up" | "music.volume_down" => {
                let step = match slots.get("step") {
                    None | Some(Value::Null) => DEFAULT_VOLUME_STEP,
                    Some(value) => {
                        let step = number_slot(value).ok_or_else(|| {
                            MusicError::InvalidCommand(format!("step {value} is not a number"))
                        })?;
                        clamp_percent(step).max(1)
                    }
                };
                if kind == "music.volume_up" {
                    Ok(MusicCommand::VolumeUp(step))
                } else {
                    Ok(MusicCommand::VolumeDown(step))
                }
            }
            other => Err(MusicError::InvalidCommand(format!(
                "`{other}` is not a music action"
            ))),
        }
    }

    fn play_from_slots(slots: &Map<String, Value>) -> Result<Self, MusicError> {
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
        if found.len() != 1 {
            let names: Vec<&str> = found.iter().map(|(name, _)| *name).collect();
            return Err(MusicError::InvalidCommand(format!(
                "music.play needs exactly one of artist, album, genre, playlist, query; got [{}]",
                names.join(", ")
            )));
        }
        let (name, text) = found.remove(0);
        Ok(match name {
            "artist" => MusicCommand::PlayArtist(text),
            "album" => MusicCommand::PlayAlbum(text),
            "genre" => MusicCommand::PlayGenre(text),
            "playlist" => MusicCommand::PlayPlaylist(text),
            _ => MusicCommand::PlayQuery(text),
        })
    }

    /// Whether running the command twice has the same effect as once, so it
    /// may be retried after a connection dropped mid-way.
    fn is_retry_safe(&self) -> bool {
        !matches!(
            self,
            MusicCommand::Next
                | MusicCommand::Previous
                | MusicCommand::VolumeUp(_)
                | MusicCommand::VolumeDown(_)
        )
    }
}

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

fn not_found_message(kind: SearchKind, name: &str) -> String {
    match kind {
        SearchKind::Artist => format!("I couldn't find any music by {name}"),
        SearchKind::Album => format!("I couldn't find the album {name}"),
        SearchKind::Genre => format!("I couldn't find any {name} music"),
        SearchKind::Playlist => format!("I couldn't find a playlist called {name}"),
        SearchKind::Query => format!("I couldn't find anything matching {name}"),
    }
}

/// Where mpd listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MpdAddress {
    /// A TCP host and port.
    Tcp {
        /// Host name or IP address.
        host: String,
        /// Port (mpd's default is [`DEFAULT_PORT`]).
        port: u16,
    },
    /// A unix domain socket.
    Unix(PathBuf),
}

impl MpdAddress {
    /// Parses `host`, `host:port`, `[v6addr]:port` or an absolute socket
    /// path (starting with `/`).
    pub fn parse(text: &str) -> Result<Self, MusicError> {
        let text = text.trim();
        let invalid =
            |why: &str| MusicError::InvalidCommand(format!("mpd address `{text}`: {why}"));
        if text.is_empty() {
            return Err(invalid("empty"));
        }
        if text.starts_with('/') {
            return Ok(MpdAddress::Unix(PathBuf::from(text)));
        }
        let parse_port = |p: &str| p.parse::<u16>().map_err(|_| invalid("bad port"));
        if let Some(rest) = text.strip_prefix('[') {
            let (host, after) = rest.split_once(']').ok_or_else(|| invalid("missing `]`"))?;
            let port = match after.strip_prefix(':') {
                Some(p) => parse_port(p)?,
                None if after.is_empty() => DEFAULT_PORT,
                None => return Err(invalid("junk after `]`")),
            };
            return Ok(MpdAddress::Tcp {
                host: host.to_string(),
                port,
            });
        }
        match text.rsplit_once(':') {
            // A bare IPv6 address has several colons and no port.
            Some((host, _)) if host.contains(':') => Ok(MpdAddress::Tcp {
                host: text.to_string(),
                port: DEFAULT_PORT,
            }),
            Some((host, port)) => Ok(MpdAddress::Tcp {
                host: host.to_string(),
                port: parse_port(port)?,
            }),
            None => Ok(MpdAddress::Tcp {
                host: text.to_string(),
                port: DEFAULT_PORT,
            }),
        }
    }
}

impl Default for MpdAddress {
    fn default() -> Self {
        MpdAddress::Tcp {
            host: DEFAULT_HOST.to_string(),
            port: DEFAULT_PORT,
        }
    }
}

impl fmt::Display for MpdAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MpdAddress::Tcp { host, port } if host.contains(':') => write!(f, "[{host}]:{port}"),
            MpdAddress::Tcp { host, port } => write!(f, "{host}:{port}"),
            MpdAddress::Unix(path) => write!(f, "{}", path.display()),
        }
    }
}

/// How to reach mpd and how long to wait for it.
#[derive(Clone)]
pub struct MpdConfig {
    /// Where mpd listens (default `127.0.0.1:6600`).
    pub address: MpdAddress,
    /// mpd's password, if it has one.
    pub password: Option<String>,
    /// Limit for opening a connection, including mpd's greeting.
    pub connect_timeout: Duration,
    /// Limit for each mpd round trip.
    pub command_timeout: Duration,
    /// At most this many songs are queued by one play request.
    pub max_songs: usize,
}

impl MpdConfig {
    /// Defaults, with the given address.
    pub fn new(address: MpdAddress) -> Self {
        MpdConfig {
            address,
            ..MpdConfig::default()
        }
    }

    /// Defaults, for mpd on `host:port`.
    pub fn tcp(host: &str, port: u16) -> Self {
        MpdConfig::new(MpdAddress::Tcp {
            host: host.to_string(),
            port,
        })
    }
}

impl Default for MpdConfig {
    fn default() -> Self {
        MpdConfig {
            address: MpdAddress::default(),
            password: None,
            connect_timeout: Duration::from_secs(3),
            command_timeout: Duration::from_secs(5),
            max_songs: 2000,
        }
    }
}

impl fmt::Debug for MpdConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MpdConfig")
            .field("address", &self.address)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("connect_timeout", &self.connect_timeout)
            .field("command_timeout", &self.command_timeout)
            .field("max_songs", &self.max_songs)
            .finish()
    }
}

/// A request to the worker thread and where to send its answer.
type Job = (
    MusicCommand,
    std_mpsc::SyncSender<Result<String, MusicError>>,
);

/// The real [`MusicPlayer`]: an mpd client.
///
/// Construction starts a worker thread (named `voicegate-mpd`) that owns a
/// current-thread tokio runtime and the mpd connection; nothing connects
/// until the first command. [`MusicPlayer::execute`] hands the command to the
/// worker and blocks until it answers, which is bounded by the configured
/// timeouts. It is fine to call from any plain thread; from async code, wrap
/// the call in `spawn_blocking` (it blocks, it does not panic). Dropping the
/// player stops the worker and closes the connection.
pub struct MpdPlayer {
    address: MpdAddress,
    jobs: tokio_mpsc::UnboundedSender<Job>,
}

impl MpdPlayer {
    /// Starts the worker; does not connect yet.
    pub fn new(config: MpdConfig) -> Result<Self, MusicError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| MusicError::Runtime(format!("cannot build a tokio runtime: {e}")))?;
        let (jobs, mut inbox) = tokio_mpsc::unbounded_channel::<Job>();
        let address = config.address.clone();
        let mut session = Session {
            config,
            client: None,
        };
        thread::Builder::new()
            .name("voicegate-mpd".to_string())
            .spawn(move || {
                runtime.block_on(async move {
                    while let Some((cmd, reply)) = inbox.recv().await {
                        let result = session.execute(&cmd).await;
                        // The caller may have gone away; nothing to do then.
                        let _ = reply.send(result);
                    }
                });
            })
            .map_err(|e| MusicError::Runtime(format!("cannot start the mpd thread: {e}")))?;
        Ok(MpdPlayer { address, jobs })
    }

    /// Where this player connects.
    pub fn address(&self) -> &MpdAddress {
        &self.address
    }
}

impl MusicPlayer for MpdPlayer {
    fn execute(&mut self, cmd: &MusicCommand) -> Result<String, MusicError> {
        let (reply, answer) = std_mpsc::sync_channel(1);
        self.jobs
            .send((cmd.clone(), reply))
            .map_err(|_| MusicError::Runtime("the mpd thread has stopped".to_string()))?;
        answer
            .recv()
            .map_err(|_| MusicError::Runtime("the mpd thread stopped mid-command".to_string()))?
    }
}

impl fmt::Debug for MpdPlayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MpdPlayer")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

/// The worker's state: config and the current connection, if any.
struct Session {
    config: MpdConfig,
    client: Option<Client>,
}

impl Session {
    async fn execute(&mut self, cmd: &MusicCommand) -> Result<String, MusicError> {
        let client = self.client().await?;
        let mpd = Mpd {
            client: &client,
            config: &self.config,
        };
        match mpd.run(cmd).await {
            Err(e) if e.breaks_connection() => {
                self.client = None;
                if cmd.is_retry_safe() && matches!(e, MusicError::Disconnected { .. }) {
                    let client = self.client().await?;
                    let mpd = Mpd {
                        client: &client,
                        config: &self.config,
                    };
                    let result = mpd.run(cmd).await;
                    if matches!(&result, Err(e) if e.breaks_connection()) {
                        self.client = None;
                    }
                    result
                } else {
                    Err(e)
                }
            }
            other => other,
        }
    }

    /// A live connection: the current one if it still answers `ping`,
    /// otherwise a new one.
    async fn client(&mut self) -> Result<Client, MusicError> {
        if let Some(client) = self.client.take()
            && !client.is_connection_closed()
        {
            let mpd = Mpd {
                client: &client,
                config: &self.config,
            };
            if mpd.send(new_command("ping", &[])?).await.is_ok() {
                self.client = Some(client.clone());
                return Ok(client);
            }
        }
        let client = connect(&self.config).await?;
        self.client = Some(client.clone());
        Ok(client)
    }
}

async fn connect(config: &MpdConfig) -> Result<Client, MusicError> {
    let addr = config.address.to_string();
    let failed = |reason: String| MusicError::Connect {
        addr: addr.clone(),
        reason,
    };
    let attempt = async {
        let password = config.password.as_deref();
        let connection = match &config.address {
            MpdAddress::Tcp { host, port } => {
                let stream = tokio::net::TcpStream::connect((host.as_str(), *port))
                    .await
                    .map_err(|e| failed(e.to_string()))?;
                // Small request/response traffic: don't wait for Nagle.
                let _ = stream.set_nodelay(true);
                Client::connect_with_password_opt(stream, password).await
            }
            #[cfg(unix)]
            MpdAddress::Unix(path) => {
                let stream = tokio::net::UnixStream::connect(path)
                    .await
                    .map_err(|e| failed(e.to_string()))?;
                Client::connect_with_password_opt(stream, password).await
            }
            #[cfg(not(unix))]
            MpdAddress::Unix(_) => {
                return Err(failed("unix sockets are not supported here".to_string()));
            }
        };
        match connection {
            Ok((client, _events)) => Ok(client),
            Err(mpd_client::client::ConnectWithPasswordError::IncorrectPassword) => {
                Err(failed("mpd refused the password".to_string()))
            }
            Err(mpd_client::client::ConnectWithPasswordError::ProtocolError(e)) => {
                Err(failed(match e {
                    MpdProtocolError::Io(io) => io.to_string(),
                    MpdProtocolError::InvalidMessage => {
                        "it did not greet like mpd (is something else on that port?)".to_string()
                    }
                }))
            }
        }
    };
    match tokio::time::timeout(config.connect_timeout, attempt).await {
        Ok(result) => result,
        Err(_) => Err(failed(format!(
            "no answer within {:?}",
            config.connect_timeout
        ))),
    }
}

/// A raw mpd command and its name (for error messages).
struct Cmd {
    name: String,
    raw: RawCommand,
}

impl Cmd {
    /// Adds an argument, without panicking on bad input.
    ///
    /// `mpd_protocol` quotes an argument only when it contains a space or a
    /// tab; otherwise it backslash-escapes quotes and backslashes in an
    /// unquoted word, which mpd rejects ("Invalid unquoted character"). Such
    /// arguments are refused here with an explanation instead of being sent.
    fn arg(mut self, arg: &str) -> Result<Self, MusicError> {
        if breaks_unquoted(arg) {
            return Err(MusicError::Protocol {
                command: self.name,
                message: format!(
                    "cannot send `{arg}`: a quote or backslash without a space \
                     is sent unquoted by mpd_client, and mpd rejects it"
                ),
            });
        }
        match self.raw.add_argument(arg) {
            Ok(()) => Ok(self),
            Err(e) => Err(MusicError::Protocol {
                command: self.name,
                message: e.to_string(),
            }),
        }
    }
}

/// Whether `mpd_protocol` would send `arg` as an unquoted word with
/// backslash escapes (see [`Cmd::arg`]).
fn breaks_unquoted(arg: &str) -> bool {
    !arg.contains([' ', '\t']) && arg.contains(['\'', '"', '\\'])
}

/// Builds a raw command, without panicking on bad input (the `mpd_client`
/// constructors panic on a newline in an argument).
fn new_command(name: &str, args: &[&str]) -> Result<Cmd, MusicError> {
    let raw = RawCommand::build(name).map_err(|e| MusicError::Protocol {
        command: name.to_string(),
        message: e.to_string(),
    })?;
    let mut command = Cmd {
        name: name.to_string(),
        raw,
    };
    for arg in args {
        command = command.arg(arg)?;
    }
    Ok(command)
}

/// Appends one song to the queue. A URI that cannot be sent as a plain
/// argument (see [`Cmd::arg`]) is added through a `file ==` filter, whose
/// expression always contains spaces and so is quoted properly.
fn add_command(uri: &str) -> Result<Cmd, MusicError> {
    if breaks_unquoted(uri) {
        new_command("findadd", &[filter_expr("file", "==", uri).as_str()])
    } else {
        new_command("add", &[uri])
    }
}

/// The filter expression `(tag op "value")`, escaped for mpd's filter
/// parser. Built here because `mpd_client::filter::Filter` escapes quotes
/// in values wrongly and does not escape backslashes. The expression is
/// then sent as an ordinary (quoted, escaped) argument.
fn filter_expr(tag: &str, op: &str, value: &str) -> String {
    let escaped = value.replace('\\', "\\\\").replace('"', "\\\"");
    format!("({tag} {op} \"{escaped}\")")
}

/// All of `exprs` (an `AND` needs at least two; one is used as it is).
fn all_of(exprs: &[String]) -> String {
    match exprs {
        [one] => one.clone(),
        _ => format!("({})", exprs.join(" AND ")),
    }
}

/// What `status` says, the parts we use. `volume` is `None` without a mixer.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PlayerStatus {
    state: String,
    volume: Option<u8>,
    queue_length: usize,
}

/// One song from a search or `currentsong`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Track {
    file: String,
    artist: Option<String>,
    album_artist: Option<String>,
    album: Option<String>,
    title: Option<String>,
    disc: u32,
    track: u32,
}

impl Track {
    /// Album artist if tagged, else artist.
    fn main_artist(&self) -> Option<&str> {
        self.album_artist.as_deref().or(self.artist.as_deref())
    }

    /// "Title by Artist", or whatever part is known, or the file name.
    fn describe(&self) -> String {
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
fn parse_tracks<'a>(fields: impl IntoIterator<Item = (&'a str, &'a str)>) -> Vec<Track> {
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
fn leading_number(text: &str) -> u32 {
    let digits: String = text
        .trim()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().unwrap_or(u32::MAX)
}

/// Library order: artist, album, disc, track, file.
fn sort_tracks(tracks: &mut [Track]) {
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
fn dedup_tracks(tracks: Vec<Track>) -> Vec<Track> {
    let mut seen = std::collections::HashSet::new();
    tracks
        .into_iter()
        .filter(|t| seen.insert(t.file.clone()))
        .collect()
}

/// Spoken text made safe for the protocol: control characters become
/// spaces, runs of whitespace collapse, ends are trimmed.
fn clean_text(text: &str) -> String {
    text.split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// For comparing what was said with what is tagged.
fn normalize(text: &str) -> String {
    clean_text(text).to_lowercase()
}

/// The value of a JSON number or numeric string, rounded.
fn number_slot(value: &Value) -> Option<i64> {
    let number = match value {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => s.trim().trim_end_matches('%').trim().parse::<f64>().ok()?,
        _ => return None,
    };
    number.is_finite().then(|| number.round() as i64)
}

fn clamp_percent(value: i64) -> u8 {
    // The clamp makes the cast lossless.
    value.clamp(0, 100) as u8
}

/// What a free query turned out to name.
enum QueryMatch {
    Artist(Vec<Track>),
    Album(Vec<Track>),
    Title(Vec<Track>),
    Any(Vec<Track>),
}

/// Decides what a query meant, from the songs where any tag contains it:
/// an artist if some artist is exactly the query, else an album, else a
/// title, else all of them.
fn classify_query(query: &str, tracks: Vec<Track>) -> QueryMatch {
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
fn pick_playlist<'a>(wanted: &str, names: &'a [String]) -> Option<&'a str> {
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
fn single_value<'a>(
    tracks: &'a [Track],
    field: impl Fn(&'a Track) -> Option<&'a str>,
) -> Option<&'a str> {
    let mut values = tracks.iter().filter_map(&field);
    let first = values.next()?;
    let key = normalize(first);
    values.all(|v| normalize(v) == key).then_some(first)
}

/// One connection and its config, for a single command.
struct Mpd<'a> {
    client: &'a Client,
    config: &'a MpdConfig,
}

impl Mpd<'_> {
    fn addr(&self) -> String {
        self.config.address.to_string()
    }

    fn command_error(&self, operation: &str, error: CommandError) -> MusicError {
        match error {
            CommandError::ConnectionClosed => MusicError::Disconnected {
                addr: self.addr(),
                operation: operation.to_string(),
                reason: "mpd closed the connection".to_string(),
            },
            CommandError::Protocol(e) => MusicError::Disconnected {
                addr: self.addr(),
                operation: operation.to_string(),
                reason: match e {
                    MpdProtocolError::Io(io) => io.to_string(),
                    MpdProtocolError::InvalidMessage => "unreadable reply".to_string(),
                },
            },
            CommandError::ErrorResponse { error, .. } => {
                if error.message.contains("No mixer") {
                    MusicError::NoMixer
                } else {
                    MusicError::Protocol {
                        command: operation.to_string(),
                        message: error.message.to_string(),
                    }
                }
            }
            CommandError::InvalidTypedResponse(e) => MusicError::Protocol {
                command: operation.to_string(),
                message: e.to_string(),
            },
        }
    }

    /// One round trip, bounded by the command timeout.
    async fn send(&self, command: Cmd) -> Result<Frame, MusicError> {
        let operation = command.name;
        let timeout = self.config.command_timeout;
        match tokio::time::timeout(timeout, self.client.raw_command(command.raw)).await {
            Ok(Ok(frame)) => Ok(frame),
            Ok(Err(e)) => Err(self.command_error(&operation, e)),
            Err(_) => Err(MusicError::Timeout {
                addr: self.addr(),
                operation,
                timeout,
            }),
        }
    }

    /// A command list in one round trip, bounded by the command timeout.
    async fn send_list(&self, commands: Vec<Cmd>) -> Result<(), MusicError> {
        let mut commands = commands.into_iter();
        let Some(first) = commands.next() else {
            return Ok(());
        };
        let operation = format!("command list starting with {}", first.name);
        let mut list = RawCommandList::new(first.raw);
        for command in commands {
            list.add(command.raw);
        }
        let timeout = self.config.command_timeout;
        match tokio::time::timeout(timeout, self.client.raw_command_list(list)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(self.command_error(&operation, e)),
            Err(_) => Err(MusicError::Timeout {
                addr: self.addr(),
                operation,
                timeout,
            }),
        }
    }

    async fn status(&self) -> Result<PlayerStatus, MusicError> {
        let frame = self.send(new_command("status", &[])?).await?;
        let field = |key: &str| frame.find(key).map(str::trim);
        let state = field("state")
            .ok_or_else(|| MusicError::Protocol {
                command: "status".to_string(),
                message: "no `state` in the reply".to_string(),
            })?
            .to_string();
        // mpd without a mixer omits `volume` (older versions send -1).
        let volume = field("volume")
            .and_then(|v| v.parse::<i64>().ok())
            .filter(|v| *v >= 0)
            .map(clamp_percent);
        let queue_length = field("playlistlength")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        Ok(PlayerStatus {
            state,
            volume,
            queue_length,
        })
    }

    async fn current_song(&self) -> Result<Option<Track>, MusicError> {
        let frame = self.send(new_command("currentsong", &[])?).await?;
        Ok(parse_tracks(frame.fields()).into_iter().next())
    }

    /// `search` (case-insensitive), at most `max_songs` results.
    async fn search(&self, filter: &str) -> Result<Vec<Track>, MusicError> {
        let window = format!("0:{}", self.config.max_songs.max(1));
        let command = new_command("search", &[filter, "window", window.as_str()])?;
        let frame = self.send(command).await?;
        Ok(parse_tracks(frame.fields()))
    }

    /// Songs where any of `tags` matches `value` with `operator`.
    async fn search_tags(
        &self,
        tags: &[&str],
        operator: &str,
        value: &str,
    ) -> Result<Vec<Track>, MusicError> {
        let mut found = Vec::new();
        for tag in tags {
            found.extend(self.search(&filter_expr(tag, operator, value)).await?);
        }
        Ok(dedup_tracks(found))
    }

    /// Exact (case-insensitive) match first; a substring match if nothing is
    /// exact.
    async fn search_exact_then_contains(
        &self,
        tags: &[&str],
        value: &str,
    ) -> Result<Vec<Track>, MusicError> {
        let exact = self.search_tags(tags, "==", value).await?;
        if !exact.is_empty() {
            return Ok(exact);
        }
        self.search_tags(tags, "contains", value).await
    }

    /// Replaces the queue with `tracks` and starts the first.
    async fn play_tracks(&self, tracks: &[Track]) -> Result<(), MusicError> {
        let tracks = &tracks[..tracks.len().min(self.config.max_songs.max(1))];
        let chunks: Vec<&[Track]> = tracks.chunks(ADD_CHUNK).collect();
        let last = chunks.len().saturating_sub(1);
        for (i, chunk) in chunks.iter().enumerate() {
            let mut commands = Vec::with_capacity(chunk.len() + 2);
            if i == 0 {
                commands.push(new_command("clear", &[])?);
            }
            for track in chunk.iter() {
                commands.push(add_command(&track.file)?);
            }
            if i == last {
                commands.push(new_command("play", &["0"])?);
            }
            self.send_list(commands).await?;
        }
        Ok(())
    }

    async fn run(&self, cmd: &MusicCommand) -> Result<String, MusicError> {
        match cmd {
            MusicCommand::PlayArtist(name) => self.play_artist(&clean_text(name)).await,
            MusicCommand::PlayAlbum(name) => self.play_album(&clean_text(name)).await,
            MusicCommand::PlayGenre(name) => self.play_genre(&clean_text(name)).await,
            MusicCommand::PlayPlaylist(name) => self.play_playlist(&clean_text(name)).await,
            MusicCommand::PlayQuery(text) => self.play_query(&clean_text(text)).await,
            MusicCommand::Pause => self.pause().await,
            MusicCommand::Resume => self.resume().await,
            MusicCommand::Next => self.skip("next").await,
            MusicCommand::Previous => self.skip("previous").await,
            MusicCommand::SetVolume(level) => self.set_volume(i64::from(*level)).await,
            MusicCommand::VolumeUp(step) => self.change_volume(i64::from(*step)).await,
            MusicCommand::VolumeDown(step) => self.change_volume(-i64::from(*step)).await,
        }
    }

    async fn play_artist(&self, name: &str) -> Result<String, MusicError> {
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

    async fn play_album(&self, name: &str) -> Result<String, MusicError> {
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

    async fn play_genre(&self, name: &str) -> Result<String, MusicError> {
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

    async fn play_playlist(&self, name: &str) -> Result<String, MusicError> {
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

    async fn play_query(&self, text: &str) -> Result<String, MusicError> {
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

    async fn pause(&self) -> Result<String, MusicError> {
        match self.status().await?.state.as_str() {
            "play" => {
                self.send(new_command("pause", &["1"])?).await?;
                Ok("Paused.".to_string())
            }
            "pause" => Ok("It's already paused.".to_string()),
            _ => Err(MusicError::NotPlaying),
        }
    }

    async fn resume(&self) -> Result<String, MusicError> {
        let status = self.status().await?;
        match status.state.as_str() {
            "play" => Ok("It's already playing.".to_string()),
            "pause" => {
                self.send(new_command("pause", &["0"])?).await?;
                Ok("Resuming.".to_string())
            }
            _ if status.queue_length == 0 => {
                Err(MusicError::NothingToPlay("the queue is empty".to_string()))
            }
            _ => {
                self.send(new_command("play", &[])?).await?;
                Ok("Playing.".to_string())
            }
        }
    }

    /// `next` or `previous`.
    async fn skip(&self, which: &str) -> Result<String, MusicError> {
        if self.status().await?.state == "stop" {
            return Err(MusicError::NotPlaying);
        }
        self.send(new_command(which, &[])?).await?;
        match self.current_song().await? {
            Some(track) => Ok(format!("Playing {}.", track.describe())),
            None => Ok("That was the last song in the queue.".to_string()),
        }
    }

    async fn set_volume(&self, level: i64) -> Result<String, MusicError> {
        if self.status().await?.volume.is_none() {
            return Err(MusicError::NoMixer);
        }
        let level = clamp_percent(level);
        self.send(new_command("setvol", &[level.to_string().as_str()])?)
            .await?;
        Ok(format!("Volume set to {level} percent."))
    }

    async fn change_volume(&self, delta: i64) -> Result<String, MusicError> {
        let current = self.status().await?.volume.ok_or(MusicError::NoMixer)?;
        let level = clamp_percent(i64::from(current) + delta);
        if level == current {
            let edge = if delta > 0 { "maximum" } else { "minimum" };
            return Ok(format!("The volume is already at its {edge}."));
        }
        self.send(new_command("setvol", &[level.to_string().as_str()])?)
            .await?;
        let direction = if delta > 0 { "up" } else { "down" };
        Ok(format!("Volume {direction} to {level} percent."))
    }
}

/// Words the reply to a play request from what was said and what was found.
type Sentence = fn(&str, &[Track]) -> String;

fn artist_sentence(spoken: &str, tracks: &[Track]) -> String {
    let artist = single_value(tracks, Track::main_artist).unwrap_or(spoken);
    format!("Playing music by {artist}.")
}

fn album_sentence(spoken: &str, tracks: &[Track]) -> String {
    let album = single_value(tracks, |t| t.album.as_deref()).unwrap_or(spoken);
    match single_value(tracks, Track::main_artist) {
        Some(artist) => format!("Playing the album {album} by {artist}."),
        None => format!("Playing the album {album}."),
    }
}

fn songs_sentence(spoken: &str, tracks: &[Track]) -> String {
    match tracks {
        [only] => format!("Playing {}.", only.describe()),
        _ => format!("Playing {} songs matching {spoken}.", tracks.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
    fn music_play_needs_exactly_one_slot() {
        for value in [
            json!({}),
            json!({"artist": "a", "album": "b"}),
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

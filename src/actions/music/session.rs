//! The mpd session: where mpd is, the worker thread that owns the
//! connection, the protocol commands sent, and the transport commands
//! (pause, resume, skip, volume).
//!
//! Exists so that everything that waits on the network (bounded by
//! [`MpdConfig`]'s timeouts, reconnecting after a drop) is in one place;
//! callers see only the synchronous [`MpdPlayer`].

use super::*;

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
pub(super) type Job = (
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
pub(super) struct Session {
    pub(super) config: MpdConfig,
    pub(super) client: Option<Client>,
}

impl Session {
    pub(super) async fn execute(&mut self, cmd: &MusicCommand) -> Result<String, MusicError> {
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
    pub(super) async fn client(&mut self) -> Result<Client, MusicError> {
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
pub(super) struct Cmd {
    pub(super) name: String,
    pub(super) raw: RawCommand,
}

impl Cmd {
    /// Adds an argument, without panicking on bad input.
    ///
    /// `mpd_protocol` quotes an argument only when it contains a space or a
    /// tab; otherwise it backslash-escapes quotes and backslashes in an
    /// unquoted word, which mpd rejects ("Invalid unquoted character"). Such
    /// arguments are refused here with an explanation instead of being sent.
    pub(super) fn arg(mut self, arg: &str) -> Result<Self, MusicError> {
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
pub(super) fn breaks_unquoted(arg: &str) -> bool {
    !arg.contains([' ', '\t']) && arg.contains(['\'', '"', '\\'])
}

/// Builds a raw command, without panicking on bad input (the `mpd_client`
/// constructors panic on a newline in an argument).
pub(super) fn new_command(name: &str, args: &[&str]) -> Result<Cmd, MusicError> {
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
pub(super) fn add_command(uri: &str) -> Result<Cmd, MusicError> {
    if breaks_unquoted(uri) {
        new_command("findadd", &[filter_expr("file", "==", uri).as_str()])
    } else {
        new_command("add", &[uri])
    }
}

/// What `status` says, the parts we use. `volume` is `None` without a mixer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct PlayerStatus {
    pub(super) state: String,
    pub(super) volume: Option<u8>,
    pub(super) queue_length: usize,
}

/// One connection and its config, for a single command.
pub(super) struct Mpd<'a> {
    pub(super) client: &'a Client,
    pub(super) config: &'a MpdConfig,
}

impl Mpd<'_> {
    pub(super) fn addr(&self) -> String {
        self.config.address.to_string()
    }

    pub(super) fn command_error(&self, operation: &str, error: CommandError) -> MusicError {
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
    pub(super) async fn send(&self, command: Cmd) -> Result<Frame, MusicError> {
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
    pub(super) async fn send_list(&self, commands: Vec<Cmd>) -> Result<(), MusicError> {
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

    pub(super) async fn status(&self) -> Result<PlayerStatus, MusicError> {
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

    pub(super) async fn current_song(&self) -> Result<Option<Track>, MusicError> {
        let frame = self.send(new_command("currentsong", &[])?).await?;
        Ok(parse_tracks(frame.fields()).into_iter().next())
    }

    /// `search` (case-insensitive), at most `max_songs` results.
    pub(super) async fn search(&self, filter: &str) -> Result<Vec<Track>, MusicError> {
        let window = format!("0:{}", self.config.max_songs.max(1));
        let command = new_command("search", &[filter, "window", window.as_str()])?;
        let frame = self.send(command).await?;
        Ok(parse_tracks(frame.fields()))
    }

    /// Songs where any of `tags` matches `value` with `operator`.
    pub(super) async fn search_tags(
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
    pub(super) async fn search_exact_then_contains(
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
    pub(super) async fn play_tracks(&self, tracks: &[Track]) -> Result<(), MusicError> {
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

    pub(super) async fn run(&self, cmd: &MusicCommand) -> Result<String, MusicError> {
        match cmd {
            MusicCommand::PlayArtist(name) => self.play_artist(&clean_text(name)).await,
            MusicCommand::PlayAlbum(name) => self.play_album(&clean_text(name)).await,
            MusicCommand::PlayGenre(name) => self.play_genre(&clean_text(name)).await,
            MusicCommand::PlayPlaylist(name) => self.play_playlist(&clean_text(name)).await,
            MusicCommand::PlayQuery(text) => self.play_query(&clean_text(text)).await,
            MusicCommand::PlaySearch(search) => self.play_search(search).await,
            MusicCommand::Pause => self.pause().await,
            MusicCommand::Resume => self.resume().await,
            MusicCommand::Next => self.skip("next").await,
            MusicCommand::Previous => self.skip("previous").await,
            MusicCommand::SetVolume(level) => self.set_volume(i64::from(*level)).await,
            MusicCommand::VolumeUp(step) => self.change_volume(i64::from(*step)).await,
            MusicCommand::VolumeDown(step) => self.change_volume(-i64::from(*step)).await,
        }
    }
}

impl Mpd<'_> {
    pub(super) async fn pause(&self) -> Result<String, MusicError> {
        match self.status().await?.state.as_str() {
            "play" => {
                self.send(new_command("pause", &["1"])?).await?;
                Ok("Paused.".to_string())
            }
            "pause" => Ok("It's already paused.".to_string()),
            _ => Err(MusicError::NotPlaying),
        }
    }

    pub(super) async fn resume(&self) -> Result<String, MusicError> {
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
    pub(super) async fn skip(&self, which: &str) -> Result<String, MusicError> {
        if self.status().await?.state == "stop" {
            return Err(MusicError::NotPlaying);
        }
        self.send(new_command(which, &[])?).await?;
        match self.current_song().await? {
            Some(track) => Ok(format!("Playing {}.", track.describe())),
            None => Ok("That was the last song in the queue.".to_string()),
        }
    }

    pub(super) async fn set_volume(&self, level: i64) -> Result<String, MusicError> {
        if self.status().await?.volume.is_none() {
            return Err(MusicError::NoMixer);
        }
        let level = clamp_percent(level);
        self.send(new_command("setvol", &[level.to_string().as_str()])?)
            .await?;
        Ok(format!("Volume set to {level} percent."))
    }

    pub(super) async fn change_volume(&self, delta: i64) -> Result<String, MusicError> {
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

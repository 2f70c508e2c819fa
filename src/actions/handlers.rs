//! Executors for high-stakes actions: purchases and bookings.
//!
//! This module exists so that the things that cost money or commit the user
//! to something (`purchase.order`, `purchase.coffee`, `booking.table`,
//! `booking.ride`) have exactly one way out of the program, and that way only
//! accepts a [`ConfirmedAction`] — a value only the gate can make, after the
//! user said "yes" to the read-back. An [`ActionRequest`](crate::request::ActionRequest)
//! cannot reach [`execute`], so nothing unconfirmed can be ordered or booked.
//!
//! # Handlers
//!
//! Each action kind gets a handler in the config; a kind without one is
//! handled by `record`:
//!
//! ```toml
//! [handlers."purchase.order"]
//! type = "webhook"
//! url = "http://127.0.0.1:8080/orders"   # http://host[:port]/path
//! timeout_secs = 10                       # optional, default 10, at most 300
//! headers = { Authorization = "Bearer ..." }   # optional
//! allow_cleartext_headers = false         # optional; see below
//!
//! [handlers."booking.table"]
//! type = "command"
//! program = "/usr/local/bin/book-table"
//! args = ["--json"]                       # optional
//! timeout_secs = 10                       # optional, default 10, at most 300
//! env = ["BOOKING_API_TOKEN"]             # optional: passed through if set
//!
//! [handlers."booking.ride"]
//! type = "record"                         # the default: record and read back
//! ```
//!
//! - `webhook`: an HTTP `POST` of the JSON body below, with the headers
//!   `Content-Type: application/json`, `Idempotency-Key: <key>` (see
//!   below) and the configured ones. The timeout covers connecting and the
//!   whole exchange. A 2xx answer means done. A 4xx means failed: the
//!   merchant refused the order. A 5xx or a 3xx (redirects are never
//!   followed) means **unknown**, as does a timeout or broken connection
//!   once the request may have been sent: the merchant may have taken the
//!   order. Only a failure to connect at all (refused, host not found,
//!   connect timeout) is failed with "nothing was sent". Only plain
//!   `http://` is supported: this build of `ureq` has no TLS (it would need
//!   ureq's `rustls` feature), which is fine for merchants on loopback or
//!   behind a local gateway. Proxy
//!   environment variables are ignored, so the order goes straight to the
//!   configured host. Header values are usually secrets (an API token), and
//!   plain HTTP sends them readable by anyone on the path, so a webhook with
//!   `headers` whose host is not this machine (`localhost`, `127.0.0.0/8`
//!   or `[::1]`) is refused when the config is loaded, unless the table
//!   says `allow_cleartext_headers = true` (for a network you trust, e.g. a
//!   gateway on a private link). Without headers no secret is at stake and
//!   any host is accepted.
//! - `command`: runs `program` with `args` (no shell) and the JSON body on
//!   its stdin, in a minimal environment: voicegate's own environment is
//!   *not* passed on (it may hold secrets meant for something else). The
//!   program gets `PATH=/usr/local/bin:/usr/bin:/bin`,
//!   `VOICEGATE_ACTION_ID`, `VOICEGATE_ACTION_KIND` and
//!   `VOICEGATE_IDEMPOTENCY_KEY`, plus each variable named in `env` that is
//!   set in voicegate's environment, with its value there (naming `PATH`
//!   replaces the default; `HOME`, `LANG` and the like must be named to be
//!   passed). Exit status 0 means done; the first non-empty line of
//!   stdout, if any, is what the user hears. A non-zero exit status means failed (the program
//!   says it did not do it), with the tail of stderr as the reason. A
//!   program killed by a signal, or killed after the timeout, is
//!   **unknown**: it may have got as far as ordering. The program runs in a
//!   process group of its own, and after the timeout the whole group is
//!   killed (SIGKILL), so a script's children and background jobs stop
//!   with it. A program that exits by itself is not signalled: background
//!   jobs it leaves behind are its business.
//! - `record`: nothing external happens; the confirmed action is returned as
//!   the outcome's detail (so it lands in the audit log) and read back.
//!
//! # Unknown outcomes and the idempotency key
//!
//! Nothing here retries: a retry could order twice. An unknown outcome is
//! reported as [`Outcome::Unknown`]; the pipeline records it as `unknown`
//! (needs review), counts it toward the spend cap, and tells the user to
//! check before ordering again.
//!
//! The key sent with an action (`Idempotency-Key` header,
//! `"idempotency_key"` in the body, `VOICEGATE_IDEMPOTENCY_KEY` for a
//! command) is chosen by the caller, not here (see [`IdempotencyKey`]):
//! normally the action's id, so every confirmed action is a distinct order;
//! but when the user confirms the same order again shortly after one whose
//! outcome was unknown, it is that order's key. A merchant that honours
//! idempotency keys (stores the result of the first request with a key and
//! answers a repeat with it instead of acting again) then charges once. That
//! is all the key guarantees: a merchant that ignores it may charge twice,
//! and a repeat after `executed`, after `failed`, or outside the window is a
//! new order with a new key.
//!
//! A repeat sent under an earlier key carries the same `intent`, `kind`,
//! `slots` and `params`, but its own `action_id`, `confirmed_at` and
//! `digest` (and its `readback` may be worded differently): a merchant
//! should recognise it by the key (and may check those four order fields),
//! not by the whole body.
//!
//! # The request body (an API for merchants)
//!
//! One JSON object, the same for webhooks and commands:
//!
//! ```json
//! {
//!   "action_id": "5f0c3a9e-…",          // UUID of this action
//!   "idempotency_key": "5f0c3a9e-…",    // equals the Idempotency-Key header: this
//!                                       // action's id, or an earlier action's id
//!                                       // when this repeats an order whose
//!                                       // outcome was unknown
//!   "intent": "OrderItem",              // the intent that matched
//!   "kind": "purchase.order",           // the action kind
//!   "slots": {"item": "coffee beans", "quantity": 2, "unit": "bags"},
//!   "params": {…},                      // parameters from the intent file
//!   "readback": "Two bags of coffee beans. Shall I order?",
//!   "confirmed_at": "2026-01-01T08:30:00Z",   // RFC 3339, UTC
//!   "digest": "9c1e…"                   // SHA-256 (hex) of what was confirmed
//! }
//! ```
//!
//! Slots by kind: `purchase.order` — `item`, `quantity`, `unit`;
//! `purchase.coffee` — `drink`, `size`, `roast`, `shots`, `milk`, `sugar`;
//! `booking.table` — `party_size`, `day`, `time`, `place`; `booking.ride` —
//! `destination`, `time`, `day`. Slots the user did not fill are absent.
//!
//! A merchant may answer with a JSON object holding a `"message"` string; on
//! success it is what the user hears (otherwise `"Done: <read-back>"`), on
//! failure or an unknown outcome it is quoted in the reason. Up to 4 KiB of
//! the answer is kept in the outcome's detail as
//! `{"status": 201, "body": "..."}` (plus
//! `"body_truncated": true` when it was longer). A command's detail is
//! `{"exit_code": 0, "stdout": "...", "stderr": "..."}` (the first 4 KiB of
//! stdout, the last 4 KiB of stderr); `record`'s is `{"recorded": <body>}`.
//!
//! [`execute`] blocks for up to the handler's timeout (plus a moment to
//! collect a command's output); run it off the gate's thread.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use chrono::SecondsFormat;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::gate::ConfirmedAction;
use crate::request::kind::{Family, UnknownKind};
use crate::request::{ActionKind, IdempotencyKey, Outcome};

/// The timeout, in seconds, when a handler does not set `timeout_secs`.
pub const DEFAULT_TIMEOUT_SECS: u64 = 10;

/// The largest `timeout_secs` a handler may set.
pub const MAX_TIMEOUT_SECS: u64 = 300;

/// How much of a merchant's answer (or a command's stdout and stderr) is kept
/// in an outcome's detail, in bytes.
pub const OUTPUT_LIMIT: usize = 4096;

/// The longest message, in characters, taken from a merchant or a command to
/// say to the user.
const MESSAGE_LIMIT: usize = 300;

/// How much of a failure's explanation (stderr tail, error body) goes into
/// the reason, in characters.
const REASON_LIMIT: usize = 300;

/// How often a running command is checked.
const POLL: Duration = Duration::from_millis(10);

/// How long to wait for a finished command's output pipes to close (a
/// background grandchild may hold them open).
const OUTPUT_GRACE: Duration = Duration::from_millis(500);

/// Headers voicegate sets itself; configuring them is an error.
const RESERVED_HEADERS: [&str; 5] = [
    "content-type",
    "content-length",
    "idempotency-key",
    "host",
    "transfer-encoding",
];

fn default_timeout() -> u64 {
    DEFAULT_TIMEOUT_SECS
}

/// How one action kind is executed once confirmed.
///
/// Deserialized from a table whose `type` is `webhook`, `command` or
/// `record`; unknown fields are rejected (also for `record`, which takes
/// none).
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(from = "RawHandlerConfig")]
pub enum HandlerConfig {
    /// POST the JSON body to a merchant over plain HTTP.
    Webhook {
        /// `http://host[:port]/path`.
        url: String,
        /// Budget for connecting plus the whole exchange, in seconds
        /// (default [`DEFAULT_TIMEOUT_SECS`]).
        timeout_secs: u64,
        /// Extra headers (e.g. `Authorization`). Their values are secrets:
        /// `Debug` does not print them.
        headers: BTreeMap<String, String>,
        /// Send `headers` over plain HTTP to a host that is not loopback.
        /// Off by default: such a config is refused, since the values would
        /// cross the network in cleartext.
        allow_cleartext_headers: bool,
    },
    /// Run a program with the JSON body on its stdin.
    Command {
        /// The program to run (no shell is involved).
        program: PathBuf,
        /// Its arguments.
        args: Vec<String>,
        /// After this many seconds the program's process group is killed
        /// (default [`DEFAULT_TIMEOUT_SECS`]).
        timeout_secs: u64,
        /// Names of variables passed through from voicegate's environment
        /// (when set there); nothing else of it is passed.
        env: Vec<String>,
    },
    /// Only record the confirmed action and read it back (the default).
    Record,
}

/// The config's form of [`HandlerConfig`]. `Record {}` is a struct variant
/// here so that `deny_unknown_fields` applies to it too (serde ignores extra
/// fields next to the tag of a unit variant).
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
enum RawHandlerConfig {
    Webhook {
        url: String,
        #[serde(default = "default_timeout")]
        timeout_secs: u64,
        #[serde(default)]
        headers: BTreeMap<String, String>,
        #[serde(default)]
        allow_cleartext_headers: bool,
    },
    Command {
        program: PathBuf,
        #[serde(default)]
        args: Vec<String>,
        #[serde(default = "default_timeout")]
        timeout_secs: u64,
        #[serde(default)]
        env: Vec<String>,
    },
    Record {},
}

impl From<RawHandlerConfig> for HandlerConfig {
    fn from(raw: RawHandlerConfig) -> Self {
        match raw {
            RawHandlerConfig::Webhook {
                url,
                timeout_secs,
                headers,
                allow_cleartext_headers,
            } => HandlerConfig::Webhook {
                url,
                timeout_secs,
                headers,
                allow_cleartext_headers,
            },
            RawHandlerConfig::Command {
                program,
                args,
                timeout_secs,
                env,
            } => HandlerConfig::Command {
                program,
                args,
                timeout_secs,
                env,
            },
            RawHandlerConfig::Record {} => HandlerConfig::Record,
        }
    }
}

impl fmt::Debug for HandlerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandlerConfig::Webhook {
                url,
                timeout_secs,
                headers,
                allow_cleartext_headers,
            } => {
                let redacted: BTreeMap<&str, &str> =
                    headers.keys().map(|k| (k.as_str(), "<redacted>")).collect();
                f.debug_struct("Webhook")
                    .field("url", url)
                    .field("timeout_secs", timeout_secs)
                    .field("headers", &redacted)
                    .field("allow_cleartext_headers", allow_cleartext_headers)
                    .finish()
            }
            HandlerConfig::Command {
                program,
                args,
                timeout_secs,
                env,
            } => f
                .debug_struct("Command")
                .field("program", program)
                .field("args", args)
                .field("timeout_secs", timeout_secs)
                .field("env", env)
                .finish(),
            HandlerConfig::Record => f.write_str("Record"),
        }
    }
}

impl HandlerConfig {
    /// Checks the handler: a webhook URL must be `http://host[:port]/path`
    /// and its headers valid and not ones voicegate sets itself, and it may
    /// have headers only if its host is loopback or
    /// `allow_cleartext_headers` is set; a command
    /// needs a program; timeouts are 1 to [`MAX_TIMEOUT_SECS`] seconds.
    /// The error says what is wrong, in words (header values are never
    /// quoted).
    pub fn validate(&self) -> Result<(), String> {
        match self {
            HandlerConfig::Webhook {
                url,
                timeout_secs,
                headers,
                allow_cleartext_headers,
            } => {
                check_url(url)?;
                check_timeout(*timeout_secs)?;
                check_headers(headers)?;
                if !headers.is_empty() && !allow_cleartext_headers && !is_loopback(url) {
                    let names = headers.keys().cloned().collect::<Vec<_>>().join(", ");
                    return Err(format!(
                        "the headers ({names}) would be sent in cleartext over http:// to {}, which is not this machine; \
                         point `url` at a loopback address (e.g. a local TLS gateway), or set \
                         `allow_cleartext_headers = true` if the network between here and there is trusted",
                        authority(url)
                    ));
                }
                Ok(())
            }
            HandlerConfig::Command {
                program,
                timeout_secs,
                env,
                ..
            } => {
                if program.as_os_str().is_empty()
                    || program.to_str().is_some_and(|p| p.trim().is_empty())
                {
                    return Err("`program` is empty; give the path of the program to run".into());
                }
                check_timeout(*timeout_secs)?;
                check_env_names(env)
            }
            HandlerConfig::Record => Ok(()),
        }
    }
}

/// A handler in the config is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("handlers.\"{kind}\": {reason}")]
pub struct HandlerConfigError {
    kind: String,
    reason: String,
}

impl HandlerConfigError {
    /// The action kind whose handler is invalid.
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// What is wrong with it.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

/// The handler for each action kind: the config's `[handlers."<kind>"]`
/// tables. Deserializing validates every handler, so a loaded `Handlers` is
/// always valid.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(try_from = "BTreeMap<String, HandlerConfig>")]
pub struct Handlers {
    by_kind: BTreeMap<ActionKind, HandlerConfig>,
}

/// What a kind without a configured handler gets.
static RECORD: HandlerConfig = HandlerConfig::Record;

impl Handlers {
    /// Handlers by action kind, validated.
    ///
    /// Each key must be a known [`ActionKind`]; an unknown one is an error
    /// naming it.
    pub fn new(by_kind: BTreeMap<String, HandlerConfig>) -> Result<Self, HandlerConfigError> {
        let mut parsed = BTreeMap::new();
        for (kind, handler) in by_kind {
            let invalid = |reason: String| HandlerConfigError {
                kind: kind.clone(),
                reason,
            };
            if kind.trim().is_empty() || kind.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(invalid(
                    "an action kind must be a non-empty name without spaces, like \"purchase.order\""
                        .into(),
                ));
            }
            let parsed_kind: ActionKind = kind
                .parse()
                .map_err(|e: UnknownKind| invalid(e.to_string()))?;
            handler.validate().map_err(invalid)?;
            parsed.insert(parsed_kind, handler);
        }
        Ok(Handlers { by_kind: parsed })
    }

    /// The handler for `kind`; [`HandlerConfig::Record`] when none is
    /// configured.
    pub fn for_kind(&self, kind: ActionKind) -> &HandlerConfig {
        self.by_kind.get(&kind).unwrap_or(&RECORD)
    }

    /// The kinds that have a configured handler (so a caller can warn about
    /// kinds no intent uses — likely typos).
    pub fn kinds(&self) -> impl Iterator<Item = ActionKind> + '_ {
        self.by_kind.keys().copied()
    }

    /// Runs `action` with the handler for its kind, consuming it, sent
    /// with `key`. See [`execute`].
    pub fn execute(&self, action: ConfirmedAction, key: &IdempotencyKey) -> Outcome {
        let handler = match action.request().kind {
            Some(kind) => self.for_kind(kind),
            None => &RECORD,
        };
        execute(handler, action, key)
    }
}

impl TryFrom<BTreeMap<String, HandlerConfig>> for Handlers {
    type Error = HandlerConfigError;

    fn try_from(by_kind: BTreeMap<String, HandlerConfig>) -> Result<Self, Self::Error> {
        Handlers::new(by_kind)
    }
}

/// The JSON body sent to a merchant (webhook) or program (command), and
/// recorded by `record`. See the module documentation for its fields.
pub fn request_body(action: &ConfirmedAction, key: &IdempotencyKey) -> Value {
    let request = action.request();
    json!({
        "action_id": request.id.as_str(),
        "idempotency_key": key.as_str(),
        "intent": request.intent,
        "kind": request.kind_str(),
        "slots": request.slots,
        "params": request.params,
        "readback": action.readback(),
        "confirmed_at": action.confirmed_at().to_rfc3339_opts(SecondsFormat::AutoSi, true),
        "digest": action.digest(),
    })
}

/// Runs a confirmed action with `handler`, once, sent with `key` (see
/// [`IdempotencyKey`] for what the caller should pass), and says how it
/// ended: [`Outcome::Done`], [`Outcome::Failed`] when it certainly did not
/// happen, [`Outcome::Unknown`] when it may have.
///
/// Takes the action by value: a [`ConfirmedAction`] is not `Clone`, so once
/// it has been handed here it cannot be run again. Never panics and never
/// retries. Blocks for up to the handler's timeout. An invalid handler (one
/// not loaded through [`Handlers`]) fails without contacting anything.
///
/// Running the same confirmation twice does not compile:
///
/// ```compile_fail,E0382
/// # use voicegate::actions::handlers::Handlers;
/// # use voicegate::gate::ConfirmedAction;
/// # use voicegate::request::IdempotencyKey;
/// fn twice(handlers: &Handlers, action: ConfirmedAction, key: &IdempotencyKey) {
///     handlers.execute(action, key);
///     handlers.execute(action, key); // use of moved value
/// }
/// ```
///
/// and neither does copying it first:
///
/// ```compile_fail,E0277
/// fn cloneable<T: Clone>() {}
/// cloneable::<voicegate::gate::ConfirmedAction>(); // it is not Clone
/// ```
pub fn execute(handler: &HandlerConfig, action: ConfirmedAction, key: &IdempotencyKey) -> Outcome {
    let action = &action;
    let noun = noun(action.request().kind);
    if let Err(reason) = handler.validate() {
        return failed(format!(
            "the {noun} handler is misconfigured ({reason}); nothing was sent"
        ));
    }
    let body = request_body(action, key);
    match handler {
        HandlerConfig::Webhook {
            url,
            timeout_secs,
            headers,
            ..
        } => post_webhook(url, *timeout_secs, headers, action, key, &body.to_string()),
        HandlerConfig::Command {
            program,
            args,
            timeout_secs,
            env,
        } => run_command(
            program,
            args,
            env,
            *timeout_secs,
            action,
            key,
            &body.to_string(),
        ),
        HandlerConfig::Record => Outcome::Done {
            message: format!("Recorded: {}", action.readback()),
            detail: json!({ "recorded": body }),
        },
    }
}

// ---------------------------------------------------------------------------
// Webhook

fn post_webhook(
    url: &str,
    timeout_secs: u64,
    headers: &BTreeMap<String, String>,
    action: &ConfirmedAction,
    key: &IdempotencyKey,
    body: &str,
) -> Outcome {
    let noun = noun(action.request().kind);
    let timeout = Duration::from_secs(timeout_secs);
    // Resolving and connecting get a slightly smaller budget than the whole
    // exchange, so that a host that never accepts is reported as a connect
    // timeout (nothing was sent: failed) rather than as the global timeout,
    // which ureq reports when deadlines tie and which means "unknown". (If
    // resolving alone takes over a tenth of the budget, a connect that then
    // hangs still ends as the global timeout: unknown, the safe side.)
    let connect = timeout.mul_f64(0.9);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .max_redirects(0)
        .max_redirects_will_error(false)
        .timeout_global(Some(timeout))
        .timeout_resolve(Some(connect))
        .timeout_connect(Some(connect))
        .user_agent(concat!("voicegate/", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    let mut request = agent
        .post(url)
        .header("Content-Type", "application/json")
        .header("Idempotency-Key", key.as_str());
    for (name, value) in headers {
        request = request.header(name.as_str(), value.as_str());
    }
    match request.send(body) {
        Ok(response) => webhook_answer(response, action),
        Err(error) => http_error_outcome(&error, authority(url), timeout_secs, noun),
    }
}

/// Turns the merchant's answer into an outcome.
fn webhook_answer(
    mut response: ureq::http::Response<ureq::Body>,
    action: &ConfirmedAction,
) -> Outcome {
    let status = response.status();
    let mut raw = Vec::new();
    let read_error = response
        .body_mut()
        .as_reader()
        .take(OUTPUT_LIMIT as u64 + 1)
        .read_to_end(&mut raw)
        .err();
    let truncated = raw.len() > OUTPUT_LIMIT;
    let merchant_message = if truncated {
        None
    } else {
        serde_json::from_slice::<Value>(&raw)
            .ok()
            .and_then(|v| {
                v.get("message")
                    .and_then(Value::as_str)
                    .map(|m| speakable(m, MESSAGE_LIMIT))
            })
            .filter(|m| !m.is_empty())
    };
    raw.truncate(OUTPUT_LIMIT);
    let text = String::from_utf8_lossy(&raw).into_owned();

    if status.is_success() {
        let message = merchant_message.unwrap_or_else(|| format!("Done: {}", action.readback()));
        let mut detail = json!({ "status": status.as_u16(), "body": text });
        if truncated {
            detail["body_truncated"] = json!(true);
        }
        if let Some(error) = read_error {
            detail["body_error"] = json!(error.to_string());
        }
        Outcome::Done { message, detail }
    } else {
        let explanation = merchant_message
            .or_else(|| Some(speakable(&text, REASON_LIMIT)).filter(|t| !t.is_empty()));
        let mut error = format!("the merchant answered {}", status.as_u16());
        if let Some(reason) = status.canonical_reason() {
            error.push(' ');
            error.push_str(reason);
        }
        if status.is_redirection() {
            error.push_str(" (a redirect, which is never followed)");
        }
        if let Some(explanation) = explanation {
            error.push_str(": ");
            error.push_str(&explanation);
        }
        if status.is_client_error() {
            // The merchant looked at the order and refused it.
            failed(error)
        } else {
            // A 5xx may come from a merchant that took the order and then
            // broke, or from a gateway in front of one; a 3xx was never
            // meant for us. Either way nobody can say it did not happen.
            Outcome::Unknown { error }
        }
    }
}

/// Why a request got no answer, as an outcome: [`Outcome::Failed`] when the
/// order certainly never left (no connection was made), otherwise
/// [`Outcome::Unknown`] (the request may have reached the merchant).
fn http_error_outcome(error: &ureq::Error, host: &str, timeout_secs: u64, noun: &str) -> Outcome {
    let not_sent = |why: String| failed(format!("{why}; nothing was sent"));
    let maybe_sent = |why: String| Outcome::Unknown { error: why };
    match error {
        ureq::Error::Timeout(ureq::Timeout::Connect | ureq::Timeout::Resolve) => not_sent(format!(
            "could not connect to the merchant at {host} within {timeout_secs} s"
        )),
        ureq::Error::Timeout(_) => maybe_sent(format!(
            "the merchant at {host} did not answer within {timeout_secs} s after the {noun} was sent"
        )),
        ureq::Error::HostNotFound => not_sent(format!("could not find the merchant's host {host}")),
        ureq::Error::ConnectionFailed => {
            not_sent(format!("could not connect to the merchant at {host}"))
        }
        ureq::Error::BadUri(_) | ureq::Error::Http(_) => not_sent(format!(
            "the request to the merchant at {host} could not be built ({error})"
        )),
        ureq::Error::Io(io) => match io.kind() {
            ErrorKind::ConnectionRefused => not_sent(format!(
                "could not reach the merchant at {host} (connection refused)"
            )),
            ErrorKind::HostUnreachable
            | ErrorKind::NetworkUnreachable
            | ErrorKind::AddrNotAvailable => {
                not_sent(format!("could not reach the merchant at {host} ({io})"))
            }
            ErrorKind::TimedOut | ErrorKind::WouldBlock => maybe_sent(format!(
                "the merchant at {host} did not answer within {timeout_secs} s after the {noun} was sent"
            )),
            _ => maybe_sent(format!(
                "the connection to the merchant at {host} broke while the {noun} was sent or answered ({io})"
            )),
        },
        other => maybe_sent(format!(
            "the request to the merchant at {host} failed part-way ({other})"
        )),
    }
}

// ---------------------------------------------------------------------------
// Command

/// The `PATH` a command gets unless its handler names `PATH` in `env`.
pub const COMMAND_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// Variables voicegate sets for a command itself; `env` may not name them.
const RESERVED_ENV: [&str; 3] = [
    "VOICEGATE_ACTION_ID",
    "VOICEGATE_ACTION_KIND",
    "VOICEGATE_IDEMPOTENCY_KEY",
];

fn run_command(
    program: &Path,
    args: &[String],
    env: &[String],
    timeout_secs: u64,
    action: &ConfirmedAction,
    key: &IdempotencyKey,
    body: &str,
) -> Outcome {
    let noun = noun(action.request().kind);
    let shown = program.display();
    let mut command = handler_command(program, args, env, action, key);
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            return failed(format!(
                "the program {shown} was not found; nothing was run"
            ));
        }
        Err(e) if e.kind() == ErrorKind::PermissionDenied => {
            return failed(format!(
                "the program {shown} could not be run (permission denied); nothing was run"
            ));
        }
        Err(e) => {
            return failed(format!(
                "the program {shown} could not be started ({e}); nothing was run"
            ));
        }
    };

    let (done_tx, done_rx) = mpsc::channel();
    let io = start_io(&mut child, body, done_tx);
    let (stdout, stderr) = match io {
        Ok(pipes) => pipes,
        Err(e) => {
            stop(&mut child);
            return Outcome::Unknown {
                error: format!(
                    "could not talk to {shown} ({e}), so it was stopped part-way through the {noun}"
                ),
            };
        }
    };

    let deadline = Instant::now() + Duration::from_secs(timeout_secs);
    let status = match wait_until(&mut child, deadline) {
        Ok(Some(status)) => status,
        Ok(None) => {
            return Outcome::Unknown {
                error: format!(
                    "{shown} did not finish the {noun} within {timeout_secs} s and was stopped"
                ),
            };
        }
        Err(e) => {
            stop(&mut child);
            return Outcome::Unknown {
                error: format!(
                    "lost track of {shown} ({e}), so it was stopped part-way through the {noun}"
                ),
            };
        }
    };

    // Give the readers a moment to see the pipes close.
    let grace_until = Instant::now() + OUTPUT_GRACE;
    for _ in 0..2 {
        let left = grace_until.saturating_duration_since(Instant::now());
        if done_rx.recv_timeout(left).is_err() {
            break;
        }
    }
    let stdout = String::from_utf8_lossy(&lock(&stdout)).into_owned();
    let stderr = String::from_utf8_lossy(&lock(&stderr)).into_owned();

    finished(status, &stdout, &stderr, &shown.to_string(), action)
}

/// The handler's command: no shell, its own process group, and only the
/// environment the module documentation lists.
fn handler_command(
    program: &Path,
    args: &[String],
    env: &[String],
    action: &ConfirmedAction,
    key: &IdempotencyKey,
) -> Command {
    let mut command = Command::new(program);
    command.args(args).env_clear().env("PATH", COMMAND_PATH);
    for name in env {
        if let Some(value) = std::env::var_os(name) {
            command.env(name, value);
        }
    }
    command
        .env("VOICEGATE_ACTION_ID", action.id().as_str())
        .env("VOICEGATE_ACTION_KIND", action.request().kind_str())
        .env("VOICEGATE_IDEMPOTENCY_KEY", key.as_str())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    #[cfg(unix)]
    {
        // Its own process group, so a timeout can stop everything it
        // started (see `stop`).
        use std::os::unix::process::CommandExt;
        command.process_group(0);
    }
    command
}

/// What a finished command's exit says: exit 0 is done (its first line of
/// output is what the user hears), another exit code failed, a signal
/// unknown.
fn finished(
    status: ExitStatus,
    stdout: &str,
    stderr: &str,
    shown: &str,
    action: &ConfirmedAction,
) -> Outcome {
    if status.success() {
        let message = stdout
            .lines()
            .map(|line| speakable(line, MESSAGE_LIMIT))
            .find(|line| !line.is_empty())
            .unwrap_or_else(|| format!("Done: {}", action.readback()));
        Outcome::Done {
            message,
            detail: json!({ "exit_code": 0, "stdout": stdout, "stderr": stderr }),
        }
    } else {
        let tail = tail_chars(stderr.trim(), REASON_LIMIT);
        let tail = speakable(tail, REASON_LIMIT);
        let with_tail = |how: String| {
            if tail.is_empty() {
                how
            } else {
                format!("{how}: {tail}")
            }
        };
        match status.code() {
            // The program ran to its end and says it did not do it.
            Some(code) => failed(with_tail(format!("{shown} exited with status {code}"))),
            // Killed by a signal part-way: nobody said how far it got.
            None => Outcome::Unknown {
                error: with_tail(killed_by(status, shown)),
            },
        }
    }
}

type Captured = Arc<Mutex<Vec<u8>>>;

/// Feeds `body` to the child's stdin and drains its stdout (first
/// [`OUTPUT_LIMIT`] bytes kept) and stderr (last [`OUTPUT_LIMIT`] bytes
/// kept) on their own threads, so a chatty child never blocks on a full
/// pipe. Each reader sends on `done` when its pipe closes.
fn start_io(
    child: &mut Child,
    body: &str,
    done: mpsc::Sender<()>,
) -> std::io::Result<(Captured, Captured)> {
    let missing = || std::io::Error::other("a pipe to the program was not set up");
    let mut stdin = child.stdin.take().ok_or_else(missing)?;
    let stdout = child.stdout.take().ok_or_else(missing)?;
    let stderr = child.stderr.take().ok_or_else(missing)?;

    let bytes = body.as_bytes().to_vec();
    thread::Builder::new()
        .name("handler-stdin".into())
        .spawn(move || {
            // A program that does not read its stdin closes the pipe early;
            // that is its business, not an error.
            let _ = stdin.write_all(&bytes);
        })?;
    let out = capture(stdout, false, done.clone())?;
    let err = capture(stderr, true, done)?;
    Ok((out, err))
}

fn capture<R: Read + Send + 'static>(
    mut reader: R,
    keep_tail: bool,
    done: mpsc::Sender<()>,
) -> std::io::Result<Captured> {
    let captured: Captured = Arc::new(Mutex::new(Vec::new()));
    let shared = Arc::clone(&captured);
    thread::Builder::new()
        .name("handler-output".into())
        .spawn(move || {
            let mut chunk = [0u8; 8192];
            loop {
                match reader.read(&mut chunk) {
                    Ok(0) => break,
                    Ok(n) => {
                        let mut kept = lock(&shared);
                        if keep_tail {
                            kept.extend_from_slice(&chunk[..n]);
                            let excess = kept.len().saturating_sub(OUTPUT_LIMIT);
                            kept.drain(..excess);
                        } else {
                            let room = OUTPUT_LIMIT.saturating_sub(kept.len());
                            kept.extend_from_slice(&chunk[..n.min(room)]);
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(_) => break,
                }
            }
            let _ = done.send(());
        })?;
    Ok(captured)
}

/// Waits for the child until `deadline`; `Ok(None)` if it had to be killed.
fn wait_until(child: &mut Child, deadline: Instant) -> std::io::Result<Option<ExitStatus>> {
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        let now = Instant::now();
        if now >= deadline {
            stop(child);
            return Ok(None);
        }
        thread::sleep((deadline - now).min(POLL));
    }
}

/// Kills the child's whole process group (it leads one: see `run_command`),
/// then the child itself should the group be gone, and reaps it. Called only
/// while the child has not been reaped, so the group id is still its own.
fn stop(child: &mut Child) {
    #[cfg(unix)]
    crate::actions::signal::group(child.id(), crate::actions::signal::SIGKILL);
    let _ = child.kill();
    let _ = child.wait();
}

#[cfg(unix)]
fn killed_by(status: ExitStatus, program: &str) -> String {
    use std::os::unix::process::ExitStatusExt;
    match status.signal() {
        Some(signal) => format!("{program} was killed by signal {signal}"),
        None => format!("{program} failed ({status})"),
    }
}

#[cfg(not(unix))]
fn killed_by(status: ExitStatus, program: &str) -> String {
    format!("{program} failed ({status})")
}

// ---------------------------------------------------------------------------
// Validation

fn check_timeout(secs: u64) -> Result<(), String> {
    if (1..=MAX_TIMEOUT_SECS).contains(&secs) {
        Ok(())
    } else {
        Err(format!(
            "`timeout_secs` is {secs}; it must be from 1 to {MAX_TIMEOUT_SECS}"
        ))
    }
}

/// Accepts `http://host[:port]/path` (path may carry a query), nothing else.
fn check_url(url: &str) -> Result<(), String> {
    let shape = "expected http://host[:port]/path, e.g. http://127.0.0.1:8080/orders";
    if url.is_empty() {
        return Err(format!("`url` is empty; {shape}"));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("url {url:?} contains spaces or control characters"));
    }
    if url
        .get(..8)
        .is_some_and(|p| p.eq_ignore_ascii_case("https://"))
    {
        return Err(format!(
            "url {url:?} uses https, which this build cannot send (ureq is built without its `rustls` feature); \
             use http:// to a merchant on loopback or a local gateway"
        ));
    }
    let Some(rest) = url
        .get(..7)
        .filter(|p| p.eq_ignore_ascii_case("http://"))
        .and_then(|_| url.get(7..))
    else {
        return Err(format!("url {url:?} must start with http://; {shape}"));
    };
    let (authority, path) = match rest.find(['/', '?', '#']) {
        Some(i) if rest[i..].starts_with('/') => (&rest[..i], &rest[i..]),
        _ => return Err(format!("url {url:?} has no path; {shape}")),
    };
    if path.contains('#') {
        return Err(format!(
            "url {url:?} has a #fragment, which is never sent; remove it"
        ));
    }
    if authority.contains('@') {
        return Err(format!(
            "url {url:?} contains credentials; put them in `headers` (e.g. Authorization) instead"
        ));
    }
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let Some((ip, after)) = bracketed.split_once(']') else {
            return Err(format!("url {url:?} has an unclosed [IPv6] host"));
        };
        if ip.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("url {url:?}: [{ip}] is not an IPv6 address"));
        }
        match after {
            "" => (ip, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (ip, Some(port)),
                None => {
                    return Err(format!(
                        "url {url:?} has text after the [IPv6] host; {shape}"
                    ));
                }
            },
        }
    } else {
        let (host, port) = match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        };
        if !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        {
            return Err(format!(
                "url {url:?}: {host:?} is not a host name or IPv4 address"
            ));
        }
        (host, port)
    };
    if host.is_empty() {
        return Err(format!("url {url:?} has no host; {shape}"));
    }
    if let Some(port) = port
        && !port.parse::<u16>().is_ok_and(|p| p != 0)
    {
        return Err(format!(
            "url {url:?}: port {port:?} is not a number from 1 to 65535"
        ));
    }
    url.parse::<ureq::http::Uri>()
        .map(|_| ())
        .map_err(|e| format!("url {url:?} is not a valid URL ({e})"))
}

/// `env` names variables: letters, digits and `_`, not starting with a
/// digit, and not one voicegate sets itself.
fn check_env_names(names: &[String]) -> Result<(), String> {
    for name in names {
        let valid = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(format!(
                "env: {name:?} is not a variable name (letters, digits and _, not starting with a digit)"
            ));
        }
        if RESERVED_ENV.contains(&name.as_str()) {
            return Err(format!(
                "env: {name} is set by voicegate itself and cannot be passed through"
            ));
        }
    }
    Ok(())
}

fn check_headers(headers: &BTreeMap<String, String>) -> Result<(), String> {
    for (name, value) in headers {
        if ureq::http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            return Err(format!("{name:?} is not a valid HTTP header name"));
        }
        if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
            return Err(format!(
                "header {name:?} is set by voicegate itself and cannot be configured"
            ));
        }
        if ureq::http::HeaderValue::from_str(value).is_err() {
            return Err(format!(
                "the value of header {name:?} is not a valid header value (no line breaks or control characters)"
            ));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Helpers

fn failed(error: String) -> Outcome {
    Outcome::Failed { error }
}

/// What the user would call this kind of action.
fn noun(kind: Option<ActionKind>) -> &'static str {
    match kind.map(ActionKind::family) {
        Some(Family::Purchase) => "order",
        Some(Family::Booking) => "booking",
        _ => "action",
    }
}

/// Whether a validated webhook URL's host is this machine: `localhost`,
/// an address in `127.0.0.0/8`, or `[::1]`. Anything else, including names
/// that merely resolve to loopback, counts as the network.
fn is_loopback(url: &str) -> bool {
    let authority = authority(url);
    if let Some(bracketed) = authority.strip_prefix('[') {
        return bracketed
            .split_once(']')
            .and_then(|(ip, _)| ip.parse::<std::net::Ipv6Addr>().ok())
            .is_some_and(|ip| ip.is_loopback());
    }
    let host = authority.split_once(':').map_or(authority, |(h, _)| h);
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// `host[:port]` of a validated webhook URL (never its path, which may hold
/// tokens).
fn authority(url: &str) -> &str {
    let rest = url.get(7..).unwrap_or(url);
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    &rest[..end]
}

/// One line of plain text fit to be spoken: control characters and runs of
/// whitespace become single spaces, and it is cut at `max` characters.
fn speakable(text: &str, max: usize) -> String {
    let cleaned = text
        .split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|word| !word.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    if cleaned.chars().count() <= max {
        cleaned
    } else {
        let mut cut: String = cleaned.chars().take(max.saturating_sub(1)).collect();
        cut.push('…');
        cut
    }
}

/// The last `max` characters of `text`.
fn tail_chars(text: &str, max: usize) -> &str {
    let count = text.chars().count();
    match text.char_indices().nth(count.saturating_sub(max)) {
        Some((i, _)) => &text[i..],
        None => text,
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader};
    use std::net::{SocketAddr, TcpListener, TcpStream};
    use std::thread::JoinHandle;

    use super::*;
    use crate::request::{ActionId, ActionRequest};

    // -- fixtures -----------------------------------------------------------

    fn request(kind: &str, intent: &str, slots: Value, params: Value) -> ActionRequest {
        ActionRequest {
            id: ActionId::new(),
            intent: intent.into(),
            kind: Some(kind.parse().expect("a known kind")),
            slots: slots.as_object().cloned().unwrap_or_default(),
            params,
        }
    }

    fn order() -> ConfirmedAction {
        ConfirmedAction::for_tests(request(
            "purchase.order",
            "OrderItem",
            json!({"item": "coffee beans", "quantity": 2, "unit": "bags"}),
            json!({"sku_hint": "coffee beans"}),
        ))
    }

    fn table() -> ConfirmedAction {
        ConfirmedAction::for_tests(request(
            "booking.table",
            "BookTable",
            json!({"party_size": 4, "day": "friday", "time": "19:30", "place": "Luigi's"}),
            json!({}),
        ))
    }

    fn webhook(url: &str, timeout_secs: u64, headers: &[(&str, &str)]) -> HandlerConfig {
        HandlerConfig::Webhook {
            url: url.into(),
            timeout_secs,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            allow_cleartext_headers: false,
        }
    }

    fn sh(script: &str, timeout_secs: u64) -> HandlerConfig {
        HandlerConfig::Command {
            program: "/bin/sh".into(),
            args: vec!["-c".into(), script.into()],
            timeout_secs,
            env: vec![],
        }
    }

    /// Runs `action` with its own id as the key, as a first order does.
    fn run(handler: &HandlerConfig, action: ConfirmedAction) -> Outcome {
        let key = IdempotencyKey::of(action.id());
        execute(handler, action, &key)
    }

    fn unknown(outcome: Outcome) -> String {
        match outcome {
            Outcome::Unknown { error } => error,
            other => panic!("expected Unknown, got {other:?}"),
        }
    }

    fn done(outcome: Outcome) -> (String, Value) {
        match outcome {
            Outcome::Done { message, detail } => (message, detail),
            other => panic!("expected Done, got {other:?}"),
        }
    }

    fn failure(outcome: Outcome) -> String {
        match outcome {
            Outcome::Failed { error } => error,
            other => panic!("expected Failed, got {other:?}"),
        }
    }

    /// When `for_tests` says an action was confirmed.
    const CONFIRMED_AT: i64 = 1_767_225_600;

    fn assert_body_fields(body: &Value, request: &ActionRequest) {
        assert_eq!(body["action_id"], json!(request.id.as_str()));
        assert_eq!(body["intent"], json!(request.intent));
        assert_eq!(body["kind"], json!(request.kind));
        assert_eq!(body["slots"], Value::Object(request.slots.clone()));
        assert_eq!(body["params"], request.params);
        assert_eq!(body["readback"], json!("test readback"));
        assert_eq!(body["digest"], json!(crate::gate::digest(request)));
        let at = body["confirmed_at"].as_str().unwrap_or_default();
        assert_eq!(
            chrono::DateTime::parse_from_rfc3339(at)
                .map(|t| t.timestamp())
                .ok(),
            Some(CONFIRMED_AT),
            "confirmed_at {at:?} is not RFC 3339"
        );
        let keys: Vec<&str> = body
            .as_object()
            .map(|o| o.keys().map(String::as_str).collect())
            .unwrap_or_default();
        assert_eq!(
            keys,
            [
                "action_id",
                "idempotency_key",
                "intent",
                "kind",
                "slots",
                "params",
                "readback",
                "confirmed_at",
                "digest"
            ]
        );
    }

    // -- a local merchant ---------------------------------------------------

    /// What the merchant does with one request.
    enum Reply {
        /// Answer with this status line, content type and body.
        With(&'static str, &'static str, &'static str),
        /// Read the request, then say nothing for this long and hang up.
        Silent(Duration),
    }

    /// One request as the merchant received it.
    #[derive(Debug, Default)]
    struct Received {
        request_line: String,
        headers: Vec<(String, String)>,
        body: String,
    }

    impl Received {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }
    }

    /// A merchant on 127.0.0.1 that handles one request per reply, in order,
    /// then exits (or gives up after a few seconds without a client).
    fn merchant(replies: Vec<Reply>) -> (SocketAddr, JoinHandle<Vec<Received>>) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        listener.set_nonblocking(true).expect("nonblocking");
        let server = thread::spawn(move || {
            let mut seen = Vec::new();
            for reply in replies {
                let give_up = Instant::now() + Duration::from_secs(5);
                let stream = loop {
                    match listener.accept() {
                        Ok((stream, _)) => break Some(stream),
                        Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < give_up => {
                            thread::sleep(Duration::from_millis(5))
                        }
                        Err(_) => break None,
                    }
                };
                let Some(stream) = stream else { break };
                seen.push(serve_one(stream, reply));
            }
            seen
        });
        (addr, server)
    }

    fn serve_one(stream: TcpStream, reply: Reply) -> Received {
        let _ = stream.set_nonblocking(false);
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let mut reader = BufReader::new(stream);
        let mut received = Received::default();
        let mut line = String::new();
        let _ = reader.read_line(&mut line);
        received.request_line = line.trim_end().to_string();
        loop {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim_end().is_empty() {
                break;
            }
            if let Some((name, value)) = line.trim_end().split_once(':') {
                received
                    .headers
                    .push((name.trim().to_string(), value.trim().to_string()));
            }
        }
        let length = received
            .header("content-length")
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(0);
        let mut body = vec![0; length];
        let _ = reader.read_exact(&mut body);
        received.body = String::from_utf8_lossy(&body).into_owned();
        let mut stream = reader.into_inner();
        match reply {
            Reply::With(status, content_type, body) => {
                let answer = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(answer.as_bytes());
            }
            Reply::Silent(for_how_long) => thread::sleep(for_how_long),
        }
        received
    }

    fn url(addr: SocketAddr) -> String {
        format!("http://{addr}/orders")
    }

    // -- webhook ------------------------------------------------------------

    #[test]
    fn webhook_200_with_json_message_is_done_with_that_message() {
        let (addr, server) = merchant(vec![Reply::With(
            "200 OK",
            "application/json",
            r#"{"message": "Your beans arrive tomorrow.", "order": "A-17"}"#,
        )]);
        let (message, detail) = done(run(&webhook(&url(addr), 5, &[]), order()));
        assert_eq!(message, "Your beans arrive tomorrow.");
        assert_eq!(detail["status"], json!(200));
        assert!(detail["body"].as_str().unwrap_or_default().contains("A-17"));
        assert_eq!(server.join().expect("server").len(), 1);
    }

    #[test]
    fn webhook_sends_idempotency_key_headers_and_every_body_field() {
        let (addr, server) = merchant(vec![Reply::With("200 OK", "application/json", "{}")]);
        let action = order();
        let handler = webhook(
            &url(addr),
            5,
            &[("Authorization", "Bearer s3cret"), ("X-Shop", "corner")],
        );
        let request = action.request().clone();
        let expected_body = request_body(&action, &IdempotencyKey::of(action.id()));
        done(run(&handler, action));
        let seen = server.join().expect("server");
        assert_eq!(seen.len(), 1, "exactly one request, no retry");
        let got = &seen[0];
        assert_eq!(got.request_line, "POST /orders HTTP/1.1");
        assert_eq!(got.header("Idempotency-Key"), Some(request.id.as_str()));
        assert_eq!(got.header("Content-Type"), Some("application/json"));
        assert_eq!(got.header("Authorization"), Some("Bearer s3cret"));
        assert_eq!(got.header("X-Shop"), Some("corner"));
        let body: Value = serde_json::from_str(&got.body).expect("JSON body");
        assert_body_fields(&body, &request);
        assert_eq!(body, expected_body);
    }

    #[test]
    fn webhook_201_plain_text_is_done_with_generic_message() {
        let (addr, server) = merchant(vec![Reply::With("201 Created", "text/plain", "created")]);
        let (message, detail) = done(run(&webhook(&url(addr), 5, &[]), order()));
        assert_eq!(message, "Done: test readback");
        assert_eq!(detail, json!({"status": 201, "body": "created"}));
        server.join().expect("server");
    }

    #[test]
    fn webhook_500_is_unknown_with_the_status_and_merchant_reason() {
        let (addr, server) = merchant(vec![Reply::With(
            "500 Internal Server Error",
            "application/json",
            r#"{"message": "out of beans"}"#,
        )]);
        let error = unknown(run(&webhook(&url(addr), 5, &[]), order()));
        assert_eq!(
            error,
            "the merchant answered 500 Internal Server Error: out of beans"
        );
        assert_eq!(server.join().expect("server").len(), 1, "no retry");
    }

    #[test]
    fn webhook_502_plain_is_unknown() {
        let (addr, server) = merchant(vec![Reply::With(
            "502 Bad Gateway",
            "text/plain",
            "upstream down",
        )]);
        let error = unknown(run(&webhook(&url(addr), 5, &[]), order()));
        assert_eq!(
            error,
            "the merchant answered 502 Bad Gateway: upstream down"
        );
        server.join().expect("server");
    }

    #[test]
    fn webhook_redirect_is_not_followed_and_is_unknown() {
        let (addr, server) = merchant(vec![Reply::With("302 Found", "text/plain", "")]);
        let error = unknown(run(&webhook(&url(addr), 5, &[]), order()));
        assert!(error.starts_with("the merchant answered 302"), "{error}");
        assert!(error.contains("never followed"), "{error}");
        assert_eq!(server.join().expect("server").len(), 1);
    }

    #[test]
    fn webhook_4xx_is_failed_the_merchant_refused() {
        for status in [
            "400 Bad Request",
            "409 Conflict",
            "422 Unprocessable Entity",
        ] {
            let (addr, server) = merchant(vec![Reply::With(
                status,
                "application/json",
                r#"{"message": "no such item"}"#,
            )]);
            let error = failure(run(&webhook(&url(addr), 5, &[]), order()));
            assert_eq!(
                error,
                format!("the merchant answered {status}: no such item")
            );
            assert_eq!(server.join().expect("server").len(), 1, "no retry");
        }
    }

    #[test]
    fn webhook_sends_the_key_it_is_given_in_the_header_and_the_body() {
        let (addr, server) = merchant(vec![Reply::With("200 OK", "application/json", "{}")]);
        let action = order();
        let id = action.id().clone();
        let key = IdempotencyKey::from_string("an-earlier-orders-key".into());
        done(execute(&webhook(&url(addr), 5, &[]), action, &key));
        let seen = server.join().expect("server");
        assert_eq!(
            seen[0].header("Idempotency-Key"),
            Some("an-earlier-orders-key")
        );
        let body: Value = serde_json::from_str(&seen[0].body).expect("JSON body");
        assert_eq!(body["idempotency_key"], json!("an-earlier-orders-key"));
        assert_eq!(
            body["action_id"],
            json!(id.as_str()),
            "the id stays its own"
        );
    }

    #[test]
    fn webhook_large_answer_is_truncated_in_detail() {
        static BIG: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| "x".repeat(10_000));
        let (addr, server) = merchant(vec![Reply::With("200 OK", "text/plain", BIG.as_str())]);
        let (message, detail) = done(run(&webhook(&url(addr), 5, &[]), order()));
        assert_eq!(message, "Done: test readback");
        assert_eq!(detail["body"].as_str().map(str::len), Some(OUTPUT_LIMIT));
        assert_eq!(detail["body_truncated"], json!(true));
        server.join().expect("server");
    }

    #[test]
    fn webhook_silent_merchant_is_unknown_after_the_timeout() {
        let (addr, server) = merchant(vec![Reply::Silent(Duration::from_secs(5))]);
        let started = Instant::now();
        let error = unknown(run(&webhook(&url(addr), 1, &[]), order()));
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_secs(4),
            "took {took:?}"
        );
        assert!(
            error.contains("did not answer within 1 s after the order was sent"),
            "{error}"
        );
        assert_eq!(server.join().expect("server").len(), 1);
    }

    #[test]
    fn webhook_connection_refused_fails_saying_nothing_was_sent() {
        let addr = {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            listener.local_addr().expect("addr")
        };
        let error = failure(run(&webhook(&url(addr), 2, &[]), order()));
        assert!(error.contains("connection refused"), "{error}");
        assert!(error.contains("nothing was sent"), "{error}");
        assert!(error.contains(&addr.to_string()), "{error}");
    }

    #[test]
    fn webhook_host_that_never_accepts_fails_as_a_connect_timeout() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        // Fill the accept queue (nothing accepts): from then on the kernel
        // drops new connection attempts and connecting hangs.
        let mut queued = Vec::new();
        while queued.len() < 20_000 {
            match TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
                Ok(stream) => queued.push(stream),
                Err(_) => break,
            }
        }
        let started = Instant::now();
        let error = failure(run(&webhook(&url(addr), 1, &[]), order()));
        assert!(started.elapsed() < Duration::from_secs(3));
        assert_eq!(
            error,
            format!("could not connect to the merchant at {addr} within 1 s; nothing was sent")
        );
        drop(listener);
    }

    #[test]
    fn invalid_handler_built_by_hand_fails_without_sending() {
        let error = failure(run(
            &webhook("https://shop.example/orders", 5, &[]),
            order(),
        ));
        assert!(error.contains("misconfigured"), "{error}");
        assert!(error.contains("rustls"), "{error}");
    }

    // -- command ------------------------------------------------------------

    #[test]
    fn command_exit_0_is_done_with_first_stdout_line_and_gets_the_body() {
        let dir = tempfile::tempdir().expect("tempdir");
        let saved = dir.path().join("body.json");
        let handler = HandlerConfig::Command {
            program: "/bin/sh".into(),
            args: vec![
                "-c".into(),
                r#"cat > "$1"; echo; echo "Table for 4 booked, id $VOICEGATE_ACTION_ID"; echo more"#.into(),
                "sh".into(),
                saved.display().to_string(),
            ],
            timeout_secs: 5,
            env: vec![],
        };
        let action = table();
        let request = action.request().clone();
        let (message, detail) = done(run(&handler, action));
        assert_eq!(message, format!("Table for 4 booked, id {}", request.id));
        assert_eq!(detail["exit_code"], json!(0));
        let body: Value =
            serde_json::from_str(&std::fs::read_to_string(&saved).expect("saved body"))
                .expect("JSON");
        assert_body_fields(&body, &request);
    }

    #[test]
    fn command_exit_0_without_output_is_done_with_generic_message() {
        let (message, _) = done(run(&sh("cat > /dev/null", 5), table()));
        assert_eq!(message, "Done: test readback");
    }

    #[test]
    fn command_exit_3_is_failed_with_stderr_tail() {
        let error = failure(run(
            &sh("echo noise >&2; echo 'no tables left' >&2; exit 3", 5),
            table(),
        ));
        assert_eq!(error, "/bin/sh exited with status 3: noise no tables left");
    }

    #[test]
    fn command_past_its_timeout_is_killed_and_unknown() {
        let started = Instant::now();
        let error = unknown(run(&sh("sleep 10", 1), table()));
        let took = started.elapsed();
        assert!(took < Duration::from_secs(5), "took {took:?}");
        assert_eq!(
            error,
            "/bin/sh did not finish the booking within 1 s and was stopped"
        );
    }

    #[test]
    fn command_killed_by_a_signal_is_unknown() {
        let error = unknown(run(&sh("echo half done >&2; kill -9 $$", 5), table()));
        assert_eq!(error, "/bin/sh was killed by signal 9: half done");
    }

    #[test]
    fn command_gets_the_key_it_is_given() {
        let action = table();
        let key = IdempotencyKey::from_string("an-earlier-bookings-key".into());
        let (message, _) = done(execute(
            &sh("echo \"$VOICEGATE_IDEMPOTENCY_KEY\"", 5),
            action,
            &key,
        ));
        assert_eq!(message, "an-earlier-bookings-key");
    }

    /// Whether `pid` has ended: gone, or a zombie waiting for a parent that
    /// is not ours to reap it.
    fn ended(pid: u32) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => true,
            Ok(stat) => stat
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
        }
    }

    #[test]
    fn command_past_its_timeout_is_stopped_with_everything_it_started() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pids = dir.path().join("pids");
        // The script starts a background job (as a forking handler would),
        // notes both pids, then outstays its timeout.
        let handler = HandlerConfig::Command {
            program: "/bin/sh".into(),
            args: vec![
                "-c".into(),
                r#"sleep 30 & echo "$$ $!" > "$1"; sleep 30"#.into(),
                "sh".into(),
                pids.display().to_string(),
            ],
            timeout_secs: 1,
            env: vec![],
        };
        let started = Instant::now();
        let error = unknown(run(&handler, table()));
        assert!(error.contains("within 1 s and was stopped"), "{error}");
        assert!(started.elapsed() < Duration::from_secs(5));
        let text = std::fs::read_to_string(&pids).expect("pids written");
        let pids: Vec<u32> = text
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect();
        assert_eq!(pids.len(), 2, "{text:?}");
        let give_up = Instant::now() + Duration::from_secs(3);
        while !pids.iter().all(|&p| ended(p)) && Instant::now() < give_up {
            thread::sleep(Duration::from_millis(20));
        }
        for pid in pids {
            assert!(ended(pid), "process {pid} outlived the handler's timeout");
        }
    }

    #[test]
    fn command_gets_a_minimal_environment() {
        // PATH is voicegate's own unless named; HOME and the rest are not
        // passed on. (The binary-level test in tests/reliability.rs passes
        // a named variable through.)
        let (_, detail) = done(run(&sh("env", 5), table()));
        let mut names: Vec<&str> = detail["stdout"]
            .as_str()
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_once('=').map(|(n, _)| n))
            .filter(|n| *n != "PWD" && *n != "SHLVL" && *n != "_")
            .collect();
        names.sort_unstable();
        assert_eq!(
            names,
            [
                "PATH",
                "VOICEGATE_ACTION_ID",
                "VOICEGATE_ACTION_KIND",
                "VOICEGATE_IDEMPOTENCY_KEY"
            ],
            "{detail}"
        );
        assert!(
            detail["stdout"]
                .as_str()
                .unwrap_or_default()
                .contains(&format!("PATH={COMMAND_PATH}\n")),
            "{detail}"
        );
    }

    #[test]
    fn env_names_are_checked() {
        for bad in ["", "1X", "A-B", "A=B", "A B", "VOICEGATE_IDEMPOTENCY_KEY"] {
            let handler = HandlerConfig::Command {
                program: "/bin/true".into(),
                args: vec![],
                timeout_secs: 5,
                env: vec![bad.into()],
            };
            assert!(
                handler.validate().is_err_and(|e| e.starts_with("env:")),
                "{bad:?}"
            );
        }
        let good = HandlerConfig::Command {
            program: "/bin/true".into(),
            args: vec![],
            timeout_secs: 5,
            env: vec!["PATH".into(), "_TOKEN2".into(), "HOME".into()],
        };
        assert_eq!(good.validate(), Ok(()));
    }

    #[test]
    fn command_background_child_holding_stdout_does_not_hang() {
        let started = Instant::now();
        let (message, _) = done(run(&sh("sleep 10 & echo booked", 5), table()));
        assert_eq!(message, "booked");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "took {:?}",
            started.elapsed()
        );
    }

    #[test]
    fn command_flooding_stdout_does_not_block_and_is_truncated() {
        let (message, detail) = done(run(
            &sh("head -c 1000000 /dev/zero | tr '\\000' a; echo", 10),
            table(),
        ));
        assert_eq!(message.chars().count(), MESSAGE_LIMIT);
        assert_eq!(detail["stdout"].as_str().map(str::len), Some(OUTPUT_LIMIT));
    }

    #[test]
    fn command_missing_program_fails() {
        let handler = HandlerConfig::Command {
            program: "/nonexistent/voicegate-book-table".into(),
            args: vec![],
            timeout_secs: 5,
            env: vec![],
        };
        let error = failure(run(&handler, table()));
        assert_eq!(
            error,
            "the program /nonexistent/voicegate-book-table was not found; nothing was run"
        );
    }

    // -- record -------------------------------------------------------------

    #[test]
    fn record_is_done_and_keeps_the_body() {
        let action = order();
        let request = action.request().clone();
        let (message, detail) = done(run(&HandlerConfig::Record, action));
        assert_eq!(message, "Recorded: test readback");
        assert_body_fields(&detail["recorded"], &request);
    }

    #[test]
    fn handlers_execute_uses_record_for_unconfigured_kinds() {
        let (message, _) = done({
            let action = order();
            let key = IdempotencyKey::of(action.id());
            Handlers::default().execute(action, &key)
        });
        assert_eq!(message, "Recorded: test readback");
    }

    // -- config -------------------------------------------------------------

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Config {
        #[serde(default)]
        handlers: Handlers,
    }

    fn parse(text: &str) -> Result<Handlers, String> {
        toml::from_str::<Config>(text)
            .map(|c| c.handlers)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn config_example_parses_with_defaults() {
        let handlers = parse(
            r#"
            [handlers."purchase.order"]
            type = "webhook"
            url = "http://127.0.0.1:8080/orders"
            headers = { Authorization = "Bearer abc" }

            [handlers."booking.table"]
            type = "command"
            program = "/usr/local/bin/book-table"
            args = ["--json"]
            timeout_secs = 20
            env = ["BOOK_TOKEN"]

            [handlers."booking.ride"]
            type = "record"
            "#,
        )
        .expect("valid config");
        assert_eq!(
            handlers.for_kind(ActionKind::PurchaseOrder),
            &webhook(
                "http://127.0.0.1:8080/orders",
                10,
                &[("Authorization", "Bearer abc")]
            )
        );
        assert_eq!(
            handlers.for_kind(ActionKind::BookingTable),
            &HandlerConfig::Command {
                program: "/usr/local/bin/book-table".into(),
                args: vec!["--json".into()],
                timeout_secs: 20,
                env: vec!["BOOK_TOKEN".into()],
            }
        );
        assert_eq!(
            handlers.for_kind(ActionKind::BookingRide),
            &HandlerConfig::Record
        );
        assert_eq!(
            handlers.for_kind(ActionKind::PurchaseCoffee),
            &HandlerConfig::Record
        );
        assert_eq!(
            handlers.kinds().collect::<Vec<_>>(),
            ["booking.ride", "booking.table", "purchase.order"]
        );
        assert!(parse("").expect("empty").kinds().next().is_none());
    }

    #[test]
    fn config_rejects_unknown_fields_and_types() {
        let error = parse("[handlers.\"purchase.order\"]\ntype = \"webhook\"\nurl = \"http://h/o\"\nretries = 3\n")
            .expect_err("unknown field");
        assert!(error.contains("retries"), "{error}");
        let error =
            parse("[handlers.\"purchase.order\"]\ntype = \"email\"\n").expect_err("unknown type");
        assert!(error.contains("email"), "{error}");
        let error =
            parse("[handlers.\"purchase.order\"]\nurl = \"http://h/o\"\n").expect_err("no type");
        assert!(error.contains("type"), "{error}");
        let error =
            parse("[handlers.\"purchase.order\"]\ntype = \"record\"\nurl = \"http://h/o\"\n")
                .expect_err("record takes nothing");
        assert!(error.contains("url"), "{error}");
    }

    #[test]
    fn config_errors_name_the_kind_and_the_problem() {
        let error = parse("[handlers.\"purchase.order\"]\ntype = \"webhook\"\nurl = \"https://shop.example/orders\"\n")
            .expect_err("https");
        assert!(error.contains("handlers.\"purchase.order\""), "{error}");
        assert!(error.contains("rustls"), "{error}");
        let error = parse("[handlers.\"booking.table\"]\ntype = \"command\"\nprogram = \"\"\n")
            .expect_err("empty");
        assert!(
            error.contains("handlers.\"booking.table\": `program` is empty"),
            "{error}"
        );
    }

    #[test]
    fn url_validation() {
        for good in [
            "http://127.0.0.1:8080/orders",
            "http://localhost/",
            "HTTP://gateway.local:80/v1/orders?shop=3",
            "http://[::1]:9000/orders",
        ] {
            assert_eq!(check_url(good), Ok(()), "{good}");
        }
        for (bad, why) in [
            ("", "empty"),
            ("127.0.0.1:8080/orders", "must start with http://"),
            ("ftp://host/orders", "must start with http://"),
            ("https://host/orders", "rustls"),
            ("http://127.0.0.1:8080", "no path"),
            ("http://host?x=1", "no path"),
            ("http:///orders", "no host"),
            ("http://host:0/orders", "port"),
            ("http://host:99999/orders", "port"),
            ("http://host:/orders", "port"),
            ("http://user:pw@host/orders", "credentials"),
            ("http://ho st/orders", "spaces"),
            ("http://host/orders#top", "fragment"),
            ("http://[::1/orders", "unclosed"),
            ("http://[nope]/orders", "IPv6"),
            ("http://ho_st/orders", "host name"),
        ] {
            let error = check_url(bad).expect_err(bad);
            assert!(error.contains(why), "{bad}: {error}");
        }
    }

    #[test]
    fn header_and_timeout_validation() {
        let reserved = webhook("http://h/o", 10, &[("idempotency-key", "x")]).validate();
        assert!(reserved.is_err_and(|e| e.contains("set by voicegate itself")));
        let bad_name = webhook("http://h/o", 10, &[("Bad Header", "x")]).validate();
        assert!(bad_name.is_err_and(|e| e.contains("header name")));
        let bad_value = webhook("http://h/o", 10, &[("Authorization", "a\nb")]).validate();
        assert!(bad_value.is_err_and(|e| e.contains("header value") && !e.contains("a\nb")));
        assert!(
            webhook("http://h/o", 0, &[])
                .validate()
                .is_err_and(|e| e.contains("timeout_secs"))
        );
        assert!(sh("true", MAX_TIMEOUT_SECS + 1).validate().is_err());
        assert!(sh("true", MAX_TIMEOUT_SECS).validate().is_ok());
        let blank_kind = Handlers::new(BTreeMap::from([(" ".to_string(), HandlerConfig::Record)]));
        assert!(blank_kind.is_err());
        let error = parse("[handlers.\"purchase.ordr\"]\ntype = \"record\"\n")
            .expect_err("a kind no intent can name");
        assert!(
            error.contains("purchase.ordr") && error.contains("unknown action kind"),
            "{error}"
        );
    }

    #[test]
    fn headers_to_a_host_off_this_machine_are_refused_at_load() {
        let table = |url: &str, extra: &str| {
            format!(
                "[handlers.\"purchase.order\"]\ntype = \"webhook\"\nurl = \"{url}\"\n\
                 headers = {{ Authorization = \"Bearer s3cret\" }}\n{extra}"
            )
        };
        for remote in [
            "http://shop.example/orders",
            "http://192.168.1.20:8080/orders",
            "http://[2001:db8::1]/orders",
            "http://localhost.shop.example/orders",
            "http://128.0.0.1/orders",
        ] {
            let error = parse(&table(remote, "")).expect_err(remote);
            assert!(error.contains("handlers.\"purchase.order\""), "{error}");
            assert!(error.contains("cleartext"), "{error}");
            assert!(error.contains("Authorization"), "{error}");
            assert!(error.contains("allow_cleartext_headers"), "{error}");
            assert!(!error.contains("s3cret"), "{error}");
            // Explicitly allowed: accepted.
            let handlers = parse(&table(remote, "allow_cleartext_headers = true\n"))
                .unwrap_or_else(|e| panic!("{remote}: {e}"));
            assert!(matches!(
                handlers.for_kind(ActionKind::PurchaseOrder),
                HandlerConfig::Webhook {
                    allow_cleartext_headers: true,
                    ..
                }
            ));
        }
        for local in [
            "http://127.0.0.1:8080/orders",
            "http://127.8.9.10/orders",
            "http://LocalHost:9000/orders",
            "http://[::1]:9000/orders",
        ] {
            parse(&table(local, "")).unwrap_or_else(|e| panic!("{local}: {e}"));
        }
        // No headers, no secret: any host will do.
        parse("[handlers.\"purchase.order\"]\ntype = \"webhook\"\nurl = \"http://shop.example/orders\"\n")
            .expect("no headers");
    }

    #[test]
    fn debug_does_not_print_header_values() {
        let shown = format!(
            "{:?}",
            webhook("http://h/o", 10, &[("Authorization", "Bearer s3cret")])
        );
        assert!(shown.contains("Authorization"), "{shown}");
        assert!(!shown.contains("s3cret"), "{shown}");
    }

    #[test]
    fn speakable_cleans_and_cuts() {
        assert_eq!(speakable("  a\tb\n\u{7}c  ", 10), "a b c");
        assert_eq!(speakable("abcdef", 4), "abc…");
        assert_eq!(tail_chars("héllo", 3), "llo");
        assert_eq!(tail_chars("hi", 3), "hi");
    }
}

//! The Wyoming wire format: reading and writing one event, within limits.
//!
//! Why it exists: everything a Wyoming client sends arrives here first, so
//! this is where a client that sends garbage, lies about its lengths or
//! floods is stopped, before any of it is believed. Each event is one JSON
//! line (`{"type": ..., "data": {...}, "data_length": N, "payload_length":
//! M}`, the last three optional), then `data_length` bytes of JSON merged
//! into `data`, then `payload_length` bytes of payload (PCM for
//! `audio-chunk`). This is the framing of the `wyoming` Python package
//! (its `event.py`), which Home Assistant and the satellites use; the code
//! here is our own.
//!
//! Events are written with `data` inline on the line: every reader of the
//! format accepts that, and the length-prefixed form only matters for
//! data too large for a line, which voicegate never sends.

use serde_json::{Map, Value};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The longest header line accepted (bytes, with its newline).
pub const MAX_LINE: usize = 64 * 1024;

/// The most extra data (`data_length`) accepted.
pub const MAX_DATA: u64 = 64 * 1024;

/// The largest payload (`payload_length`) accepted: one second of 48 kHz
/// stereo 32-bit audio is 384 KiB; real clients send chunks of tens of ms.
pub const MAX_PAYLOAD: u64 = 1024 * 1024;

/// One event, as sent or received.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Event {
    /// What it is ("describe", "audio-chunk", ...).
    pub kind: String,
    /// Its data, merged from the line and the extra data.
    pub data: Map<String, Value>,
    /// Its payload (empty when none).
    pub payload: Vec<u8>,
}

impl Event {
    /// An event of `kind` with `data`.
    pub fn new(kind: &str, data: Value) -> Event {
        Event {
            kind: kind.to_string(),
            data: match data {
                Value::Object(map) => map,
                _ => Map::new(),
            },
            payload: Vec::new(),
        }
    }

    /// An `error` event: `text` for people, `code` for programs.
    pub fn error(text: impl Into<String>, code: &str) -> Event {
        Event::new(
            "error",
            serde_json::json!({ "text": text.into(), "code": code }),
        )
    }

    /// A string in `data`, if there is one.
    pub fn str(&self, key: &str) -> Option<&str> {
        self.data.get(key).and_then(Value::as_str)
    }

    /// A non-negative integer in `data`, if there is one.
    pub fn uint(&self, key: &str) -> Option<u64> {
        self.data.get(key).and_then(Value::as_u64)
    }
}

/// Why an event could not be read. After any of these the stream's framing
/// cannot be trusted, so the connection is answered with an `error` event
/// (where it can be) and closed.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// The header line is longer than [`MAX_LINE`].
    #[error("an event line is longer than {MAX_LINE} bytes")]
    LineTooLong,
    /// The header is not a JSON object with a string `type`.
    #[error("not a Wyoming event: {0}")]
    BadHeader(String),
    /// `data_length` or `payload_length` is over its limit.
    #[error("{what} of {length} bytes is over the limit of {limit}")]
    TooLarge {
        /// Which length.
        what: &'static str,
        /// What the client announced.
        length: u64,
        /// The limit.
        limit: u64,
    },
    /// The extra data is not a JSON object.
    #[error("the event's data is not a JSON object: {0}")]
    BadData(String),
    /// The stream ended inside an event.
    #[error("the connection ended in the middle of an event")]
    Truncated,
    /// Reading failed.
    #[error("cannot read from the connection: {0}")]
    Io(#[from] std::io::Error),
}

impl ProtocolError {
    /// The `code` of the `error` event that answers it.
    pub fn code(&self) -> &'static str {
        match self {
            ProtocolError::LineTooLong | ProtocolError::TooLarge { .. } => "too-large",
            ProtocolError::BadHeader(_) | ProtocolError::BadData(_) => "bad-event",
            ProtocolError::Truncated | ProtocolError::Io(_) => "io",
        }
    }
}

/// Reads one event. `Ok(None)`: the client closed the connection between
/// events.
pub async fn read_event<R: AsyncBufRead + Unpin>(
    reader: &mut R,
) -> Result<Option<Event>, ProtocolError> {
    let mut line = Vec::new();
    // `take` bounds the buffering: a client that never sends a newline
    // costs at most MAX_LINE bytes.
    let read = (&mut *reader)
        .take(MAX_LINE as u64)
        .read_until(b'\n', &mut line)
        .await?;
    if read == 0 {
        return Ok(None);
    }
    if line.last() != Some(&b'\n') {
        return Err(if line.len() >= MAX_LINE {
            ProtocolError::LineTooLong
        } else {
            ProtocolError::Truncated
        });
    }
    let header: Value =
        serde_json::from_slice(&line).map_err(|e| ProtocolError::BadHeader(e.to_string()))?;
    let Value::Object(mut header) = header else {
        return Err(ProtocolError::BadHeader("not a JSON object".into()));
    };
    let kind = match header.remove("type") {
        Some(Value::String(kind)) if !kind.is_empty() => kind,
        _ => return Err(ProtocolError::BadHeader("no \"type\"".into())),
    };
    let mut data = match header.remove("data") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(map)) => map,
        Some(_) => return Err(ProtocolError::BadData("\"data\" is not an object".into())),
    };
    let length = |key: &'static str, limit: u64| -> Result<u64, ProtocolError> {
        match header.get(key) {
            None | Some(Value::Null) => Ok(0),
            Some(v) => {
                let n = v.as_u64().ok_or_else(|| {
                    ProtocolError::BadHeader(format!("\"{key}\" is not a non-negative integer"))
                })?;
                if n > limit {
                    return Err(ProtocolError::TooLarge {
                        what: key,
                        length: n,
                        limit,
                    });
                }
                Ok(n)
            }
        }
    };
    let data_length = length("data_length", MAX_DATA)?;
    let payload_length = length("payload_length", MAX_PAYLOAD)?;
    if data_length > 0 {
        let bytes = read_exactly(reader, data_length).await?;
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(extra)) => data.extend(extra),
            Ok(_) => return Err(ProtocolError::BadData("not an object".into())),
            Err(e) => return Err(ProtocolError::BadData(e.to_string())),
        }
    }
    let payload = if payload_length > 0 {
        read_exactly(reader, payload_length).await?
    } else {
        Vec::new()
    };
    Ok(Some(Event {
        kind,
        data,
        payload,
    }))
}

/// Reads exactly `n` bytes (already checked against its limit).
async fn read_exactly<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    n: u64,
) -> Result<Vec<u8>, ProtocolError> {
    let mut bytes = vec![0; usize::try_from(n).map_err(|_| ProtocolError::Truncated)?];
    match reader.read_exact(&mut bytes).await {
        Ok(_) => Ok(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(ProtocolError::Truncated),
        Err(e) => Err(ProtocolError::Io(e)),
    }
}

/// Writes one event (data inline, then the payload) and flushes it.
pub async fn write_event<W: AsyncWrite + Unpin>(
    writer: &mut W,
    event: &Event,
) -> std::io::Result<()> {
    let mut header = Map::new();
    header.insert("type".into(), Value::String(event.kind.clone()));
    if !event.data.is_empty() {
        header.insert("data".into(), Value::Object(event.data.clone()));
    }
    if !event.payload.is_empty() {
        header.insert("payload_length".into(), event.payload.len().into());
    }
    let mut bytes = serde_json::to_vec(&Value::Object(header)).map_err(std::io::Error::other)?;
    bytes.push(b'\n');
    bytes.extend_from_slice(&event.payload);
    writer.write_all(&bytes).await?;
    writer.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read_all(bytes: &[u8]) -> Vec<Result<Option<Event>, String>> {
        let mut reader = tokio::io::BufReader::new(bytes);
        let mut out = Vec::new();
        loop {
            let r = read_event(&mut reader).await.map_err(|e| e.to_string());
            let stop = !matches!(r, Ok(Some(_)));
            out.push(r);
            if stop {
                return out;
            }
        }
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(f)
    }

    #[test]
    fn events_with_inline_and_extra_data_and_payloads_are_read() {
        let data = br#"{"width":2,"channels":1}"#;
        let mut bytes = b"{\"type\":\"describe\"}\n".to_vec();
        bytes.extend_from_slice(
            format!(
                "{{\"type\":\"audio-chunk\",\"data\":{{\"rate\":16000}},\"data_length\":{},\"payload_length\":4}}\n",
                data.len()
            )
            .as_bytes(),
        );
        bytes.extend_from_slice(data);
        bytes.extend_from_slice(&[1, 0, 2, 0]);
        let events = block_on(read_all(&bytes));
        assert_eq!(events.len(), 3, "{events:?}");
        let Ok(Some(first)) = &events[0] else {
            panic!("{events:?}")
        };
        assert_eq!(first.kind, "describe");
        let Ok(Some(chunk)) = &events[1] else {
            panic!("{events:?}")
        };
        assert_eq!(chunk.kind, "audio-chunk");
        assert_eq!(chunk.uint("rate"), Some(16000));
        assert_eq!(chunk.uint("width"), Some(2));
        assert_eq!(chunk.payload, vec![1, 0, 2, 0]);
        assert!(matches!(events[2], Ok(None)));
    }

    #[test]
    fn bad_events_are_errors_not_panics() {
        let too_long = vec![b'x'; MAX_LINE + 10];
        let cases: Vec<(&[u8], &str)> = vec![
            (b"not json\n", "not a Wyoming event"),
            (b"[1,2]\n", "not a JSON object"),
            (b"{\"data\":{}}\n", "no \"type\""),
            (
                b"{\"type\":\"x\",\"payload_length\":99999999999}\n",
                "over the limit",
            ),
            (b"{\"type\":\"x\",\"payload_length\":-1}\n", "non-negative"),
            (
                b"{\"type\":\"x\",\"data_length\":5}\n[1,2]",
                "not an object",
            ),
            (
                b"{\"type\":\"x\",\"payload_length\":10}\nabc",
                "ended in the middle",
            ),
            (b"{\"type\":\"x\"", "ended in the middle"),
            (&too_long, "longer than"),
        ];
        for (bytes, expect) in cases {
            let events = block_on(read_all(bytes));
            let last = events.last().expect("one result");
            assert!(
                last.as_ref().is_err_and(|e| e.contains(expect)),
                "{:?}: {last:?}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(60)])
            );
        }
    }

    #[test]
    fn written_events_read_back() {
        let mut event = Event::new("transcript", serde_json::json!({"text": "hi \"there\"\n"}));
        event.payload = vec![9, 8, 7];
        let mut bytes = Vec::new();
        block_on(write_event(&mut bytes, &event)).expect("write");
        assert_eq!(bytes.iter().filter(|&&b| b == b'\n').count(), 1);
        let events = block_on(read_all(&bytes));
        assert_eq!(events[0].as_ref().ok(), Some(&Some(event)));
    }
}

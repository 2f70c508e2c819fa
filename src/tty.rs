//! Asking for a secret on the controlling terminal without echoing it.
//!
//! `voicegate gate hash-pin` reads the PIN here rather than from its
//! arguments or a pipe, so the PIN never lands in shell history or on the
//! screen. Echo is turned off with termios and always restored, also when
//! reading fails.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsRawFd;

/// Restores the terminal's settings when dropped.
struct EchoOff {
    fd: i32,
    saved: libc::termios,
}

impl EchoOff {
    fn new(tty: &File) -> std::io::Result<EchoOff> {
        let fd = tty.as_raw_fd();
        // SAFETY: termios is plain data; tcgetattr fills it for an open fd.
        let mut saved: libc::termios = unsafe { std::mem::zeroed() };
        if unsafe { libc::tcgetattr(fd, &mut saved) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut quiet = saved;
        quiet.c_lflag &= !(libc::ECHO | libc::ECHONL);
        quiet.c_lflag |= libc::ICANON;
        // SAFETY: as above; the settings are a copy of the terminal's own.
        if unsafe { libc::tcsetattr(fd, libc::TCSAFLUSH, &quiet) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(EchoOff { fd, saved })
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        // SAFETY: restores the settings read in `new` on the same fd.
        unsafe {
            libc::tcsetattr(self.fd, libc::TCSAFLUSH, &self.saved);
        }
    }
}

/// Writes `prompt` to the controlling terminal (`/dev/tty`) and reads one
/// line from it with echo off. An error if there is no terminal.
pub fn read_secret(prompt: &str) -> std::io::Result<String> {
    let tty = File::options().read(true).write(true).open("/dev/tty")?;
    let mut writer = tty.try_clone()?;
    let guard = EchoOff::new(&tty)?;
    writer.write_all(prompt.as_bytes())?;
    writer.flush()?;
    let mut line = String::new();
    let read = BufReader::new(&tty).read_line(&mut line);
    drop(guard);
    // The user's Enter was not echoed either.
    let _ = writer.write_all(b"\n");
    read?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

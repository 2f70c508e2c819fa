//! The `voicegate` binary: parse arguments, run the command, map errors to
//! exit codes. Everything else lives in the library.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = voicegate::cli::Cli::parse();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match voicegate::app::run(cli, &mut out) {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            let e = anyhow::Error::from(e);
            eprintln!("voicegate: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

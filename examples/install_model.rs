//! `voicegate models ...` as an example program, so models can be installed
//! (by `scripts/install-model.sh`) before the subcommand is wired into the
//! CLI, and so the library path can be exercised on its own.
//!
//! ```sh
//! cargo run --release --example install_model -- install tiny.en-q8_0
//! cargo run --release --example install_model -- list
//! cargo run --release --example install_model -- --models-dir /tmp/m verify
//! ```

use std::path::PathBuf;

use clap::Parser;
use voicegate::stt::model::cli::{ModelsCommand, run};
use voicegate::stt::model::default_models_dir;

/// Install, list and verify voicegate's speech models.
#[derive(Debug, Parser)]
struct Args {
    /// Models directory (default: $VOICEGATE_MODELS, else
    /// ~/.local/share/voicegate/models).
    #[arg(long, global = true, value_name = "DIR")]
    models_dir: Option<PathBuf>,
    /// Print JSON.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: ModelsCommand,
}

fn main() {
    let args = Args::parse();
    let dir = match args.models_dir.map(Ok).unwrap_or_else(default_models_dir) {
        Ok(dir) => dir,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    let mut out = std::io::stdout();
    match run(args.command, &dir, args.json, &mut out) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}

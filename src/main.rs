//! Entry point: parse the command line, run, and map the outcome to an exit code.

use std::process::ExitCode;

use clap::Parser;

use chat::app::{self, Exit};
use chat::cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let exit = match cli.command {
        Some(tool) => app::run_tool(tool),
        None => match cli.peer.into_config() {
            Ok(config) => app::run_peer(config),
            Err(err) => {
                chat::ui::status(&format!("chat: error: {err:#}"));
                Exit::Usage
            }
        },
    };
    ExitCode::from(exit as u8)
}

//! promote / demote / resume / reload / backend: one request, print the answer; and
//! what `status` and `drill` share: asking for a typed answer, printing JSON.

use std::path::Path;
use std::process::ExitCode;

use fo_agent::api::control::{self, Request, Response};

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum BackendAction {
    Drain,
    Enable,
}

pub fn call(socket: &Path, req: Request) -> ExitCode {
    match control::call(socket, &req) {
        Ok(Response::Ok { message }) => {
            println!("{message}");
            ExitCode::SUCCESS
        }
        Ok(Response::Error { message }) => {
            eprintln!("fo-agent: {message}");
            ExitCode::FAILURE
        }
        Ok(Response::Status { .. } | Response::Drill { .. }) => {
            eprintln!("fo-agent: unexpected answer");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("fo-agent: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Send `req` and hand its answer to `pick`, which returns the wanted variant's
/// content (or gives the answer back). An error, a failed call or another variant is
/// printed on stderr (an error after `refused`) and becomes the failing exit code.
pub fn ask<T>(
    socket: &Path,
    req: &Request,
    refused: &str,
    pick: impl FnOnce(Response) -> Result<T, Response>,
) -> Result<T, ExitCode> {
    let answer = control::call(socket, req).map_err(|e| {
        eprintln!("fo-agent: {e}");
        ExitCode::FAILURE
    })?;
    pick(answer).map_err(|other| {
        match other {
            Response::Error { message } => eprintln!("fo-agent: {refused}{message}"),
            other => eprintln!("fo-agent: unexpected answer {other:?}"),
        }
        ExitCode::FAILURE
    })
}

/// Print `value` as pretty JSON on stdout; false (said on stderr) if it cannot be.
pub fn print_json(value: &impl serde::Serialize) -> bool {
    match serde_json::to_string_pretty(value) {
        Ok(s) => {
            println!("{s}");
            true
        }
        Err(e) => {
            eprintln!("fo-agent: {e}");
            false
        }
    }
}

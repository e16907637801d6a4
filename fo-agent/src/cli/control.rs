//! promote / demote / resume / reload / backend: one request, print the answer.

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

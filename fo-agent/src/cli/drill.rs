//! `fo-agent drill ROUTER [--back] [--json]`.

use std::path::Path;
use std::process::ExitCode;

use fo_agent::api::control::{self, Request, Response};

/// Exit 0 when every leg handed over and both timelines came; 1 otherwise (a refusal
/// says why on stderr).
pub fn main(socket: &Path, router: String, back: bool, json: bool) -> ExitCode {
    let report = match control::call(socket, &Request::Drill { router, back }) {
        Ok(Response::Drill { report }) => report,
        Ok(Response::Error { message }) => {
            eprintln!("fo-agent: drill refused: {message}");
            return ExitCode::FAILURE;
        }
        Ok(other) => {
            eprintln!("fo-agent: unexpected answer {other:?}");
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("fo-agent: {e}");
            return ExitCode::FAILURE;
        }
    };
    if json {
        match serde_json::to_string_pretty(&report) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("fo-agent: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        print!("{}", report.human());
    }
    if report.result == "passed" {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

//! `fo-agent drill ROUTER [--back] [--json]`.

use std::path::Path;
use std::process::ExitCode;

use fo_agent::api::control::{Request, Response};

use super::control::{ask, print_json};

/// Exit 0 when every leg handed over and both timelines came; 1 otherwise (a refusal
/// says why on stderr).
pub fn main(socket: &Path, router: String, back: bool, json: bool) -> ExitCode {
    let req = Request::Drill { router, back };
    let report = match ask(socket, &req, "drill refused: ", |r| match r {
        Response::Drill { report } => Ok(report),
        other => Err(other),
    }) {
        Ok(report) => report,
        Err(code) => return code,
    };
    if json {
        if !print_json(&report) {
            return ExitCode::FAILURE;
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

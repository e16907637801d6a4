use std::path::Path;
use std::process::ExitCode;

/// `fo-agent check --config FILE`.
pub fn main(path: &Path) -> ExitCode {
    match fo_config::Config::load(path) {
        Ok(_) => {
            println!("{}: OK", path.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

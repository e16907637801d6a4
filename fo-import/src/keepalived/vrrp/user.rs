//! The user (and group) a script or hook runs as.

use fo_config::valid_account_name;

use crate::ParseError;
use crate::keepalived::need;
use crate::keepalived::tree::Stmt;
use crate::plan::RunAs;
use crate::source::Loc;

pub(super) fn user_of(s: &Stmt, first: usize) -> Result<RunAs, ParseError> {
    let r = RunAs {
        user: need(s, first, "a user name")?.to_owned(),
        group: s.arg(first + 1).map(str::to_owned),
    };
    check_user(&r, s.at())?;
    Ok(r)
}

/// A user/group keepalived could look up is one fo can name.
pub fn check_user(r: &RunAs, at: Loc) -> Result<(), ParseError> {
    for n in std::iter::once(&r.user).chain(r.group.as_ref()) {
        if !valid_account_name(n) {
            return Err(ParseError::at(
                at,
                format!("{n:?} is not a user or group name"),
            ));
        }
    }
    Ok(())
}

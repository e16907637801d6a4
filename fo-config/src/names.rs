//! The rules for names that stand for something outside the config (an interface, a
//! user or group), public so that a translator writes only names the config accepts.

/// A network interface name: 1 to 15 bytes, not `.` or `..`, no `/`, `:`, spaces or
/// control characters.
pub fn valid_interface_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() < 16
        && s != "."
        && s != ".."
        && !s
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
}

/// A user or group name as in the user and group databases: 1 to 256 bytes, not
/// starting with `-`, no `:`, `/`, spaces or control characters.
pub fn valid_account_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 256
        && !s.starts_with('-')
        && !s
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == ':' || c == '/')
}

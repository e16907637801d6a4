//! What the VRRP translation keeps while it reads the config.

use std::collections::{BTreeMap, HashMap};

use super::globals::Globals;
use super::scripts::{Script, TrackFile};
use super::sync_group::Group;

/// Everything translated from the VRRP side of the config.
pub(super) struct State<'t> {
    pub(super) globals: Globals,
    pub(super) scripts: BTreeMap<String, Script>,
    pub(super) files: BTreeMap<String, TrackFile>,
    /// instance name -> its sync group.
    pub(super) groups: HashMap<String, Group<'t>>,
    /// `[[check]]` names taken, in order.
    pub(super) check_names: Vec<String>,
    /// Interface checks by interface, file checks by (track_file name, non-zero?).
    pub(super) iface_checks: HashMap<String, String>,
    pub(super) file_checks: HashMap<(String, bool), String>,
}

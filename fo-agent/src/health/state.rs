//! Rise/fall hysteresis for one health target: pure, no clock, no I/O.
//!
//! A target is either up or down. It goes down after `fall` consecutive failed
//! probes and up after `rise` consecutive successful ones; a result that agrees
//! with the current state just resets the opposite run. The state a target starts
//! in is chosen by the caller (see [`Status`] and [`crate::health::scheduler`]):
//!
//! - service backends start **up**, so traffic flows from the first second after the
//!   agent starts (or restarts under load); a dead backend is taken out after `fall`
//!   failures, as HAProxy does;
//! - node checks start **down** ("not proven"): a gate stays closed and a tracked
//!   check lowers the priority until the check has passed `rise` times, so a node
//!   that starts with a broken dependency never grabs mastership meanwhile; except
//!   the checks of routers that an agent restart finds still served, which start up
//!   (see `scheduler::plan_resuming`).

/// Health of a target as decided by the rise/fall rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    Up,
    Down,
}

impl Status {
    pub fn is_up(self) -> bool {
        self == Self::Up
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Up => "up",
            Self::Down => "down",
        }
    }
}

/// A change of [`Status`] caused by one observation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub from: Status,
    pub to: Status,
}

/// Rise/fall counter of one target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tracker {
    rise: u32,
    fall: u32,
    status: Status,
    /// Consecutive results equal to `last_ok` (successes or failures).
    consecutive: u32,
    /// The last observation; `None` before the first.
    last_ok: Option<bool>,
}

impl Tracker {
    /// A tracker in `initial` state. `rise` and `fall` of 0 are treated as 1.
    pub fn new(rise: u32, fall: u32, initial: Status) -> Self {
        Self {
            rise: rise.max(1),
            fall: fall.max(1),
            status: initial,
            consecutive: 0,
            last_ok: None,
        }
    }

    /// Record one probe result; returns the transition it caused, if any.
    pub fn observe(&mut self, ok: bool) -> Option<Transition> {
        if self.last_ok == Some(ok) {
            self.consecutive = self.consecutive.saturating_add(1);
        } else {
            self.consecutive = 1;
            self.last_ok = Some(ok);
        }
        let to = match (self.status, ok) {
            (Status::Down, true) if self.consecutive >= self.rise => Status::Up,
            (Status::Up, false) if self.consecutive >= self.fall => Status::Down,
            _ => return None,
        };
        let from = self.status;
        self.status = to;
        Some(Transition { from, to })
    }

    pub fn status(&self) -> Status {
        self.status
    }

    /// How many results in a row were equal to the last one.
    pub fn consecutive(&self) -> u32 {
        self.consecutive
    }

    /// The last result, `None` before the first observation.
    pub fn last_ok(&self) -> Option<bool> {
        self.last_ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feed `results` ("+" success, "-" failure) and return the status after each.
    fn run(t: &mut Tracker, results: &str) -> String {
        results
            .chars()
            .map(|c| {
                t.observe(c == '+');
                match t.status() {
                    Status::Up => 'U',
                    Status::Down => 'D',
                }
            })
            .collect()
    }

    /// An up target goes down after `fall` failures in a row, a down one up after
    /// `rise` successes in a row (rise 2, fall 3).
    #[test]
    fn a_target_changes_after_rise_or_fall_consecutive_results() {
        let cases = [
            (
                Status::Up,
                "--+---",
                "UUUUUD",
                "a success in between must restart the fall count",
            ),
            (
                Status::Down,
                "+-++",
                "DDDU",
                "a failure in between must restart the rise count",
            ),
        ];
        for (initial, results, want, why) in cases {
            let mut t = Tracker::new(2, 3, initial);
            assert_eq!(
                run(&mut t, results),
                want,
                "{initial:?} after {results}: {why}"
            );
        }
    }

    #[test]
    fn transitions_are_reported_once() {
        let mut t = Tracker::new(1, 2, Status::Up);
        assert_eq!(t.observe(false), None);
        assert_eq!(
            t.observe(false),
            Some(Transition {
                from: Status::Up,
                to: Status::Down
            })
        );
        assert_eq!(t.observe(false), None, "staying down is no transition");
        assert_eq!(t.consecutive(), 3);
        assert_eq!(
            t.observe(true),
            Some(Transition {
                from: Status::Down,
                to: Status::Up
            })
        );
        assert_eq!(t.consecutive(), 1);
        assert_eq!(t.last_ok(), Some(true));
    }

    #[test]
    fn rise_and_fall_of_one_follow_every_result() {
        let mut t = Tracker::new(1, 1, Status::Down);
        assert_eq!(run(&mut t, "+-+-"), "UDUD");
    }

    #[test]
    fn zero_rise_or_fall_behaves_as_one() {
        let mut t = Tracker::new(0, 0, Status::Up);
        assert_eq!(run(&mut t, "-+"), "DU");
    }

    #[test]
    fn initial_state_holds_until_proven_otherwise() {
        let mut t = Tracker::new(3, 3, Status::Down);
        assert_eq!(t.last_ok(), None);
        assert_eq!(
            run(&mut t, "++"),
            "DD",
            "two of three successes are not enough"
        );
        let mut t = Tracker::new(3, 3, Status::Up);
        assert_eq!(
            run(&mut t, "--"),
            "UU",
            "two of three failures are not enough"
        );
    }
}

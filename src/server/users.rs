//! Which OS users may talk to the daemon: the local trust boundary (docs/security.md).
//!
//! A connection is served only if the owner of the client's socket ([`super::owner`])
//! is the daemon's own effective user, a user listed in `allowed_users`, or a member
//! of a group listed in `allowed_groups` (for the system service, which runs as its
//! own user). The decision is pure; looking up accounts is passed in.

/// An OS account as the group rule needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// Primary group.
    pub gid: u32,
    /// Every group the account belongs to (primary and supplementary).
    pub groups: Vec<u32>,
}

/// Who may connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserPolicy {
    own: u32,
    uids: Vec<u32>,
    gids: Vec<u32>,
}

/// Why a uid passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admitted {
    /// The daemon's own effective user.
    Own,
    /// Listed in `allowed_users`.
    Listed,
    /// Member of this allowed group.
    Group(u32),
}

/// Why a uid was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// Not the daemon's user, not listed, in no allowed group.
    #[error("uid {0} is not the daemon's user, not in allowed_users and in no allowed_groups")]
    NotAllowed(u32),
    /// Groups are configured but the uid has no account to take groups from.
    #[error("uid {0} has no account (no passwd entry), so its groups are unknown")]
    UnknownAccount(u32),
}

impl UserPolicy {
    /// The policy for a daemon running as `own` with the resolved allow-lists.
    pub fn new(own: u32, uids: Vec<u32>, gids: Vec<u32>) -> UserPolicy {
        UserPolicy { own, uids, gids }
    }

    /// The policy for this process: its effective uid plus the lists.
    pub fn for_this_process(uids: Vec<u32>, gids: Vec<u32>) -> UserPolicy {
        UserPolicy::new(effective_uid(), uids, gids)
    }

    /// The daemon's own uid.
    pub fn own(&self) -> u32 {
        self.own
    }

    /// Decides on `uid`; `account` is asked only when a group rule must be checked.
    pub fn decide(
        &self,
        uid: u32,
        account: impl FnOnce(u32) -> Option<Account>,
    ) -> Result<Admitted, Denied> {
        if uid == self.own {
            return Ok(Admitted::Own);
        }
        if self.uids.contains(&uid) {
            return Ok(Admitted::Listed);
        }
        if self.gids.is_empty() {
            return Err(Denied::NotAllowed(uid));
        }
        let account = account(uid).ok_or(Denied::UnknownAccount(uid))?;
        self.gids
            .iter()
            .copied()
            .find(|g| *g == account.gid || account.groups.contains(g))
            .map(Admitted::Group)
            .ok_or(Denied::NotAllowed(uid))
    }
}

/// The process's effective uid.
#[cfg(unix)]
pub fn effective_uid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

/// Without Unix users there is no uid to compare; the owner lookup fails closed there.
#[cfg(not(unix))]
pub fn effective_uid() -> u32 {
    u32::MAX
}

/// The account of `uid` from the system's user database (NSS). Blocking.
#[cfg(target_os = "linux")]
pub fn account(uid: u32) -> Option<Account> {
    use nix::unistd::{Uid, User, getgrouplist};
    let user = User::from_uid(Uid::from_raw(uid)).ok()??;
    let name = std::ffi::CString::new(user.name).ok()?;
    let groups = getgrouplist(&name, user.gid)
        .map(|gs| gs.into_iter().map(|g| g.as_raw()).collect())
        .unwrap_or_else(|_| vec![user.gid.as_raw()]);
    Some(Account {
        gid: user.gid.as_raw(),
        groups,
    })
}

/// No user database here.
#[cfg(not(target_os = "linux"))]
pub fn account(_uid: u32) -> Option<Account> {
    None
}

/// Resolves an `allowed_users` entry: a user name, or a numeric uid (which need not
/// have an account).
pub fn resolve_user(entry: &str) -> Result<u32, String> {
    if let Ok(uid) = entry.parse::<u32>() {
        return Ok(uid);
    }
    #[cfg(unix)]
    {
        match nix::unistd::User::from_name(entry) {
            Ok(Some(u)) => Ok(u.uid.as_raw()),
            Ok(None) => Err(format!("no user named {entry:?} on this system")),
            Err(e) => Err(format!("cannot look up user {entry:?}: {e}")),
        }
    }
    // Windows: an account name or a SID string, kept as a SID by the owner lookup.
    #[cfg(windows)]
    {
        super::owner::windows::allow_account(entry)
    }
    #[cfg(not(any(unix, windows)))]
    Err(format!(
        "user names are not supported here; give a numeric uid for {entry:?}"
    ))
}

/// Resolves an `allowed_groups` entry: a group name or a numeric gid.
pub fn resolve_group(entry: &str) -> Result<u32, String> {
    if let Ok(gid) = entry.parse::<u32>() {
        return Ok(gid);
    }
    #[cfg(unix)]
    {
        match nix::unistd::Group::from_name(entry) {
            Ok(Some(g)) => Ok(g.gid.as_raw()),
            Ok(None) => Err(format!("no group named {entry:?} on this system")),
            Err(e) => Err(format!("cannot look up group {entry:?}: {e}")),
        }
    }
    #[cfg(not(unix))]
    Err(format!(
        "group names are not supported here; give a numeric gid for {entry:?}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member_of(groups: &[u32]) -> impl FnOnce(u32) -> Option<Account> {
        let groups = groups.to_vec();
        move |_| Some(Account { gid: 5000, groups })
    }

    #[test]
    fn own_user_and_listed_users_pass_without_an_account_lookup() {
        let p = UserPolicy::new(1000, vec![1001], vec![77]);
        let never = |_| -> Option<Account> { panic!("no lookup needed") };
        assert_eq!(p.decide(1000, never), Ok(Admitted::Own));
        assert_eq!(p.decide(1001, never), Ok(Admitted::Listed));
    }

    #[test]
    fn others_are_refused_unless_in_an_allowed_group() {
        let p = UserPolicy::new(1000, vec![], vec![]);
        assert_eq!(p.decide(0, member_of(&[])), Err(Denied::NotAllowed(0)));
        assert_eq!(
            p.decide(65534, member_of(&[])),
            Err(Denied::NotAllowed(65534))
        );
        let p = UserPolicy::new(1000, vec![], vec![77, 5000]);
        assert_eq!(p.decide(1002, member_of(&[1, 77])), Ok(Admitted::Group(77)));
        assert_eq!(
            p.decide(1002, member_of(&[])),
            Ok(Admitted::Group(5000)),
            "primary"
        );
        let p = UserPolicy::new(1000, vec![], vec![77]);
        assert_eq!(
            p.decide(1002, member_of(&[1, 2])),
            Err(Denied::NotAllowed(1002))
        );
        assert_eq!(p.decide(1002, |_| None), Err(Denied::UnknownAccount(1002)));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn names_and_numbers_resolve() {
        assert_eq!(resolve_user("root"), Ok(0));
        assert_eq!(resolve_user("4242"), Ok(4242));
        assert!(resolve_user("no-such-user-vb").is_err());
        assert_eq!(resolve_group("root"), Ok(0));
        assert!(resolve_group("no-such-group-vb").is_err());
        let root = account(0).expect("root has an account");
        assert_eq!(root.gid, 0);
        assert!(root.groups.contains(&0));
    }
}

//! Disabling a staff member in one practice: who may not be disabled.
//!
//! Disabling is per practice (a person may work for several): it ends their access to this
//! practice only. Two refusals keep a practice administrable: nobody disables themselves (an
//! admin could lock themselves out by mistake), and the last enabled admin stays enabled.

use crate::UserId;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisableRefusal {
    /// The caller named themselves.
    Yourself,
    /// The target is the practice's only enabled admin.
    LastAdmin,
}

impl DisableRefusal {
    /// A sentence for the problem's detail and the page's error (no names).
    pub fn explain(self) -> &'static str {
        match self {
            Self::Yourself => {
                "you cannot disable your own account; ask another admin of the practice"
            }
            Self::LastAdmin => {
                "this is the practice's last enabled admin: make someone else an admin first"
            }
        }
    }
}

/// Whether `actor` (a staff member, or `None` for a token or the operator) may disable
/// `target`, an enabled member; `target_is_admin` with `enabled_admins` counting the target.
pub fn may_disable(
    actor: Option<UserId>,
    target: UserId,
    target_is_admin: bool,
    enabled_admins: usize,
) -> Result<(), DisableRefusal> {
    if actor == Some(target) {
        return Err(DisableRefusal::Yourself);
    }
    if target_is_admin && enabled_admins <= 1 {
        return Err(DisableRefusal::LastAdmin);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nobody_disables_themselves() {
        let me = UserId::new();
        assert_eq!(
            may_disable(Some(me), me, true, 3),
            Err(DisableRefusal::Yourself)
        );
        assert_eq!(
            may_disable(Some(me), me, false, 3),
            Err(DisableRefusal::Yourself)
        );
    }

    #[test]
    fn the_last_enabled_admin_stays() {
        let (me, other) = (UserId::new(), UserId::new());
        assert_eq!(
            may_disable(Some(me), other, true, 1),
            Err(DisableRefusal::LastAdmin)
        );
        assert_eq!(
            may_disable(None, other, true, 1),
            Err(DisableRefusal::LastAdmin)
        );
        assert_eq!(may_disable(Some(me), other, true, 2), Ok(()));
    }

    #[test]
    fn anyone_else_may_be_disabled() {
        let (me, other) = (UserId::new(), UserId::new());
        assert_eq!(may_disable(Some(me), other, false, 1), Ok(()));
        assert_eq!(may_disable(None, other, false, 0), Ok(()));
    }
}

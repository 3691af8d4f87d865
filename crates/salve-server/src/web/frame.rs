//! The frame around every staff page: who is signed in, the navigation their role may use, and
//! when the session ends if left idle (for the logoff warning).

use salve_core::permissions::{Decision, Operation, Principal, Role, authorize};

use crate::AppState;
use crate::auth::SessionCaller;
use crate::error::ApiError;

/// One entry of the staff navigation.
pub struct NavItem {
    pub href: &'static str,
    pub label: &'static str,
    pub current: bool,
}

pub struct StaffFrame {
    pub user_name: String,
    pub role: Role,
    pub nav: Vec<NavItem>,
    /// Seconds of inactivity after which the server ends the session.
    pub idle_seconds: i64,
    /// The practice's IANA zone: times on staff pages are shown as its clocks show them.
    pub time_zone: String,
}

/// Staff areas and the operation that opens each one.
const AREAS: &[(&str, &str, Operation)] = &[
    ("/inbox", "Inbox", Operation::ConversationList),
    ("/admin/outbox", "Outbox", Operation::ProviderManage),
    ("/admin", "Admin", Operation::UserManage),
    ("/audit", "Audit", Operation::AuditRead),
];

/// The first area `principal` may open: where a sign-in lands when it was sent nowhere.
pub fn home_for(principal: &Principal) -> &'static str {
    AREAS
        .iter()
        .find(|(_, _, op)| matches!(authorize(principal, *op, None), Decision::Allow))
        .map_or("/", |(href, _, _)| *href)
}

impl StaffFrame {
    /// `current` is the `href` of the area this page belongs to.
    pub async fn load(
        state: &AppState,
        principal: &Principal,
        session: &SessionCaller,
        current: &str,
    ) -> Result<StaffFrame, ApiError> {
        let Principal::Staff { role, .. } = principal else {
            return Err(ApiError::forbidden("pages are for signed-in staff"));
        };
        let profile = state.store.user_profile(session.session.user_id).await?;
        let time_zone = match principal.practice() {
            Some(p) => state.store.practice(p).await?.time_zone,
            None => String::new(),
        };
        let nav = AREAS
            .iter()
            .filter(|(_, _, op)| matches!(authorize(principal, *op, None), Decision::Allow))
            .map(|(href, label, _)| NavItem {
                href,
                label,
                current: *href == current,
            })
            .collect();
        Ok(StaffFrame {
            user_name: profile.display_name.expose().clone(),
            role: *role,
            nav,
            idle_seconds: session.session.idle_timeout_secs,
            time_zone,
        })
    }

    /// An RFC 3339 time as "Nov 25, 2026, 9:05 AM" in the practice's zone.
    pub fn local(&self, rfc3339: &str) -> String {
        super::local_time(rfc3339, &self.time_zone, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use salve_core::{PracticeId, UserId};

    #[test]
    fn each_role_lands_on_an_area_it_may_open() {
        let staff = |role| Principal::Staff {
            practice: PracticeId::new(),
            user: UserId::new(),
            role,
        };
        assert_eq!(home_for(&staff(Role::Clinician)), "/inbox");
        assert_eq!(home_for(&staff(Role::Staff)), "/inbox");
        assert_eq!(home_for(&staff(Role::Auditor)), "/audit");
    }
}

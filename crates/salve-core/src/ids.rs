//! Typed identifiers, so a patient id can never be passed where a practice id is expected.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! typed_id {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// A fresh, time-ordered id (UUIDv7), so inserts stay index-friendly.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }
            pub fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }
            pub fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0.hyphenated())
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }
    };
}

typed_id!(
    /// A practice: the unit of isolation. Nothing crosses practices.
    PracticeId
);
typed_id!(
    /// A patient of one practice.
    PatientId
);
typed_id!(
    /// An API token of one practice.
    TokenId
);
typed_id!(
    /// A SMART backend-services client of one practice.
    SmartClientId
);
typed_id!(
    /// One contact point (phone or email) of a patient.
    ContactId
);

typed_id!(
    /// A person's staff account; one per person, with memberships in practices.
    UserId
);
typed_id!(
    /// A team within a practice.
    TeamId
);
typed_id!(
    /// A signed-in session (never the session's secret token).
    SessionId
);

typed_id!(
    /// A conversation thread with one patient (the main thread or a topic thread).
    ConversationId
);
typed_id!(
    /// One message (inbound, outbound, internal note or system message).
    MessageId
);
typed_id!(
    /// A file attached to a message.
    AttachmentId
);
typed_id!(
    /// One grant or revocation in a patient's consent history.
    ConsentEventId
);
typed_id!(
    /// A patient's confidential-communication request (45 CFR 164.522(b)).
    ConfidentialRequestId
);
typed_id!(
    /// One job of the transactional outbox.
    OutboxJobId
);
typed_id!(
    /// A saved reply template.
    TemplateId
);
typed_id!(
    /// An appointment type, location or provider in a practice's catalog.
    CatalogItemId
);
typed_id!(
    /// One appointment of a patient.
    AppointmentId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_strings() {
        let id = PatientId::new();
        let parsed: PatientId = id.to_string().parse().unwrap();
        assert_eq!(id, parsed);
        assert!("not-a-uuid".parse::<PatientId>().is_err());
    }

    #[test]
    fn new_ids_are_time_ordered() {
        let a = PracticeId::new();
        let b = PracticeId::new();
        assert!(a < b);
    }
}
typed_id!(
    /// A configured SMS or email provider of a practice.
    ProviderId
);
typed_id!(
    /// A Business Associate Agreement, or the attestation that a service is self-operated.
    AgreementId
);
typed_id!(
    /// One reminder decided for one visit (sent, held back, too late or superseded).
    ReminderId
);
typed_id!(
    /// A general practice announcement (one text to many patients).
    AnnouncementId
);

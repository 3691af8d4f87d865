//! Business associates (45 CFR 164.308(b), 164.314): which providers may carry patient data
//! for a practice, and when. A provider that would carry PHI (SMS, email) is enabled only with
//! a Business Associate Agreement on record, or an attestation that the practice operates the
//! service itself (its own SMTP relay). An agreement past its expiry stops sending through that
//! provider; the messages stay queued until it is renewed.
//!
//! Agreement dates are calendar dates in the practice's time zone; an agreement is in force
//! through the whole of its expiry date.

use jiff::civil::Date;

use crate::validation::FieldError;

/// The kinds of provider Salve can talk to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProviderKind {
    /// Twilio's 2010-04-01 Messages API, or a vendor that speaks it.
    Twilio,
    Telnyx,
    Smtp,
    /// Demo and development only: messages are written to a sealed local directory.
    LocalOutbox,
}

/// What a provider carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProviderMedium {
    Sms,
    Email,
    /// Demo/development: stands in for both.
    Both,
}

impl ProviderKind {
    pub const ALL: [ProviderKind; 4] = [
        ProviderKind::Twilio,
        ProviderKind::Telnyx,
        ProviderKind::Smtp,
        ProviderKind::LocalOutbox,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Twilio => "twilio",
            Self::Telnyx => "telnyx",
            Self::Smtp => "smtp",
            Self::LocalOutbox => "local_outbox",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == raw)
    }

    pub fn medium(self) -> ProviderMedium {
        match self {
            Self::Twilio | Self::Telnyx => ProviderMedium::Sms,
            Self::Smtp => ProviderMedium::Email,
            Self::LocalOutbox => ProviderMedium::Both,
        }
    }

    /// Whether the service sees patient data (phone numbers, addresses, message text): then a
    /// BAA or a self-operation attestation is required. The local outbox stays on this server.
    pub fn carries_phi(self) -> bool {
        !matches!(self, Self::LocalOutbox)
    }

    /// The local outbox may only run for a practice that has no real provider (it would
    /// otherwise swallow messages patients should receive).
    pub fn is_demo_only(self) -> bool {
        matches!(self, Self::LocalOutbox)
    }
}

/// Why the practice may let this vendor handle patient data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgreementBasis {
    /// A signed Business Associate Agreement.
    Baa {
        signed_on: Date,
        expires_on: Option<Date>,
        /// SHA-256 of the signed document, so the record can be matched to the paper.
        document_sha256: [u8; 32],
    },
    /// The practice operates the service itself (no business associate involved).
    SelfOperated { attested_on: Date },
}

/// An agreement as recorded, before it is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgreementTerms {
    pub vendor: String,
    pub basis: AgreementBasis,
}

pub const MAX_VENDOR_CHARS: usize = 120;

impl AgreementTerms {
    /// Checks the terms as an admin enters them on `today` (the practice's date).
    pub fn validate(&self, today: Date) -> Result<(), Vec<FieldError>> {
        let mut errors: Vec<FieldError> = check_vendor(&self.vendor).into_iter().collect();
        match &self.basis {
            AgreementBasis::Baa {
                signed_on,
                expires_on,
                ..
            } => {
                if *signed_on > today {
                    errors.push(FieldError::new(
                        "signed_on",
                        "the date the agreement was signed, not in the future",
                    ));
                }
                if let Some(expiry) = expires_on
                    && expiry < signed_on
                {
                    errors.push(FieldError::new(
                        "expires_on",
                        "an expiry date on or after the signing date",
                    ));
                }
            }
            AgreementBasis::SelfOperated { attested_on } => {
                if *attested_on > today {
                    errors.push(FieldError::new(
                        "attested_on",
                        "the date of the attestation, not in the future",
                    ));
                }
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

/// The vendor's name as an admin enters it.
pub fn check_vendor(vendor: &str) -> Option<FieldError> {
    let vendor = vendor.trim();
    (vendor.is_empty() || vendor.chars().count() > MAX_VENDOR_CHARS).then(|| {
        FieldError::new(
            "vendor",
            format!("the vendor's name, 1 to {MAX_VENDOR_CHARS} characters"),
        )
    })
}

/// Whether an agreement lets a provider carry patient data today.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coverage {
    /// No agreement is needed (the provider sees no patient data).
    NotNeeded,
    InForce,
    /// The agreement expired: nothing is sent until it is renewed.
    Expired {
        on: Date,
    },
    /// No agreement on record.
    Missing,
}

impl Coverage {
    pub fn allows_sending(self) -> bool {
        matches!(self, Self::NotNeeded | Self::InForce)
    }
}

/// The one rule: may `kind` carry patient data on `today`, given its agreement.
pub fn coverage(kind: ProviderKind, agreement: Option<&AgreementBasis>, today: Date) -> Coverage {
    if !kind.carries_phi() {
        return Coverage::NotNeeded;
    }
    match agreement {
        None => Coverage::Missing,
        Some(AgreementBasis::SelfOperated { .. }) => Coverage::InForce,
        Some(AgreementBasis::Baa { expires_on, .. }) => match expires_on {
            Some(expiry) if *expiry < today => Coverage::Expired { on: *expiry },
            _ => Coverage::InForce,
        },
    }
}

/// Why a provider may not be enabled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnableRefusal {
    #[error(
        "this provider would carry patient data: record a Business Associate Agreement with the vendor, or attest that the practice operates the service itself"
    )]
    NoAgreement,
    #[error(
        "the Business Associate Agreement with this vendor expired on {0}; record the renewal first"
    )]
    Expired(Date),
    #[error(
        "the local outbox is for demos and development only, and this practice has a real provider"
    )]
    DemoOnlyBesideRealProvider,
}

/// Whether an admin may enable a provider of `kind` for a practice today.
/// `practice_has_real_provider`: another enabled provider that is not demo-only.
pub fn may_enable(
    kind: ProviderKind,
    agreement: Option<&AgreementBasis>,
    today: Date,
    practice_has_real_provider: bool,
) -> Result<(), EnableRefusal> {
    if kind.is_demo_only() && practice_has_real_provider {
        return Err(EnableRefusal::DemoOnlyBesideRealProvider);
    }
    match coverage(kind, agreement, today) {
        Coverage::NotNeeded | Coverage::InForce => Ok(()),
        Coverage::Missing => Err(EnableRefusal::NoAgreement),
        Coverage::Expired { on } => Err(EnableRefusal::Expired(on)),
    }
}

#[cfg(test)]
mod tests {
    use jiff::civil::date;

    use super::*;

    fn baa(expires_on: Option<Date>) -> AgreementBasis {
        AgreementBasis::Baa {
            signed_on: date(2026, 1, 15),
            expires_on,
            document_sha256: [7; 32],
        }
    }

    #[test]
    fn every_phi_carrier_needs_an_agreement() {
        let today = date(2026, 12, 2);
        for kind in ProviderKind::ALL {
            let expected = if kind.carries_phi() {
                Err(EnableRefusal::NoAgreement)
            } else {
                Ok(())
            };
            assert_eq!(may_enable(kind, None, today, false), expected, "{kind:?}");
        }
        assert!(!ProviderKind::LocalOutbox.carries_phi());
        assert!(ProviderKind::Smtp.carries_phi());
    }

    #[test]
    fn a_baa_is_in_force_through_its_expiry_date() {
        let expiry = date(2026, 12, 31);
        let kind = ProviderKind::Twilio;
        assert_eq!(
            coverage(kind, Some(&baa(Some(expiry))), date(2026, 12, 31)),
            Coverage::InForce
        );
        assert_eq!(
            coverage(kind, Some(&baa(Some(expiry))), date(2027, 1, 1)),
            Coverage::Expired { on: expiry }
        );
        assert!(!Coverage::Expired { on: expiry }.allows_sending());
        assert_eq!(
            coverage(kind, Some(&baa(None)), date(2040, 1, 1)),
            Coverage::InForce
        );
        assert_eq!(
            may_enable(kind, Some(&baa(Some(expiry))), date(2027, 1, 1), false),
            Err(EnableRefusal::Expired(expiry))
        );
    }

    #[test]
    fn self_operation_is_attested_instead_of_a_baa() {
        let attested = AgreementBasis::SelfOperated {
            attested_on: date(2026, 3, 1),
        };
        assert_eq!(
            may_enable(ProviderKind::Smtp, Some(&attested), date(2026, 12, 2), true),
            Ok(())
        );
    }

    #[test]
    fn the_local_outbox_never_runs_beside_a_real_provider() {
        let today = date(2026, 12, 2);
        assert_eq!(
            may_enable(ProviderKind::LocalOutbox, None, today, true),
            Err(EnableRefusal::DemoOnlyBesideRealProvider)
        );
        assert_eq!(
            may_enable(ProviderKind::LocalOutbox, None, today, false),
            Ok(())
        );
    }

    #[test]
    fn terms_are_checked_as_entered() {
        let today = date(2026, 12, 2);
        let future = AgreementTerms {
            vendor: "Twilio Inc.".into(),
            basis: AgreementBasis::Baa {
                signed_on: date(2026, 12, 3),
                expires_on: Some(date(2026, 1, 1)),
                document_sha256: [0; 32],
            },
        };
        let errors = future.validate(today).unwrap_err();
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["signed_on", "expires_on"]);
        let blank = AgreementTerms {
            vendor: "  ".into(),
            basis: AgreementBasis::SelfOperated { attested_on: today },
        };
        assert_eq!(blank.validate(today).unwrap_err()[0].field, "vendor");
        let fine = AgreementTerms {
            vendor: "Our own relay".into(),
            basis: AgreementBasis::SelfOperated { attested_on: today },
        };
        assert_eq!(fine.validate(today), Ok(()));
    }
}

//! The reminders worker: for every visit ahead, decides which of its reminders are due
//! (salve-core's `reminders::decide`), renders each from the practice's template, routes it with
//! the channel policy and the patient's consent for appointment reminders, and records it with
//! its message and outbox job in one transaction. The store's unique key on (visit, slot, time)
//! makes a second instance, or a restart halfway, record nothing twice.

use std::collections::HashMap;

use jiff::Timestamp;
use jiff::tz::TimeZone;
use salve_core::appointments::AppointmentStatus;
use salve_core::consent::ConsentPurpose;
use salve_core::outgoing::{self, Draft, PatientFacts};
use salve_core::reminders::{self, MAX_HOURS_BEFORE, ReminderTemplate, Verdict};
use salve_core::routing::Delivery;
use salve_core::system_messages::Language;
use salve_core::templates::{Template, TemplateValues, Variable};
use salve_core::{CatalogItemId, PracticeId};
use salve_store::{
    Appointment, CatalogKind, NewReminder, OutboundPlan, PlanRefused, Recorded, ReminderSettings,
    SendFacts,
};
use time::OffsetDateTime;

use crate::AppState;

/// What one pass did, for logs and tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pass {
    pub sent: usize,
    pub held: usize,
    pub skipped: usize,
    pub not_sent: usize,
}

fn timestamp(at: OffsetDateTime) -> Timestamp {
    Timestamp::from_nanosecond(at.unix_timestamp_nanos()).unwrap_or(Timestamp::UNIX_EPOCH)
}

fn offset(at: Timestamp) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(at.as_nanosecond())
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// Decides and records every reminder due now. Tests drive reminders with this.
pub async fn run_once(state: &AppState) -> anyhow::Result<Pass> {
    let now = state.clock.now();
    let horizon = now + time::Duration::hours(i64::from(MAX_HOURS_BEFORE) + 24);
    let visits = state
        .store
        .appointments_starting_between(now, horizon)
        .await?;
    let mut settings: HashMap<PracticeId, ReminderSettings> = HashMap::new();
    let mut pass = Pass::default();
    for visit in visits {
        if !matches!(
            visit.status,
            AppointmentStatus::Booked | AppointmentStatus::Confirmed
        ) {
            continue;
        }
        let Ok(zone) = TimeZone::get(&visit.time_zone) else {
            tracing::warn!(appointment = %visit.id, "appointment time zone unknown; no reminders");
            continue;
        };
        let practice_settings = match settings.entry(visit.practice) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(state.store.reminder_settings(visit.practice).await?)
            }
        };
        let schedule = practice_settings.schedule_for(visit.appointment_type);
        let recorded: Vec<reminders::Recorded> = state
            .store
            .appointment_reminders(visit.practice, visit.id)
            .await?
            .into_iter()
            .filter(|r| r.starts_at == visit.starts_at)
            .map(|r| reminders::Recorded {
                slot_key: r.slot,
                sent_at: (r.state == salve_store::ReminderState::Sent)
                    .then(|| timestamp(r.created_at)),
            })
            .collect();
        let starts = timestamp(visit.starts_at);
        let due = reminders::decide(
            starts,
            &zone,
            schedule,
            practice_settings.limits,
            &recorded,
            timestamp(now),
        );
        let expires = reminders::expires_at(starts, practice_settings.limits);
        for slot in due {
            let new = NewReminder {
                practice: visit.practice,
                patient: visit.patient,
                appointment: visit.id,
                slot: slot.slot.key(),
                starts_at: visit.starts_at,
                due_at: offset(slot.due_at),
                verdict: slot.verdict,
            };
            let base = crate::api::portal::base_url(state);
            let unaccented = practice_settings.spanish_unaccented;
            let outcome = state
                .store
                .record_reminder(&new, |facts| {
                    reminder_plan(facts, &visit, &zone, unaccented, &base, expires)
                })
                .await?;
            match outcome {
                Recorded::Recorded { state: s, .. } => match s {
                    salve_store::ReminderState::Sent => pass.sent += 1,
                    salve_store::ReminderState::HeldByCap => pass.held += 1,
                    salve_store::ReminderState::NotSent => pass.not_sent += 1,
                    _ => pass.skipped += 1,
                },
                Recorded::AlreadyRecorded | Recorded::Stale => {}
            }
            if slot.verdict == Verdict::Send {
                tracing::debug!(appointment = %visit.id, slot = %slot.slot, "reminder decided");
            }
        }
    }
    Ok(pass)
}

fn catalog_value(
    facts: &SendFacts,
    kind: CatalogKind,
    id: CatalogItemId,
) -> Result<(String, bool), PlanRefused> {
    facts
        .catalog
        .iter()
        .find(|c| c.id == id && c.kind == kind)
        .map(|c| (c.name.clone(), c.sms_safe && c.active))
        .ok_or_else(|| {
            PlanRefused(format!(
                "the appointment's {} is no longer in the practice's catalog",
                kind.as_str().replace('_', " ")
            ))
        })
}

/// The reminder's text for this patient, with the catalog's SMS-safe flags, routed by the
/// channel policy and the patient's consent for appointment reminders.
pub(crate) fn reminder_plan(
    facts: &SendFacts,
    visit: &Appointment,
    zone: &TimeZone,
    spanish_unaccented: bool,
    base: &str,
    expires: Timestamp,
) -> Result<OutboundPlan, PlanRefused> {
    let lang = Language::for_tag(&facts.patient.record.preferred_language);
    let template = ReminderTemplate::for_language(lang, spanish_unaccented);
    let (date, time) = reminders::visit_date_time(timestamp(visit.starts_at), zone, lang);
    let (type_name, type_safe) =
        catalog_value(facts, CatalogKind::AppointmentType, visit.appointment_type)?;
    let (location, location_safe) = catalog_value(facts, CatalogKind::Location, visit.location)?;
    let (provider, provider_safe) = catalog_value(facts, CatalogKind::Provider, visit.provider)?;
    let mut values = TemplateValues::new();
    values
        .set(
            Variable::PracticeSenderName,
            facts.settings.sender_name.clone(),
        )
        .set(Variable::PracticePhone, facts.settings.phone.clone())
        .set(Variable::AppointmentDate, date)
        .set(Variable::AppointmentTime, time)
        .set_catalog(Variable::AppointmentType, type_name, type_safe)
        .set_catalog(Variable::AppointmentLocation, location, location_safe)
        .set_catalog(Variable::AppointmentProvider, provider, provider_safe);
    let rendered = Template::new(template.body())
        .parse()
        .map_err(|_| PlanRefused("the reminder template is invalid".into()))?
        .render(&values)
        .map_err(|e| PlanRefused(format!("the reminder cannot be written: {e}")))?;
    let plan = outgoing::plan_staff_message(
        &Draft {
            text: &rendered.text,
            has_attachment: false,
            filled: rendered.filled,
            force_secure: false,
            purpose: ConsentPurpose::AppointmentReminders,
            kind: None,
        },
        &PatientFacts {
            consent: &facts.consent,
            confidential: &facts.confidential,
            contacts: &facts.patient.record.contacts,
            sender_name: &facts.settings.sender_name,
        },
    );
    // No consent to be reminded on any channel: nothing is sent and staff see why.
    if let Delivery::PortalOnly { reason } = &plan.routing.delivery {
        return Err(PlanRefused(reason.staff_text().to_owned()));
    }
    crate::outbound::store_plan(
        &plan,
        ConsentPurpose::AppointmentReminders,
        facts,
        &rendered.text,
        base,
        Some(expires.as_microsecond()),
    )
}

//! Webhooks from SMS providers: patients' texts and delivery reports. A request is accepted
//! only with a valid signature for the provider named in the URL (Twilio: HMAC of the public
//! URL and parameters, with the algorithm pinned per provider; Telnyx: Ed25519 with a replay
//! window); anything else gets 403 and an audit row, and changes nothing. A replay is answered
//! 200, audited, and changes nothing either.
//!
//! The handlers parse, verify and hand over: what a text means is `salve_core::inbound`, where
//! it goes and what it changes is the store's.

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{OriginalUri, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use salve_channels::{
    DeliveryStatus, InboundMessage, MediaFetcher, Provider, StatusUpdate, WebhookEvent,
    WebhookRequest,
};
use salve_core::audit::{Action, Actor, AuditEvent, ChainScope, Outcome};
use salve_core::consent::Medium as ConsentMedium;
use salve_core::inbound::{self, ProviderFacts};
use salve_core::keywords::{InboundContext, Intent};
use salve_core::system_messages::{Extra, SystemMessageKind, render};
use salve_core::vendors::ProviderKind;
use salve_core::{ProviderId, Sensitive};
use salve_store::{
    AwaitingReminder, DeliveryReport, InboundFacts, InboundReaction, InboundSms, MessageStatus,
    NewAttachment, ProviderRecord, ReminderAnswer,
};

use crate::AppState;
use crate::context::ClientInfo;
use crate::error::ApiError;

fn not_found() -> ApiError {
    ApiError::not_found("provider")
}

/// Twilio wants TwiML back; an empty `<Response/>` sends nothing more.
fn twiml_ok() -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/xml")],
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response></Response>",
    )
        .into_response()
}

fn answer(kind: ProviderKind) -> Response {
    match kind {
        ProviderKind::Twilio => twiml_ok(),
        _ => StatusCode::OK.into_response(),
    }
}

fn message_status(status: DeliveryStatus) -> Option<MessageStatus> {
    Some(match status {
        DeliveryStatus::Accepted | DeliveryStatus::Queued => MessageStatus::Queued,
        DeliveryStatus::Sending => MessageStatus::Sending,
        DeliveryStatus::Sent => MessageStatus::Sent,
        DeliveryStatus::Delivered => MessageStatus::Delivered,
        DeliveryStatus::Read => MessageStatus::Read,
        DeliveryStatus::Undelivered | DeliveryStatus::Failed => MessageStatus::Failed,
        _ => return None,
    })
}

/// `POST /webhooks/twilio/{id}/inbound` (a patient's text) and `…/status` (a delivery
/// report): the signed parameters say which.
pub async fn twilio(
    state: State<AppState>,
    client: Extension<ClientInfo>,
    id: Path<String>,
    uri: OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    receive(state, client, id, uri, headers, body, ProviderKind::Twilio).await
}

/// `POST /webhooks/telnyx/{id}`: texts and delivery reports.
pub async fn telnyx(
    state: State<AppState>,
    client: Extension<ClientInfo>,
    id: Path<String>,
    uri: OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    receive(state, client, id, uri, headers, body, ProviderKind::Telnyx).await
}

async fn receive(
    State(state): State<AppState>,
    Extension(client): Extension<ClientInfo>,
    Path(id): Path<String>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
    kind: ProviderKind,
) -> Result<Response, ApiError> {
    let id: ProviderId = crate::api::path_id(&id, "provider")?;
    let record = state
        .store
        .provider_record(id)
        .await?
        .filter(|r| r.kind == kind)
        .ok_or_else(not_found)?;
    let provider = state
        .providers
        .build(&state, &record)
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let ctx = client.audit_context();
    // The URL the provider signed: the one it was given, so the public URL, never the Host.
    let public = state
        .config
        .public_url
        .as_deref()
        .ok_or_else(|| {
            ApiError::unavailable("webhooks need the server's public URL (--public-url)")
        })?
        .trim_end_matches('/');
    let signed_url = format!(
        "{public}{}",
        uri.path_and_query().map_or(uri.path(), |p| p.as_str())
    );
    let request = WebhookRequest {
        public_url: &signed_url,
        headers: &headers,
        body: &body,
    };
    if let Err(e) = provider.verify_webhook(&request, state.clock.now()) {
        tracing::warn!(provider = %id, reason = %e, "webhook refused");
        state
            .store
            .record_webhook_rejected(record.practice, id, signature_reason(&e), &ctx)
            .await?;
        return Err(ApiError::forbidden(
            "the webhook signature is missing or not valid",
        ));
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let event = provider
        .parse_webhook(&body, content_type)
        .map_err(|e| ApiError::bad_request(format!("unreadable webhook: {e}")))?;
    match event {
        WebhookEvent::Inbound(message) => {
            inbound_text(&state, &record, provider.as_ref(), message, &ctx).await?;
        }
        WebhookEvent::Status(update) => delivery(&state, &record, update, &ctx).await?,
        WebhookEvent::Ignored => {}
    }
    Ok(answer(kind))
}

fn signature_reason(e: &salve_channels::SignatureError) -> &'static str {
    use salve_channels::SignatureError::*;
    match e {
        Missing => "signature_missing",
        Malformed => "signature_malformed",
        WrongAlgorithm => "signature_downgrade",
        Stale => "signature_stale",
        Mismatch => "signature_mismatch",
    }
}

/// The after-hours reply answers only under SMS consent (salve-core routing withholds it
/// otherwise); an urgent text gets the emergency guidance whatever the consent.
fn texted_under_sms_consent(facts: &InboundFacts<'_>) -> bool {
    matches!(facts.patients, [(_, consent)] if consent.any_granted_on(ConsentMedium::Sms))
}

/// The patient's answer to the reminder awaiting one, if the text is one (an opt-out never is).
fn reminder_answer(
    reaction: &inbound::Reaction,
    awaiting: Option<&AwaitingReminder>,
    facts: &InboundFacts<'_>,
    render_reply: &dyn Fn(SystemMessageKind) -> Option<Sensitive<String>>,
) -> Option<ReminderAnswer> {
    let awaiting = awaiting?;
    let intent = reaction.classification.reply?;
    if reaction.classification.intent != Intent::Other {
        return None;
    }
    let effect = salve_core::reminders::answer_effect(intent);
    // The acknowledgement answers the patient's own text, on the consent they texted under.
    let may_reply = facts
        .patients
        .iter()
        .any(|(p, c)| *p == awaiting.patient && c.any_granted_on(ConsentMedium::Sms));
    Some(ReminderAnswer {
        reminder: awaiting.clone(),
        answer: intent.as_str(),
        status: effect.status,
        staff_note: effect.staff_note.map(str::to_owned),
        reply: effect
            .acknowledgement
            .filter(|_| may_reply)
            .and_then(render_reply),
    })
}

pub(crate) async fn inbound_text(
    state: &AppState,
    record: &ProviderRecord,
    provider: &dyn Provider,
    message: InboundMessage,
    ctx: &salve_core::audit::RequestContext,
) -> Result<(), ApiError> {
    let capabilities = provider.capabilities();
    // One number belongs to one practice: a text to a number this provider does not hold here
    // is not ours to file.
    if !record.numbers.is_empty() && !record.numbers.contains(&message.to) {
        return Err(ApiError::not_found("number"));
    }
    let facts = ProviderFacts {
        handles_opt_out_keywords: capabilities.handles_opt_out_keywords,
        opt_out_type: message.opt_out_type.clone(),
    };
    // A reminder awaiting an answer decides what a bare C, X, R or YES means.
    let senders = state
        .store
        .patients_for_sender(record.practice, &message.from)
        .await?;
    let awaiting = state
        .store
        .reminder_awaiting_answer(record.practice, &senders)
        .await?;
    let context = InboundContext {
        reminder_awaiting_answer: awaiting.is_some(),
    };
    let reaction = inbound::react(message.body.expose(), &context, &facts);
    let settings = state.store.messaging_settings(record.practice).await?;
    let fields = settings.practice_fields();
    let program_text = state
        .store
        .consent_texts(record.practice)
        .await?
        .pop()
        .map(|t| salve_core::consent::ConsentTextRef {
            version: t.version,
            sha256_hex: t.sha256_hex,
        });
    let render_reply = |kind: SystemMessageKind| {
        render(kind, reaction.language, &fields, Extra::None)
            .ok()
            .map(Sensitive::new)
    };
    // Outside office hours the reply names them as configured (the practice's own words when
    // none are); whether this conversation already had one is decided in the transaction.
    let office_hours = state.store.office_hours(record.practice).await?;
    let closed = office_hours
        .as_ref()
        .is_some_and(|h| !h.is_open(state.clock.now()));
    let render_after_hours = || {
        let mut fields = fields.clone();
        if let Some(hours) = &office_hours {
            fields.hours_text = hours.hours_text(reaction.language);
        }
        render(
            SystemMessageKind::AfterHoursReply,
            reaction.language,
            &fields,
            Extra::None,
        )
        .ok()
        .map(Sensitive::new)
    };
    let provider_name = record.kind.as_str();
    let (attachments, fetched) = fetch_media(state, provider, &message.media).await;
    let sms = InboundSms {
        provider: record.id,
        practice: record.practice,
        provider_message_id: message.provider_message_id.clone(),
        from: message.from.clone(),
        body: message.body.clone(),
        attachments,
    };
    let kind = salve_core::outgoing::inbound_kind(message.body.expose());
    state
        .store
        .receive_sms(&sms, ctx, |facts| {
            let consent: Vec<_> = facts
                .patients
                .iter()
                .map(|(patient, consent)| {
                    (
                        *patient,
                        inbound::consent_events(&reaction, consent, program_text.as_ref()),
                    )
                })
                .collect();
            let recorded: usize = consent.iter().map(|(_, e)| e.len()).sum();
            let answer = reminder_answer(&reaction, awaiting.as_ref(), facts, &render_reply);
            let reply = match reaction.reply {
                Some(SystemMessageKind::OptInConfirmation)
                    if !inbound::confirm_opt_in(recorded) =>
                {
                    None
                }
                Some(kind) => render_reply(kind),
                None => None,
            };
            InboundReaction {
                intent: reaction.classification.intent.as_str().to_owned(),
                consent,
                reply,
                provider_replied: reaction.provider_replied.map(|kind| {
                    format!(
                        "{provider_name} answered with its own {} (not sent again by Salve)",
                        kind.as_str().replace('_', " ")
                    )
                }),
                review: reaction.classification.review.then(|| {
                    reaction
                        .classification
                        .reasons
                        .iter()
                        .map(|r| r.as_str().to_owned())
                        .collect()
                }),
                kind: Some(kind),
                urgent: reaction.urgent.urgent,
                // Checked before anything else, whatever the consent state.
                emergency_reply: reaction.emergency_reply().and_then(&render_reply),
                reminder_answer: answer.clone(),
                after_hours_reply: reaction
                    .wants_after_hours_reply(
                        closed,
                        answer.is_some(),
                        texted_under_sms_consent(facts),
                    )
                    .then(render_after_hours)
                    .flatten(),
            }
        })
        .await?;
    // Sealed here now (or the text was a replay): the provider's copy goes, and that is
    // audited either way.
    for media in fetched {
        let outcome = match provider.delete_media(&media).await {
            Ok(
                salve_channels::MediaDeletion::Deleted | salve_channels::MediaDeletion::NotFound,
            ) => Outcome::Success,
            Ok(salve_channels::MediaDeletion::Unsupported) => continue,
            Err(e) => {
                tracing::warn!(provider = %record.id, error = e.kind(), code = e.code(), "deleting inbound media failed");
                Outcome::Failure
            }
        };
        state
            .store
            .record_audit(AuditEvent {
                scope: ChainScope::Practice(record.practice),
                actor: Actor::System,
                action: Action::MediaDelete,
                targets: vec![record.id.to_string(), message.provider_message_id.clone()],
                outcome,
                context: ctx.clone(),
            })
            .await?;
    }
    Ok(())
}

/// At most this many media items are taken from one text (Twilio's own limit).
const MAX_MEDIA: usize = 10;

/// Fetches a text's media from the provider's allow-listed hosts and sanitizes it as any
/// attachment is (images re-encoded without metadata, PDFs checked). Media that cannot be
/// fetched or is refused is left out and logged by kind; returns what was kept and the
/// references fetched (to delete at the provider).
async fn fetch_media(
    state: &AppState,
    provider: &dyn Provider,
    media: &[salve_channels::MediaRef],
) -> (Vec<NewAttachment>, Vec<salve_channels::MediaRef>) {
    let mut kept = Vec::new();
    let mut fetched = Vec::new();
    if media.is_empty() {
        return (kept, fetched);
    }
    let Some(access) = provider.media_access() else {
        return (kept, fetched);
    };
    let mut policy = access.policy;
    policy.allow_loopback_for_tests = state.media_from_loopback();
    let fetcher = MediaFetcher::new(policy, state.media_resolver.clone());
    for item in media.iter().take(MAX_MEDIA) {
        let got = match fetcher.fetch(&item.url, access.credentials.clone()).await {
            Ok(got) => got,
            Err(e) => {
                tracing::warn!(error = %e, "inbound media refused");
                continue;
            }
        };
        fetched.push(item.clone());
        let clean =
            tokio::task::spawn_blocking(move || crate::attachments::sanitize(&got.bytes, None))
                .await;
        match clean {
            Ok(Ok(clean)) => kept.push(NewAttachment {
                media_type: clean.media_type.media_type().to_owned(),
                file_name: clean.file_name,
                bytes: clean.bytes,
            }),
            Ok(Err(e)) => tracing::warn!(
                error = e.code(),
                "inbound media failed the attachment checks"
            ),
            Err(_) => tracing::error!("sanitizing inbound media panicked"),
        }
    }
    (kept, fetched)
}

pub(crate) async fn delivery(
    state: &AppState,
    record: &ProviderRecord,
    update: StatusUpdate,
    ctx: &salve_core::audit::RequestContext,
) -> Result<(), ApiError> {
    let Some(status) = message_status(update.status) else {
        return Ok(());
    };
    state
        .store
        .apply_delivery_report(
            &DeliveryReport {
                provider: record.id,
                practice: record.practice,
                provider_message_id: update.provider_message_id,
                status,
                error_code: update.error_code,
            },
            ctx,
        )
        .await?;
    Ok(())
}

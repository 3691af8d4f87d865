//! The one keyword table, and the classifier for what a patient texted in: opt-out, help,
//! opt-in, or anything else. Every inbound text is judged here and nowhere else.
//!
//! Rules, in order:
//! 1. A whole message that is an opt-out keyword (STOP, STOPALL, UNSUBSCRIBE, CANCEL, END, QUIT,
//!    REVOKE, OPTOUT, OPT OUT; Spanish PARAR, ALTO, BAJA) is an opt-out in every state. Case,
//!    accents, punctuation, emoji, repeated letters ("stopp") and filler ("pls", "por favor",
//!    "now", "!!!") are ignored. CANCEL right after a reminder stays an opt-out (CTIA); the
//!    reminders flow must offer its own confirm/cancel words.
//! 2. A whole message that is HELP, INFO or AYUDA is help; START, UNSTOP or YES is an opt-in,
//!    except YES while a reminder awaits an answer: then it is `Other` with reply `Confirm`
//!    (rule 4). Spanish "SI" follows YES, but the spec calls it debatable: a bare "sí" often
//!    answers a question in conversation, Twilio does not treat it as a keyword, and
//!    re-subscribing someone by mistake is a consent violation. So it is an opt-in with
//!    `review: true`, and so is every free-text request to resume texts ("please start texting
//!    me again"): an opt-in with `review` must wait for staff to confirm before texts resume.
//! 3. Inside a longer text a keyword is judged with its neighbours: "stop texting me" is an
//!    opt-out, "stop by the office?" and "cancel my appointment tuesday" are not. Free-text
//!    revocation ("take me off your list", "no me manden mas textos") is an opt-out: the FCC
//!    accepts any reasonable means. A text that could be a revocation but is not clear
//!    ("wrong number", "stop texting me after 8pm", "I'm done with this") gets `review: true`
//!    for staff. Scope decides: "opt out of the flu shot" and "no me manden la factura" are
//!    about something else, "unsubscribe me from the newsletter" and "quit calling me" about
//!    another channel (review, not an SMS opt-out), "Stop! I meant Tuesday" is an interjection
//!    (review). Texting and phonetic spellings are read first ("stahp", "kiero").
//!
//! 4. Replies to a reminder (`Classification::reply`, with intent `Other`). While a reminder
//!    awaits an answer, a whole message C, Y, 1, CONFIRM(ED), YES, SI/SÍ or OK confirms, X or 2
//!    cancels this visit, R or 3 asks to reschedule; CANCELAR cancels this visit and goes to
//!    review (rule 1's Spanish exception). Without a pending reminder these bare letters and
//!    digits mean nothing (YES and SI keep their opt-in meaning). OK confirms: it is the usual
//!    answer to "reply C to confirm", and a wrong confirmation costs less than a wrong cancel.
//!    Free text is read in every state, for the server to match with an appointment:
//!    "can't make it tuesday", "necesito cambiar mi cita" (reschedule), "running 10 min late",
//!    "llego tarde" (late), "please cancel my appointment" (cancel this visit), "see you then",
//!    "ahí estaré" (confirm); reschedule wins over cancel, cancel over late, late over confirm.
//!    Opt-outs, HELP and opt-ins never carry a reply: "cancel my appointment and stop texting
//!    me" is an opt-out, and consent is what the server must act on.
//!
//! Reasons name rules and our own keyword table, never the patient's words: they are logged and
//! shown in the review queue, and the text is PHI.

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Serialize};
use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::decompose_canonical;

pub mod eval;

/// What an inbound text asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Intent {
    /// Stop texting me (revokes every SMS purpose).
    OptOut,
    /// Send the help reply.
    Help,
    /// Text me again (restores what STOP revoked, see `consent::sms_keyword_opt_in`).
    OptIn,
    /// A message for staff (or, later, for the reminders flow).
    Other,
}

impl Intent {
    pub const ALL: [Intent; 4] = [Intent::OptOut, Intent::Help, Intent::OptIn, Intent::Other];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::OptOut => "optout",
            Self::Help => "help",
            Self::OptIn => "optin",
            Self::Other => "other",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|i| i.as_str() == raw)
    }
}

impl fmt::Display for Intent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a text answers to a reminder (or asks about an appointment).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplyIntent {
    /// The patient will come.
    Confirm,
    /// Cancel this visit (not the texts).
    CancelVisit,
    /// Move the visit: staff get a task.
    Reschedule,
    /// Coming, but late.
    Late,
}

impl ReplyIntent {
    pub const ALL: [ReplyIntent; 4] = [
        ReplyIntent::Confirm,
        ReplyIntent::CancelVisit,
        ReplyIntent::Reschedule,
        ReplyIntent::Late,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Confirm => "confirm",
            Self::CancelVisit => "cancel_visit",
            Self::Reschedule => "reschedule",
            Self::Late => "late",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|i| i.as_str() == raw)
    }
}

impl fmt::Display for ReplyIntent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the classifier knows besides the text.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboundContext {
    /// A reminder sent to this number asks for an answer (confirm/cancel) and has none yet.
    /// Then a bare YES belongs to the reminders flow, not to opt-in.
    #[serde(default)]
    pub reminder_awaiting_answer: bool,
}

/// Why the classifier decided as it did: a rule name, built only from `'static` strings (rule
/// names and our keyword table), so it can never carry the patient's words.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reason(Cow<'static, str>);

impl Reason {
    pub(crate) const fn rule(name: &'static str) -> Self {
        Self(Cow::Borrowed(name))
    }

    pub(crate) fn keyword(prefix: &'static str, keyword: &'static str) -> Self {
        Self(Cow::Owned(format!("{prefix}{keyword}")))
    }

    /// A reason built from our own numbers (a model score), never from the patient's words.
    pub(crate) fn computed(text: String) -> Self {
        Self(Cow::Owned(text))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for Reason {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// The classifier's answer for one inbound text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Classification {
    pub intent: Intent,
    /// Staff should look: the text may be a revocation but is not clear.
    pub review: bool,
    /// What the text answers to a reminder; only with intent `Other`.
    pub reply: Option<ReplyIntent>,
    pub reasons: Vec<Reason>,
}

// ---------------------------------------------------------------------------------------------
// The keyword table.

/// Whole-message opt-out keywords (issue 6 item 7), written as folded words.
const OPT_OUT_KEYWORDS: &[(&str, &str)] = &[
    ("stop", "STOP"),
    ("stopall", "STOPALL"),
    ("stop all", "STOPALL"),
    ("unsubscribe", "UNSUBSCRIBE"),
    ("cancel", "CANCEL"),
    ("end", "END"),
    ("quit", "QUIT"),
    ("revoke", "REVOKE"),
    ("optout", "OPTOUT"),
    ("opt out", "OPT OUT"),
    ("parar", "PARAR"),
    ("alto", "ALTO"),
    ("baja", "BAJA"),
];

/// Whole messages outside the table that say nothing but "stop texting me".
const OPT_OUT_WHOLE_PHRASES: &[&str] = &[
    "unsub",
    "remove",
    "remove me",
    "stop it",
    "stop texting",
    "stop messaging",
    "stop texts",
    "stop messages",
    "stop sms",
    "no more",
    "no more texts",
    "no more messages",
    "leave me alone",
    "cancelar",
    "cancelar suscripcion",
    "detener",
    "detengan",
    "detenganse",
    "quitenme",
    "quitame",
    "quiteme",
    "sacame",
    "saquenme",
    "borrenme",
    "eliminenme",
    "remove from list",
    "remove from your list",
    "desuscribir",
    "desuscribirme",
    "darme de baja",
    "dar de baja",
    "no mas",
    "no mas mensajes",
    "no mas textos",
    "arret",
    "arrete",
];

/// Whole messages that may be a revocation but are not clear.
const REVIEW_WHOLE_PHRASES: &[&str] = &[
    "enough",
    "go away",
    "get lost",
    "leave me be",
    "cut it out",
    "quit it",
    "i want out",
    "want out",
    "wrong",
    "fin",
    "ya no",
    "no molesten",
    "no molestes",
    "dejen de molestar",
    "dejen de molestarme",
    "parenle",
    "parale",
    "parele",
    "im done",
    "i am done",
    "im so done",
    "ya estuvo",
    "basta",
    "ya basta",
    "para",
    "paren",
    "no thanks",
    "no thank you",
    "no gracias",
    "not interested",
    "no me interesa",
    "spam",
    "wrong number",
    "wrong person",
    "numero equivocado",
    "unsubscribed",
    "opted out",
];

const HELP_KEYWORDS: &[(&str, &str)] = &[
    ("help", "HELP"),
    ("info", "INFO"),
    ("ayuda", "AYUDA"),
    ("help me", "HELP"),
    ("more info", "INFO"),
    ("informacion", "INFO"),
    ("mas info", "INFO"),
    ("mas informacion", "INFO"),
    ("ayudame", "AYUDA"),
];

/// Whole-message opt-in keywords. No "ALTA" (one letter from ALTO) and no "SI" (see the module
/// documentation): a wrong opt-in texts someone who asked us to stop.
const OPT_IN_KEYWORDS: &[(&str, &str)] = &[
    ("start", "START"),
    ("unstop", "UNSTOP"),
    ("yes", "YES"),
    ("subscribe", "SUBSCRIBE"),
    ("resubscribe", "SUBSCRIBE"),
    ("opt in", "OPT IN"),
    ("optin", "OPT IN"),
    ("start again", "START"),
    ("comenzar", "COMENZAR"),
    ("empezar", "COMENZAR"),
    ("iniciar", "COMENZAR"),
    ("reanudar", "COMENZAR"),
];

/// Words that carry no meaning around a keyword ("STOP pls", "BAJA por favor", "ok stop now").
const FILLER: &[&str] = &[
    "please",
    "pls",
    "plz",
    "plse",
    "pleas",
    "plis",
    "now",
    "thanks",
    "thank",
    "thx",
    "tnx",
    "ty",
    "asap",
    "immediately",
    "already",
    "ok",
    "okay",
    "k",
    "hi",
    "hello",
    "hey",
    "just",
    "sorry",
    "um",
    "uh",
    "right",
    "por",
    "favor",
    "porfa",
    "porfavor",
    "xfa",
    "pf",
    "gracias",
    "ya",
    "ahora",
    "mismo",
    "hola",
    "oh",
    "sir",
    "maam",
    "mam",
    "senor",
    "senora",
    "lol",
    "omg",
    "u",
    "you",
    "yall",
    "guys",
];

/// Before an opt-out keyword only: "yes stop", "no stop".
const OPT_OUT_LEAD_INS: &[&str] = &["yes", "no", "si", "yeah", "yep", "nope"];

// Twilio's default keyword handling (Messaging Services without Advanced Opt-Out, and long
// codes): https://www.twilio.com/docs/messaging/tutorials/advanced-opt-out ("By default, Twilio
// handles ... STOP, UNSUBSCRIBE, END, QUIT, STOPALL, REVOKE, OPTOUT, and CANCEL") and
// https://help.twilio.com/articles/223134027 (opt-in START, YES, UNSTOP; help HELP, INFO; "only
// single-word messages will trigger the block": "STOP PLEASE" does not). Twilio ignores case and
// surrounding whitespace; we assume nothing else (not punctuation): if we wrongly believed Twilio
// confirmed, the patient would get no confirmation at all, while the other mistake only sends
// two.
const TWILIO_OPT_OUT: &[&str] = &[
    "STOP",
    "STOPALL",
    "UNSUBSCRIBE",
    "CANCEL",
    "END",
    "QUIT",
    "REVOKE",
    "OPTOUT",
];
const TWILIO_HELP: &[&str] = &["HELP", "INFO"];
/// Twilio re-subscribes on YES whatever Salve's reminders expect: the reminders flow must know
/// that a YES to a reminder also lifts a Twilio-side block.
const TWILIO_OPT_IN: &[&str] = &["START", "YES", "UNSTOP"];

fn twilio_matches(text: &str, table: &[&str]) -> bool {
    let body = text.trim();
    table.iter().any(|k| body.eq_ignore_ascii_case(k))
}

/// Twilio confirms this opt-out by itself (its default handling): Salve must not confirm again.
pub fn twilio_default_opt_out_keyword(text: &str) -> bool {
    twilio_matches(text, TWILIO_OPT_OUT)
}

/// Twilio answers this help keyword by itself.
pub fn twilio_default_help_keyword(text: &str) -> bool {
    twilio_matches(text, TWILIO_HELP)
}

/// Twilio re-subscribes and answers this opt-in keyword by itself.
pub fn twilio_default_opt_in_keyword(text: &str) -> bool {
    twilio_matches(text, TWILIO_OPT_IN)
}

// ---------------------------------------------------------------------------------------------
// Vocabulary for longer texts (folded words).

/// Things we send. "reminder" is not here: stopping one reminder is not stopping the texts.
const MSG_NOUNS: &[&str] = &[
    "text",
    "texts",
    "txt",
    "txts",
    "texting",
    "txting",
    "textin",
    "message",
    "messages",
    "msg",
    "msgs",
    "messaging",
    "sms",
    "smss",
    "notification",
    "notifications",
    "notifs",
    "alert",
    "alerts",
    "reminders",
    "mensaje",
    "mensajes",
    "mensajitos",
    "texto",
    "textos",
    "msj",
    "msjs",
    "mjs",
    "recordatorios",
    "notificaciones",
    "alertas",
    "subscription",
    "suscripcion",
];

/// "-ing" forms and verbs of sending us to the patient.
const SEND_VERBS: &[&str] = &[
    "texting",
    "txting",
    "textin",
    "messaging",
    "msging",
    "sending",
    "contacting",
    "spamming",
    "reminding",
    "notifying",
    "pinging",
    "alerting",
    "texted",
    "messaged",
    "contacted",
];

/// Words allowed between a stop verb and what it stops ("stop sending me all these texts").
const GAP: &[&str] = &[
    "the",
    "these",
    "those",
    "this",
    "that",
    "all",
    "any",
    "your",
    "ur",
    "yalls",
    "with",
    "sending",
    "send",
    "me",
    "us",
    "of",
    "them",
    "my",
    "automated",
    "auto",
    "annoying",
    "stupid",
    "freaking",
    "fricking",
    "fucking",
    "f",
    "ing",
    "damn",
    "dang",
    "marketing",
    "appointment",
    "appt",
    "text",
    "getting",
    "receiving",
    "get",
    "receive",
    "and",
    "or",
    "calling",
    "emailing",
    "so",
    "many",
    "more",
    "future",
    "further",
    "every",
    "daily",
    "constant",
    "a",
    "an",
    "to",
    "from",
    "you",
    "u",
    "please",
    "pls",
    "plz",
    "just",
    "yall",
    "guys",
    "number",
    "phone",
    "los",
    "las",
    "sus",
    "tus",
    "esos",
    "estos",
    "esas",
    "estas",
    "de",
    "recibir",
    "mas",
    "todos",
    "todas",
];

const NEGATIONS: &[&str] = &[
    "dont", "never", "not", "wont", "didnt", "doesnt", "cant", "cannot", "wouldnt", "shouldnt",
    "couldnt", "havent", "hasnt", "isnt", "arent",
];

/// Before "stop": the text asks about the past or a fact, not for something ("why did you stop
/// texting me?").
const NOT_A_REQUEST: &[&str] = &["did", "why", "when", "has", "have", "had", "was", "were"];

const PLACE_WORDS: &[&str] = &[
    "by", "in", "at", "over", "into", "through", "off", "on", "past", "there", "here",
];

/// Care, medication and billing: what a patient may stop that is not our texts.
const CARE_WORDS: &[&str] = &[
    "thinner",
    "blood",
    "brace",
    "cast",
    "splint",
    "sling",
    "crutches",
    "wearing",
    "diet",
    "supplement",
    "supplements",
    "vitamin",
    "vitamins",
    "drops",
    "inhaler",
    "cream",
    "injections",
    "shots",
    "pharmacy",
    "pharmacist",
    "prescribed",
    "mg",
    "tablet",
    "tablets",
    "refill",
    "refills",
    "order",
    "payment",
    "payments",
    "autopay",
    "charge",
    "charges",
    "charging",
    "card",
    "bill",
    "billing",
    "claim",
    "referral",
    "farmacia",
    "pago",
    "medication",
    "medications",
    "medicine",
    "medicines",
    "meds",
    "med",
    "pill",
    "pills",
    "taking",
    "dose",
    "doses",
    "dosage",
    "bleeding",
    "treatment",
    "therapy",
    "insulin",
    "drinking",
    "smoking",
    "eating",
    "antibiotic",
    "antibiotics",
    "prescription",
    "birth",
    "control",
    "pain",
    "cough",
    "coughing",
    "vomiting",
    "diarrhea",
    "working",
    "exercise",
    "exercising",
    "running",
    "breastfeeding",
    "nursing",
    "medicamento",
    "medicamentos",
    "medicina",
    "pastilla",
    "pastillas",
    "tratamiento",
    "sangrado",
    "dolor",
    "tomar",
    "tomando",
];

/// Words that place "cancel"/"cancelar" in scheduling, not messaging.
const APPOINTMENT_WORDS: &[&str] = &[
    "appointment",
    "appointments",
    "appt",
    "appts",
    "visit",
    "visits",
    "consult",
    "consultation",
    "surgery",
    "procedure",
    "checkup",
    "exam",
    "booking",
    "reservation",
    "session",
    "cleaning",
    "today",
    "tomorrow",
    "tmrw",
    "tmr",
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
    "mon",
    "tue",
    "tues",
    "wed",
    "thu",
    "thurs",
    "fri",
    "sat",
    "sun",
    "morning",
    "afternoon",
    "week",
    "come",
    "coming",
    "make",
    "reschedule",
    "sick",
    "cita",
    "citas",
    "consulta",
    "cirugia",
    "hoy",
    "manana",
    "lunes",
    "martes",
    "miercoles",
    "jueves",
    "viernes",
    "sabado",
    "domingo",
    "ir",
    "puedo",
    "voy",
];

/// Words restricting a revocation to some times or kinds of message ("after 8pm", "only").
const QUALIFIERS: &[&str] = &[
    "instead",
    "before",
    "after",
    "until",
    "till",
    "til",
    "weekend",
    "weekends",
    "night",
    "early",
    "late",
    "except",
    "only",
    "antes",
    "despues",
    "hasta",
    "solo",
    "solamente",
    "excepto",
    "noche",
    "temprano",
    "tarde",
];

/// Destinations of "take me off ..." that are not our texting list.
const NOT_THE_TEXTING_LIST: &[&str] = &[
    "waitlist",
    "wait",
    "waiting",
    "schedule",
    "calendar",
    "appointment",
    "appt",
    "surgery",
    "espera",
    "cita",
];

const TEXTING_LIST: &[&str] = &[
    "list",
    "lists",
    "texts",
    "text",
    "texting",
    "messages",
    "messaging",
    "system",
    "database",
    "program",
    "contacts",
    "sms",
    "notifications",
    "reminders",
    "lista",
    "mensajes",
    "textos",
    "sistema",
];

/// Channels other than our texts: a request about them is not an SMS opt-out ("unsubscribe me
/// from the newsletter", "quit calling me"), but staff should act on it.
const OTHER_CHANNELS: &[&str] = &[
    "email",
    "emails",
    "emailing",
    "mail",
    "mailing",
    "mailings",
    "newsletter",
    "newsletters",
    "portal",
    "call",
    "calls",
    "calling",
    "voicemail",
    "voicemails",
    "survey",
    "surveys",
    "correo",
    "correos",
    "llamadas",
    "llamada",
    "boletin",
    "encuesta",
    "encuestas",
];

/// Things a patient opts out of, or asks not to be sent, that are neither texts nor a channel:
/// care, records, papers ("opt out of the flu shot", "no me manden la factura").
const UNRELATED_OBJECTS: &[&str] = &[
    "flu",
    "covid",
    "booster",
    "test",
    "testing",
    "screening",
    "labs",
    "shot",
    "vaccine",
    "vaccines",
    "vaccination",
    "sedation",
    "anesthesia",
    "surgery",
    "procedure",
    "study",
    "trial",
    "research",
    "sharing",
    "share",
    "records",
    "record",
    "data",
    "insurance",
    "coverage",
    "access",
    "factura",
    "facturas",
    "cuenta",
    "cuentas",
    "recibo",
    "recibos",
    "carta",
    "cartas",
    "papel",
    "papeles",
    "cobro",
    "cobros",
    "estado",
    "resultados",
    "receta",
    "vacuna",
    "seguro",
];

/// Consent words after "withdraw" / "retiro".
const CONSENT_WORDS: &[&str] = &[
    "consent",
    "permission",
    "authorization",
    "consentimiento",
    "autorizacion",
    "permiso",
];

/// What a request to stop, unsubscribe or not be sent something is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// Our texts, our list, or nothing named ("opt out of this", "unsubscribe me").
    Ours,
    OtherChannel,
    Unrelated,
    Unknown,
}

/// The scope of the words after "opt out of", "unsubscribe from", "no me manden": the first
/// noun phrase (articles and fillers skipped, ended by the next of them or a preposition).
/// Messages anywhere in it make it ours, then a channel ("the vaccine reminder calls", "your
/// mailing list"); otherwise its last word decides ("the flu shot", "la factura por correo").
fn object_scope(rest: &[&str]) -> Scope {
    let skip = |x: &str| {
        in_set(x, GAP)
            || in_set(x, FILLER)
            || in_set(
                x,
                &[
                    "it", "again", "anymore", "la", "el", "lo", "me", "mi", "ningun", "for", "in",
                    "on", "at", "by", "via", "con", "para", "en", "but", "pero", "keep", "except",
                    "excepto", "solo",
                ],
            )
    };
    let phrase: Vec<&str> = rest
        .iter()
        .copied()
        .skip_while(|x| skip(x) && !in_set(x, &["but", "pero", "keep", "except", "solo"]))
        .take_while(|x| !skip(x))
        .take(4)
        .collect();
    let Some(head) = phrase.last() else {
        return Scope::Ours;
    };
    if phrase
        .iter()
        .any(|x| in_set(x, MSG_NOUNS) || in_set(x, SEND_VERBS))
    {
        Scope::Ours
    } else if phrase.iter().any(|x| in_set(x, OTHER_CHANNELS)) {
        Scope::OtherChannel
    } else if in_set(head, UNRELATED_OBJECTS) || in_set(head, CARE_WORDS) {
        Scope::Unrelated
    } else if in_set(head, TEXTING_LIST)
        || in_set(head, &["everything", "todo", "nada", "service", "servicio"])
    {
        Scope::Ours
    } else {
        Scope::Unknown
    }
}

/// "withdraw my consent (to receive texts)": an opt-out when about texts or about nothing named,
/// a review when about something else ("to share my records").
fn consent_scope(rest: &[&str], negated: bool, ev: &mut Evidence) {
    if negated {
        ev.notes
            .push(Reason::rule("negated: consent is not withdrawn"));
        return;
    }
    // "consent to share my records", "consentimiento para compartir": an infinitive other than
    // receiving or sending names something else.
    let mut rest = rest;
    if rest
        .first()
        .is_some_and(|x| in_set(x, &["to", "for", "para", "de", "a"]))
    {
        rest = &rest[1..];
        let verb = rest.first().copied().unwrap_or("");
        let ours = verb.is_empty()
            || in_set(verb, MSG_NOUNS)
            || in_set(verb, SEND_VERBS)
            || es_send_verb(verb)
            || verb.starts_with("recib")
            || in_set(
                verb,
                &[
                    "receive", "get", "text", "txt", "message", "contact", "send", "be", "sms",
                    "recieve", "los", "las", "sus", "the", "your", "any", "all", "these", "those",
                    "this", "my", "mis", "estos",
                ],
            );
        if !ours {
            ev.review
                .push(Reason::rule("review: consent withdrawn for something else"));
            return;
        }
    }
    let named = rest
        .iter()
        .take(8)
        .find(|x| {
            in_set(x, MSG_NOUNS)
                || in_set(x, SEND_VERBS)
                || es_send_verb(x)
                || in_set(x, OTHER_CHANNELS)
                || in_set(x, UNRELATED_OBJECTS)
        })
        .copied();
    match named {
        Some(x) if in_set(x, OTHER_CHANNELS) || in_set(x, UNRELATED_OBJECTS) => ev
            .review
            .push(Reason::rule("review: consent withdrawn for something else")),
        _ => ev
            .optout
            .push(Reason::rule("revocation phrase: withdraw consent")),
    }
}

// ---------------------------------------------------------------------------------------------
// Normalising.

/// The text as folded words in clauses (split at . , ! ? ; : and line breaks).
pub(crate) struct Folded {
    pub(crate) clauses: Vec<Vec<String>>,
    /// Any emoji or symbol that says "stop" by itself (🛑 ⛔ 🚫 ✋).
    stop_sign: bool,
}

impl Folded {
    pub(crate) fn new(text: &str) -> Self {
        let mut clauses = vec![Vec::new()];
        let mut word = String::new();
        let mut stop_sign = false;
        for c in text.nfkc() {
            if matches!(c, '\'' | '\u{2019}' | '\u{2018}' | '`' | '\u{00B4}') {
                // "don't" -> "dont"
                continue;
            }
            if c.is_alphanumeric() {
                for lower in c.to_lowercase() {
                    push_base(lower, &mut word);
                }
                continue;
            }
            end_word(&mut word, &mut clauses);
            if matches!(
                c,
                '.' | ','
                    | '!'
                    | '?'
                    | ';'
                    | ':'
                    | '\n'
                    | '\r'
                    | '¡'
                    | '¿'
                    | '\u{2014}'
                    | '\u{2013}'
            ) && clauses.last().is_some_and(|c| !c.is_empty())
            {
                clauses.push(Vec::new());
            }
            stop_sign |= matches!(c, '\u{1F6D1}' | '\u{26D4}' | '\u{1F6AB}' | '\u{270B}');
        }
        end_word(&mut word, &mut clauses);
        clauses.retain(|c| !c.is_empty());
        Self { clauses, stop_sign }
    }

    fn words(&self) -> impl Iterator<Item = &str> {
        self.clauses.iter().flatten().map(String::as_str)
    }
}

fn end_word(word: &mut String, clauses: &mut [Vec<String>]) {
    if !word.is_empty()
        && let Some(last) = clauses.last_mut()
    {
        let w = std::mem::take(word);
        last.push(respell(&w).map_or(w, Cow::into_owned));
    }
}

/// Texting and phonetic spellings read as the word they stand for, so every rule sees one form:
/// "stahp", "stawp", "stp" are STOP; Spanish "kiero", "ke", "nesesito" are "quiero", "que",
/// "necesito"; "mensage(s)" is "mensaje(s)".
fn respell(word: &str) -> Option<Cow<'static, str>> {
    // st + only a/o/u, h or w + p: "stahp", "stawp", "stohp", "stup", "stp" (not "step",
    // "stamp", "strip").
    if let Some(mid) = word.strip_prefix("st").and_then(|r| r.strip_suffix('p'))
        && mid
            .chars()
            .all(|c| matches!(c, 'a' | 'o' | 'u' | 'h' | 'w'))
        && mid != "o"
        && mid.len() <= 5
    {
        return Some(Cow::Borrowed("stop"));
    }
    let fixed = match word {
        "ke" => "que",
        "kero" | "qiero" | "qero" | "kiero" => "quiero",
        "nesesito" | "nesecito" | "nesito" => "necesito",
        "mensage" => "mensaje",
        "mensages" => "mensajes",
        _ => {
            // "kieren", "kisiera": a Spanish k for qu before e/i.
            for (from, to) in [("kier", "quier"), ("kisier", "quisier"), ("kit", "quit")] {
                if let Some(rest) = word.strip_prefix(from) {
                    return Some(Cow::Owned(format!("{to}{rest}")));
                }
            }
            return None;
        }
    };
    Some(Cow::Borrowed(fixed))
}

/// Push `c` without its accents (NFD, combining marks dropped).
fn push_base(c: char, out: &mut String) {
    if c.is_ascii() {
        out.push(c);
        return;
    }
    decompose_canonical(c, |d| {
        if !is_combining(d) {
            out.push(d);
        }
    });
}

fn is_combining(c: char) -> bool {
    matches!(c as u32, 0x0300..=0x036F | 0x1AB0..=0x1AFF | 0x1DC0..=0x1DFF | 0x20D0..=0x20FF | 0xFE20..=0xFE2F)
}

/// Runs of one letter become one letter: "stooop" and "stopp" meet "stop", "pleeease" meets
/// "please" ("pls" and "all" collapse too, so both sides are always collapsed).
pub(crate) fn collapse(word: &str) -> String {
    let mut out = String::with_capacity(word.len());
    let mut last = None;
    for c in word.chars() {
        if Some(c) != last {
            out.push(c);
        }
        last = Some(c);
    }
    out
}

fn in_set(word: &str, set: &[&str]) -> bool {
    set.contains(&word)
}

/// The message's words without filler, as one collapsed phrase: "STOP!!! pls 🙏" -> "stop".
/// `lead_ins` also drops "yes"/"no" before the rest.
fn core_phrase(words: &[&str], lead_ins: bool) -> String {
    let mut kept: Vec<String> = Vec::new();
    for w in words {
        let c = collapse(w);
        if FILLER.iter().any(|f| collapsed_eq(f, &c))
            || (lead_ins && kept.is_empty() && in_set(&c, OPT_OUT_LEAD_INS))
        {
            continue;
        }
        // "stop stop stop"
        if kept.last() == Some(&c) {
            continue;
        }
        kept.push(c);
    }
    kept.join(" ")
}

fn lookup(phrase: &str, table: &[(&str, &'static str)]) -> Option<&'static str> {
    table
        .iter()
        .find(|(k, _)| collapsed_eq(k, phrase))
        .map(|(_, name)| *name)
}

/// Word by word is the same as the whole phrase at once: a space ends every run.
fn collapse_phrase(p: &str) -> String {
    collapse(p)
}

/// `collapse(entry) == phrase`, without allocating (tables are compared on every text).
fn collapsed_eq(entry: &str, phrase: &str) -> bool {
    let mut last = None;
    entry
        .chars()
        .filter(|&c| {
            let keep = Some(c) != last;
            last = Some(c);
            keep
        })
        .eq(phrase.chars())
}

fn phrase_in(phrase: &str, table: &[&str]) -> bool {
    table.iter().any(|k| collapsed_eq(k, phrase))
}

// ---------------------------------------------------------------------------------------------
// Classifying.

/// What the rules found in a longer text.
#[derive(Default)]
struct Evidence {
    optout: Vec<Reason>,
    review: Vec<Reason>,
    optin: Vec<Reason>,
    /// Benign readings noted for staff ("stop by"), which decide nothing.
    notes: Vec<Reason>,
}

/// Classify one inbound text. Pure and deterministic; never panics.
pub fn classify(text: &str, ctx: &InboundContext) -> Classification {
    let folded = Folded::new(text);
    let mut c = classify_folded(&folded, ctx);
    if c.intent == Intent::Other && c.reply.is_none() {
        let words: Vec<&str> = folded.words().collect();
        // A bare C, 1 or CONFIRM with no reminder awaiting answers nothing.
        if reply_keyword(&words).is_none()
            && let Some((reply, rule)) = free_text_reply(&words)
        {
            c.reply = Some(reply);
            c.reasons.push(Reason::rule(rule));
        }
    }
    c
}

fn classify_folded(folded: &Folded, ctx: &InboundContext) -> Classification {
    let words: Vec<&str> = folded.words().collect();
    if words.is_empty() {
        if folded.stop_sign {
            return done(
                Intent::Other,
                true,
                vec![Reason::rule("review: a stop-sign emoji alone")],
            );
        }
        return done(Intent::Other, false, vec![Reason::rule("no words")]);
    }

    if let Some(c) = whole_message(&words, ctx) {
        return c;
    }
    // "S T O P": letters typed apart; "sto p", "un subscribe": a keyword split once (only an
    // exact keyword counts then, not a near one).
    let letters = words.len() >= 3 && words.iter().all(|w| w.chars().count() == 1);
    let split = words.len() == 2 && words.iter().any(|w| w.chars().count() <= 2);
    if letters || split {
        let joined = words.concat();
        if let Some(c) = whole_message(&[joined.as_str()], ctx)
            && (letters || !c.review)
        {
            return c;
        }
    }

    let mut ev = Evidence::default();
    for clause in &folded.clauses {
        let clause: Vec<&str> = clause.iter().map(String::as_str).collect();
        clause_rules(&clause, &words, ctx, &mut ev);
    }
    if folded.stop_sign && ev.optout.is_empty() {
        ev.review
            .push(Reason::rule("review: a stop-sign emoji with other words"));
    }

    if !ev.optout.is_empty() {
        let mut reasons = ev.optout;
        if words.iter().any(|w| in_set(w, QUALIFIERS)) {
            // "stop texting me after 8pm": a revocation of some texts only; staff decide.
            reasons.push(Reason::rule(
                "review: revocation limited by a time or a kind of message",
            ));
            reasons.extend(ev.review);
            return done(Intent::Other, true, reasons);
        }
        let review = !ev.optin.is_empty();
        if review {
            reasons.push(Reason::rule("review: also asks to be texted"));
        }
        return done(Intent::OptOut, review, reasons);
    }
    if !ev.review.is_empty() {
        let mut reasons = ev.review;
        reasons.extend(ev.notes);
        return done(Intent::Other, true, reasons);
    }
    if !ev.optin.is_empty() {
        // Consent restored by free text: staff confirm what the patient asked for.
        let mut reasons = ev.optin;
        reasons.push(Reason::rule("review: free-text request to resume texts"));
        return done(Intent::OptIn, true, reasons);
    }
    let mut reasons = ev.notes;
    if reasons.is_empty() {
        reasons.push(Reason::rule("no keyword or revocation phrase"));
    }
    done(Intent::Other, false, reasons)
}

fn done(intent: Intent, review: bool, mut reasons: Vec<Reason>) -> Classification {
    reasons.dedup();
    Classification {
        intent,
        review,
        reply: None,
        reasons,
    }
}

fn answer(reply: ReplyIntent, review: bool, reason: Reason) -> Classification {
    Classification {
        reply: Some(reply),
        ..done(Intent::Other, review, vec![reason])
    }
}

/// Whole-message answers to a reminder, as folded words (filler already dropped, so "OK" is
/// matched on the words as written).
const REPLY_KEYWORDS: &[(&str, ReplyIntent, &str)] = &[
    ("c", ReplyIntent::Confirm, "C"),
    ("y", ReplyIntent::Confirm, "Y"),
    ("1", ReplyIntent::Confirm, "1"),
    ("confirm", ReplyIntent::Confirm, "CONFIRM"),
    ("confirmed", ReplyIntent::Confirm, "CONFIRM"),
    ("confirmo", ReplyIntent::Confirm, "CONFIRM"),
    ("confirmar", ReplyIntent::Confirm, "CONFIRM"),
    ("confirmado", ReplyIntent::Confirm, "CONFIRM"),
    ("yes", ReplyIntent::Confirm, "YES"),
    ("yes confirm", ReplyIntent::Confirm, "YES"),
    ("yes confirmed", ReplyIntent::Confirm, "YES"),
    ("si", ReplyIntent::Confirm, "SI"),
    ("si confirmo", ReplyIntent::Confirm, "SI"),
    ("ok", ReplyIntent::Confirm, "OK"),
    ("okay", ReplyIntent::Confirm, "OK"),
    ("k", ReplyIntent::Confirm, "OK"),
    ("okey", ReplyIntent::Confirm, "OK"),
    ("x", ReplyIntent::CancelVisit, "X"),
    ("2", ReplyIntent::CancelVisit, "2"),
    ("r", ReplyIntent::Reschedule, "R"),
    ("3", ReplyIntent::Reschedule, "3"),
];

/// The reply keyword the whole message is, if any ("C", "1 thanks", "Sí!", "ok").
fn reply_keyword(words: &[&str]) -> Option<(ReplyIntent, &'static str)> {
    let phrase = core_phrase(words, false);
    let phrase = if phrase.is_empty() {
        collapse_phrase(&words.join(" "))
    } else {
        phrase
    };
    REPLY_KEYWORDS
        .iter()
        .find(|(k, ..)| collapsed_eq(k, &phrase))
        .map(|&(_, reply, name)| (reply, name))
}

/// Free-text answers, as folded phrases matched on word boundaries; the first table that
/// matches wins (reschedule, cancel this visit, late, confirm).
const RESCHEDULE_PHRASES: &[&str] = &[
    "reschedule",
    "re schedule",
    "resched",
    "rescheduling",
    "cant make it",
    "cannot make it",
    "can not make it",
    "wont make it",
    "wont be able to make it",
    "not going to make it",
    "not gonna make it",
    "unable to make it",
    "cant come",
    "cant go",
    "wont be able to come",
    "wont be able to go",
    "move my appointment",
    "move my appt",
    "move the appointment",
    "move my visit",
    "change my appointment",
    "change my appt",
    "change the appointment",
    "change the time",
    "different day",
    "different time",
    "another day",
    "another time",
    "new time",
    "push back my appointment",
    "push my appointment",
    "postpone",
    "can we move",
    "could we move",
    "cambiar mi cita",
    "cambiar la cita",
    "cambiar mi consulta",
    "cambiar la hora",
    "cambiar el dia",
    "cambio de cita",
    "mover mi cita",
    "mover la cita",
    "reprogramar",
    "reagendar",
    "otro dia",
    "otra fecha",
    "otra hora",
    "no puedo ir",
    "no voy a poder ir",
    "no podre ir",
    "no voy a poder llegar",
    "no puedo asistir",
    "no podre asistir",
    "posponer",
];

const CANCEL_VISIT_PHRASES: &[&str] = &[
    "cancel my appointment",
    "cancel my appt",
    "cancel the appointment",
    "cancel the appt",
    "cancel appointment",
    "cancel appt",
    "cancel my visit",
    "cancel the visit",
    "cancel my",
    "cancel it",
    "cancel for",
    "need to cancel",
    "have to cancel",
    "want to cancel",
    "wanna cancel",
    "gotta cancel",
    "going to cancel",
    "like to cancel",
    "please cancel",
    "cancelar mi cita",
    "cancelar la cita",
    "cancelar mi consulta",
    "cancela mi cita",
    "cancele mi cita",
    "cancelen mi cita",
    "necesito cancelar",
    "quiero cancelar",
    "tengo que cancelar",
    "voy a cancelar",
    "cancelo",
    "cancelar",
];

const LATE_PHRASES: &[&str] = &[
    "running late",
    "running behind",
    "be late",
    "im late",
    "am late",
    "a bit late",
    "a little late",
    "min late",
    "mins late",
    "minutes late",
    "minute late",
    "stuck in traffic",
    "in traffic",
    "be there in",
    "there in 5",
    "late",
    "llego tarde",
    "voy tarde",
    "llegare tarde",
    "llegar tarde",
    "vamos tarde",
    "llegando tarde",
    "un poco tarde",
    "me retrase",
    "retrasado",
    "retrasada",
    "hay trafico",
    "mucho trafico",
    "llego en",
];

const CONFIRM_PHRASES: &[&str] = &[
    "see you then",
    "see you there",
    "see you soon",
    "see you tomorrow",
    "see you today",
    "see u then",
    "see u there",
    "see u tomorrow",
    "ill be there",
    "i will be there",
    "will be there",
    "we will be there",
    "well be there",
    "i confirm",
    "confirmed",
    "confirming",
    "yes confirm",
    "ahi estare",
    "alli estare",
    "ahi estaremos",
    "alli estaremos",
    "ahi nos vemos",
    "nos vemos",
    "confirmo",
    "si voy",
    "ahi estoy",
    "asistire",
];

/// Words before a phrase that turn it around ("I won't be late", "don't cancel").
const REPLY_NEGATIONS: &[&str] = &[
    "dont", "not", "wont", "never", "didnt", "no", "cant", "shouldnt", "nunca",
];

/// Words before "confirm" that make it a question or a request to us ("can you confirm").
const ASKS_US: &[&str] = &["you", "u", "to", "please", "pls", "plz", "can", "could"];

/// The four tables in one automaton (patterns padded with spaces: whole words only), built
/// once.
static REPLY_AUTOMATON: std::sync::LazyLock<(aho_corasick::AhoCorasick, Vec<usize>)> =
    std::sync::LazyLock::new(|| {
        let mut patterns = Vec::new();
        let mut table_of = Vec::new();
        for (t, table) in REPLY_TABLES.iter().enumerate() {
            for p in *table {
                patterns.push(format!(" {p} "));
                table_of.push(t);
            }
        }
        let automaton = aho_corasick::AhoCorasick::builder()
            .match_kind(aho_corasick::MatchKind::Standard)
            .build(&patterns)
            .expect("the reply tables compile");
        (automaton, table_of)
    });

/// In order of precedence.
const REPLY_TABLES: [&[&str]; 4] = [
    RESCHEDULE_PHRASES,
    CANCEL_VISIT_PHRASES,
    LATE_PHRASES,
    CONFIRM_PHRASES,
];

fn free_text_reply(words: &[&str]) -> Option<(ReplyIntent, &'static str)> {
    let mut line = format!(" {} ", words.join(" "));
    // "can't make it on time" is late, not a new day.
    for not in ["cant", "cannot", "wont", "not"] {
        let phrase = format!(" {not} make it on time ");
        if line.contains(&phrase) {
            line = line.replace(&phrase, " running late ");
        }
    }
    let (automaton, table_of) = &*REPLY_AUTOMATON;
    let mut found = [false; 4];
    for m in automaton.find_overlapping_iter(&line) {
        let t = table_of[m.pattern().as_usize()];
        // Negations do not turn a reschedule around ("can't make it" is one).
        let before: Vec<&str> = line[..m.start()].split_whitespace().rev().take(2).collect();
        let negated = t != 0 && before.iter().any(|w| in_set(w, REPLY_NEGATIONS));
        let asks = t == 3 && before.iter().any(|w| in_set(w, ASKS_US));
        let late_fee = t == 2 && line[m.end()..].starts_with("fee");
        found[t] |= !negated && !asks && !late_fee;
    }
    let answers = [
        (ReplyIntent::Reschedule, "reply phrase: reschedule"),
        (ReplyIntent::CancelVisit, "reply phrase: cancel this visit"),
        (ReplyIntent::Late, "reply phrase: running late"),
        (ReplyIntent::Confirm, "reply phrase: confirm"),
    ];
    found.iter().position(|&f| f).map(|t| answers[t])
}

/// Rules 1 and 2: the message is a keyword and filler only.
fn whole_message(words: &[&str], ctx: &InboundContext) -> Option<Classification> {
    let phrase = core_phrase(words, false);
    let stripped = core_phrase(words, true);
    if let Some(k) =
        lookup(&phrase, OPT_OUT_KEYWORDS).or_else(|| lookup(&stripped, OPT_OUT_KEYWORDS))
    {
        return Some(done(
            Intent::OptOut,
            false,
            vec![Reason::keyword("whole-message keyword ", k)],
        ));
    }
    // CANCELAR is not a keyword: after a reminder it is most likely the answer to it.
    if ctx.reminder_awaiting_answer && phrase == "cancelar" {
        return Some(answer(
            ReplyIntent::CancelVisit,
            true,
            Reason::rule("review: CANCELAR while a reminder awaits an answer (not a keyword)"),
        ));
    }
    // Rule 4: C, Y, 1, X, 2, R, 3... answer a reminder, and only a reminder.
    if let Some((reply, k)) = reply_keyword(words) {
        if ctx.reminder_awaiting_answer {
            return Some(answer(
                reply,
                false,
                Reason::keyword("reply keyword while a reminder awaits an answer: ", k),
            ));
        }
        if !matches!(k, "YES" | "SI") {
            return Some(done(
                Intent::Other,
                false,
                vec![Reason::keyword(
                    "reply keyword with no reminder awaiting an answer: ",
                    k,
                )],
            ));
        }
    }
    if phrase_in(&phrase, OPT_OUT_WHOLE_PHRASES) || phrase_in(&stripped, OPT_OUT_WHOLE_PHRASES) {
        return Some(done(
            Intent::OptOut,
            false,
            vec![Reason::rule("whole-message revocation phrase")],
        ));
    }
    if let Some(k) = lookup(&phrase, HELP_KEYWORDS) {
        return Some(done(
            Intent::Help,
            false,
            vec![Reason::keyword("whole-message keyword ", k)],
        ));
    }
    // Spanish SI: the spec calls it debatable. Without a reminder it is an opt-in that staff
    // confirm; with one it answered the reminder above (rule 4), as YES did.
    if phrase == "si" {
        return Some(done(
            Intent::OptIn,
            true,
            vec![Reason::rule(
                "review: whole-message SI, an opt-in only when no reminder awaits",
            )],
        ));
    }
    if let Some(k) = lookup(&phrase, OPT_IN_KEYWORDS) {
        return Some(done(
            Intent::OptIn,
            false,
            vec![Reason::keyword("whole-message keyword ", k)],
        ));
    }
    // Filler is part of these phrases ("no thanks"): match the words as written too.
    let raw = collapse_phrase(&words.join(" "));
    if phrase_in(&phrase, REVIEW_WHOLE_PHRASES) || phrase_in(&raw, REVIEW_WHOLE_PHRASES) {
        return Some(done(
            Intent::Other,
            true,
            vec![Reason::rule("review: whole message may be a revocation")],
        ));
    }
    // One word, one typo from an opt-out keyword ("stpo", "unsubcribe", "para").
    if !stripped.contains(' ')
        && let Some(k) = near_keyword(&stripped)
    {
        return Some(done(
            Intent::Other,
            true,
            vec![Reason::keyword("review: looks like a misspelled ", k)],
        ));
    }
    None
}

/// One edit from a keyword of four letters or more; two edits from one of six or more
/// ("unsbscribe", "cancle"), or from a shorter one when the first and last letters are kept.
fn near_keyword(word: &str) -> Option<&'static str> {
    if word.chars().count() < 3 {
        return None;
    }
    OPT_OUT_KEYWORDS
        .iter()
        .filter(|(k, _)| k.len() >= 4 && !k.contains(' '))
        .find(|(k, _)| match osa_distance(word, k) {
            1 => true,
            2 => {
                k.len() >= 6
                    || (word.len() >= 4
                        && word.chars().next() == k.chars().next()
                        && word.chars().last() == k.chars().last())
            }
            _ => false,
        })
        .map(|(_, name)| *name)
}

/// Edit distance with adjacent transpositions ("stpo" is one edit from "stop").
pub(crate) fn osa_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    if a.len().abs_diff(b.len()) > 2 || a.len() > 32 {
        return 3;
    }
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

/// Word `i` of `w`, or "" past either end.
fn at<'a>(w: &[&'a str], i: isize) -> &'a str {
    usize::try_from(i)
        .ok()
        .and_then(|i| w.get(i))
        .copied()
        .unwrap_or("")
}

fn negated(w: &[&str], i: usize) -> bool {
    let i = i as isize;
    in_set(at(w, i - 1), NEGATIONS)
        || (in_set(at(w, i - 1), &["please", "pls", "plz", "ever", "just"])
            && in_set(at(w, i - 2), NEGATIONS))
        || (at(w, i - 1) == "to" && in_set(at(w, i - 2), &["want", "wanna"]) && negated_want(w, i))
}

/// "I don't want to stop ...".
fn negated_want(w: &[&str], i: isize) -> bool {
    in_set(at(w, i - 3), NEGATIONS) || (at(w, i - 4) == "do" && at(w, i - 3) == "not")
}

/// The object of the verb at `i`: skips GAP words and says what ends the run.
enum Object {
    /// A messaging noun or a sending verb ("texts", "texting").
    Messages,
    /// "stop sending me" and the clause ends.
    Me,
    Place,
    /// Medication, treatment, billing: "stop my meds", "stop the refill".
    Care,
    /// Nothing after the verb but filler.
    Nothing,
    Else,
}

fn object_after(w: &[&str], i: usize) -> Object {
    let next = at(w, i as isize + 1);
    if in_set(next, PLACE_WORDS) {
        return Object::Place;
    }
    let mut saw_me = false;
    for (n, word) in w.iter().enumerate().skip(i + 1).take(6) {
        if in_set(word, MSG_NOUNS) || in_set(word, SEND_VERBS) {
            return Object::Messages;
        }
        if in_set(word, CARE_WORDS) {
            return Object::Care;
        }
        if in_set(word, &["me", "us"]) {
            saw_me = true;
        }
        if !in_set(word, GAP)
            && !in_set(word, FILLER)
            && !in_set(word, &["it", "again", "anymore", "ever"])
        {
            return Object::Else;
        }
        if n + 1 == w.len() {
            break;
        }
    }
    if saw_me { Object::Me } else { Object::Nothing }
}

fn clause_rules(w: &[&str], all: &[&str], ctx: &InboundContext, ev: &mut Evidence) {
    // "Stop! I meant Tuesday", "Alto ahi, me equivoque": an interjection before a correction.
    let interjection: Vec<&str> = w
        .iter()
        .copied()
        .filter(|x| !in_set(x, &["ahi", "alli", "there", "right", "wait", "espera"]))
        .collect();
    if w.len() > interjection.len() || all.len() > w.len() {
        let core = core_phrase(&interjection, true);
        if in_set(&core, &["stop", "alto", "para"]) && correcting_itself(all) {
            ev.review.push(Reason::rule(
                "review: STOP as an interjection before a correction",
            ));
            return;
        }
    }
    // A clause that is a keyword alone: "Stop. Who is this?"
    let core = core_phrase(w, false);
    let stripped = core_phrase(w, true);
    if let Some(k) = lookup(&core, OPT_OUT_KEYWORDS).or_else(|| lookup(&stripped, OPT_OUT_KEYWORDS))
    {
        let weak = matches!(k, "CANCEL" | "END" | "QUIT" | "ALTO");
        if !weak {
            ev.optout
                .push(Reason::keyword("keyword alone in its sentence: ", k));
        } else if all.iter().any(|x| in_set(x, APPOINTMENT_WORDS)) {
            ev.notes
                .push(Reason::keyword("ambiguous: appointment words beside ", k));
        } else {
            ev.review.push(Reason::keyword(
                "review: keyword alone in a longer text: ",
                k,
            ));
        }
        return;
    }
    if phrase_in(&core, OPT_OUT_WHOLE_PHRASES) {
        ev.optout
            .push(Reason::rule("revocation phrase alone in its sentence"));
        return;
    }
    if phrase_in(&core, REVIEW_WHOLE_PHRASES)
        || phrase_in(&collapse_phrase(&w.join(" ")), REVIEW_WHOLE_PHRASES)
    {
        ev.review
            .push(Reason::rule("review: a sentence that may be a revocation"));
    }

    english_rules(w, all, ctx, ev);
    spanish_rules(w, ev);
    optin_rules(w, ev);
}

fn english_rules(w: &[&str], all: &[&str], ctx: &InboundContext, ev: &mut Evidence) {
    for (i, &word) in w.iter().enumerate() {
        let ii = i as isize;
        match word {
            "stop" | "quit" | "cease" | "halt" | "discontinue" | "end" | "cancel" | "pause" => {
                stop_verb(w, i, all, ctx, ev)
            }
            "unsubscribe" | "unsub" | "stopall" | "optout" | "unenroll" => {
                if negated(w, i) || in_set(at(w, ii - 1), &["did", "didnt"]) {
                    ev.review
                        .push(Reason::rule("review: unsubscribe, negated or asked about"));
                } else {
                    let after = if at(w, ii + 1) == "me" { i + 2 } else { i + 1 };
                    opt_out_of(w, after, ev);
                }
            }
            "opt"
                if at(w, ii + 1) == "out" || (at(w, ii + 1) == "me" && at(w, ii + 2) == "out") =>
            {
                let after = if at(w, ii + 1) == "me" { i + 3 } else { i + 2 };
                if negated(w, i) {
                    ev.review.push(Reason::rule("review: opt out, negated"));
                } else {
                    opt_out_of(w, after, ev);
                }
            }
            // "I'm done with this", "so done with these texts".
            "done" | "finished" | "through" if at(w, ii + 1) == "with" => {
                let rest = &w[i + 2..];
                if rest.iter().take(4).any(|x| in_set(x, MSG_NOUNS)) {
                    ev.optout
                        .push(Reason::rule("revocation phrase: done with the messages"));
                } else if in_set(
                    at(w, ii + 2),
                    &[
                        "this",
                        "these",
                        "that",
                        "you",
                        "u",
                        "yall",
                        "it",
                        "ur",
                        "your",
                        "all",
                        "everything",
                        "yours",
                    ],
                ) && !w.iter().any(|x| {
                    in_set(x, CARE_WORDS)
                        || in_set(x, APPOINTMENT_WORDS)
                        || in_set(x, UNRELATED_OBJECTS)
                }) {
                    ev.review
                        .push(Reason::rule("review: 'done with this' may be a revocation"));
                }
            }
            // "sick of these texts", "tired of the messages".
            "sick" | "tired" | "fed" if w[i + 1..].iter().take(5).any(|x| in_set(x, MSG_NOUNS)) => {
                ev.review
                    .push(Reason::rule("review: complaint about the messages"));
            }
            "unsubscribed" | "opted" if !matches!(at(w, ii - 1), "be" | "get" | "been") => {
                ev.review
                    .push(Reason::rule("review: says they already opted out"));
            }
            "leave" if at(w, ii + 1) == "me" && at(w, ii + 2) == "alone" => {
                ev.optout
                    .push(Reason::rule("revocation phrase: leave me alone"));
            }
            "more"
                if at(w, ii - 1) == "no"
                    && w[i + 1..].iter().take(4).any(|x| in_set(x, MSG_NOUNS)) =>
            {
                ev.optout
                    .push(Reason::rule("revocation phrase: no more messages"));
            }
            // "why do you keep texting me" (not "please keep texting me").
            "keep" | "keeps" | "kept"
                if w[i + 1..].iter().take(2).any(|x| in_set(x, SEND_VERBS))
                    && w[..i]
                        .iter()
                        .rev()
                        .take(3)
                        .any(|x| in_set(x, &["you", "u", "yall", "they", "why"])) =>
            {
                ev.review
                    .push(Reason::rule("review: complaint about repeated messages"));
            }
            "text" | "txt" | "message" | "msg" | "contact" | "send" | "sms" | "email" | "call"
            | "bother" => do_not_contact(w, i, ev),
            "want" | "wanna" | "wish" | "need" | "like" => dont_want(w, i, ev),
            // "who gave you my number?", "how did you get my number".
            "gave" | "get" | "got"
                if w[..i].iter().any(|x| in_set(x, &["who", "how", "where"]))
                    && w[i + 1..]
                        .iter()
                        .take(3)
                        .any(|x| in_set(x, &["number", "phone"])) =>
            {
                ev.review
                    .push(Reason::rule("review: asks how we got the number"));
            }
            // "I take back my permission".
            "take" | "taking"
                if w[i + 1..].iter().take(4).any(|x| *x == "back")
                    && w[i + 1..].iter().take(4).any(|x| in_set(x, CONSENT_WORDS)) =>
            {
                let p = w[i + 1..]
                    .iter()
                    .position(|x| in_set(x, CONSENT_WORDS))
                    .map_or(w.len(), |p| i + 2 + p);
                consent_scope(&w[p.min(w.len())..], negated(w, i), ev);
            }
            "take" | "get" | "remove" | "delete" | "erase" | "lose" | "scrub" => {
                off_the_list(w, i, ev)
            }
            "revoke" | "withdraw" | "rescind" => {
                let rest = &w[i + 1..];
                let consent = rest.iter().take(3).position(|x| in_set(x, CONSENT_WORDS));
                if let Some(p) = consent {
                    consent_scope(&rest[p + 1..], negated(w, i), ev);
                } else if rest.iter().take(4).any(|x| in_set(x, UNRELATED_OBJECTS)) {
                    ev.notes
                        .push(Reason::rule("ambiguous: revoke about access or records"));
                } else {
                    ev.review
                        .push(Reason::rule("review: revoke or withdraw, object unclear"));
                }
            }
            // "I no longer consent to texts", "I don't consent to these messages".
            "consent" | "agree"
                if in_set(at(w, ii - 1), NEGATIONS)
                    || (at(w, ii - 2) == "no" && at(w, ii - 1) == "longer")
                    || (at(w, ii - 2) == "do" && at(w, ii - 1) == "not") =>
            {
                let rest = &w[i + 1..];
                if rest.iter().take(6).any(|x| {
                    in_set(x, MSG_NOUNS) || in_set(x, SEND_VERBS) || in_set(x, OTHER_CHANNELS)
                }) {
                    consent_scope(rest, false, ev);
                } else if rest.is_empty() && word == "consent" {
                    ev.review
                        .push(Reason::rule("review: consent refused, object unclear"));
                }
            }
            // "I've never been your patient", "not a patient there".
            "patient"
                if w[i.saturating_sub(3)..i]
                    .iter()
                    .any(|x| in_set(x, &["never", "not", "isnt", "no"]))
                    && !all.iter().any(|x| in_set(x, &["yet", "new", "register"])) =>
            {
                ev.review.push(Reason::rule("review: wrong-number report"));
            }
            // "this number belongs to someone else", "new owner of this number".
            "else" | "owner" | "owners"
                if all.iter().any(|x| in_set(x, &["number", "phone", "cell"])) =>
            {
                ev.review.push(Reason::rule("review: wrong-number report"));
            }
            "wrong" if in_set(at(w, ii + 1), &["number", "person", "phone", "guy"]) => {
                ev.review.push(Reason::rule("review: wrong-number report"));
            }
            // "this isn't my number anymore", "not my phone".
            "number" | "phone" | "cell"
                if w[..i]
                    .iter()
                    .rev()
                    .take(3)
                    .any(|x| in_set(x, &["isnt", "not", "longer"])) =>
            {
                ev.review.push(Reason::rule("review: wrong-number report"));
            }
            // "too many texts", "enough with the messages".
            "many" | "enough" if w[i + 1..].iter().take(3).any(|x| in_set(x, MSG_NOUNS)) => {
                ev.review.push(Reason::rule(
                    "review: complaint about the number of messages",
                ));
            }
            // "I'd like to be removed from your text list", "taken off the list".
            "removed" | "taken" | "deleted" | "unsubscribed"
                if matches!(at(w, ii - 1), "be" | "get" | "been")
                    || in_set(at(w, ii + 1), &["from", "off"]) =>
            {
                off_the_list(w, i, ev);
            }
            "interested" if at(w, ii - 1) == "not" => {
                ev.review.push(Reason::rule("review: not interested"));
            }
            "spam" | "spamming" | "block" | "blocking" | "report" | "harassment" | "harassing"
            | "acoso" => {
                ev.review
                    .push(Reason::rule("review: complaint (spam, block, report)"));
            }
            "signed" | "sign" | "agreed" | "consented"
                if w[..i].iter().any(|x| in_set(x, &["never", "didnt", "not"]))
                    && !all.iter().any(|x| in_set(x, CARE_WORDS)) =>
            {
                ev.review
                    .push(Reason::rule("review: says they never agreed to texts"));
            }
            _ => {}
        }
    }
}

/// "opt out (of ...)", "unsubscribe (me) (from ...)": `after` is the word after the verb and
/// its "me". Our texts or nothing named is an opt-out; another channel is for staff; care or
/// records are not about texting at all.
fn opt_out_of(w: &[&str], after: usize, ev: &mut Evidence) {
    let prep = at(w, after as isize);
    if !in_set(prep, &["of", "from"]) {
        ev.optout
            .push(Reason::rule("revocation phrase: unsubscribe / opt out"));
        return;
    }
    match object_scope(&w[after + 1..]) {
        Scope::Ours => ev
            .optout
            .push(Reason::rule("revocation phrase: unsubscribe / opt out")),
        Scope::OtherChannel => ev.review.push(Reason::rule(
            "review: unsubscribe / opt out of another channel",
        )),
        Scope::Unrelated => ev.notes.push(Reason::rule(
            "ambiguous: opt out of care or records, not texts",
        )),
        Scope::Unknown => ev
            .review
            .push(Reason::rule("review: opt out of something else")),
    }
}

/// "Stop! I meant Tuesday", "Alto ahi, me equivoque de fecha": the text corrects itself and
/// names no messages.
fn correcting_itself(all: &[&str]) -> bool {
    let correction = all.iter().enumerate().any(|(i, x)| {
        in_set(
            x,
            &[
                "meant",
                "mean",
                "misread",
                "mistake",
                "mistaken",
                "typo",
                "oops",
                "wait",
                "correction",
                "equivoque",
                "equivoco",
                "quise",
                "corrijo",
                "espera",
                "perdon",
                "confused",
                "confundi",
                "confundido",
                "confundida",
            ],
        ) || (*x == "wrong"
            && in_set(
                at(all, i as isize + 1),
                &["date", "day", "time", "dates", "days"],
            ))
    });
    correction
        && !all.iter().any(|x| {
            in_set(x, MSG_NOUNS)
                || in_set(x, SEND_VERBS)
                || in_set(x, &["number", "person", "who", "quien", "numero"])
        })
}

/// "stop texting me", "stop by", "can I stop my medication", "cancel my appointment".
fn stop_verb(w: &[&str], i: usize, all: &[&str], ctx: &InboundContext, ev: &mut Evidence) {
    let word = w[i];
    let ii = i as isize;
    // "the end of the month", "the bus stop", "a quick stop": a noun, not a request.
    if in_set(
        at(w, ii - 1),
        &[
            "the", "a", "an", "my", "your", "at", "next", "bus", "last", "first", "one", "quick",
            "short", "that", "pit", "truck",
        ],
    ) {
        return;
    }
    // "don't stop", "won't stop" - unless "why won't you stop texting me".
    let you = &["you", "u", "yall", "they"];
    let wont = &["wont", "cant", "dont", "didnt"];
    let complaint = (in_set(at(w, ii - 1), &["wont", "cant"]) && in_set(at(w, ii - 2), you))
        || (in_set(at(w, ii - 1), you) && in_set(at(w, ii - 2), wont));
    if negated(w, i) && !complaint {
        ev.notes
            .push(Reason::rule("negated: 'don't stop' is not a revocation"));
        return;
    }
    let asking_about_past = !complaint
        && w[..i]
            .iter()
            .rev()
            .take(3)
            .any(|x| in_set(x, NOT_A_REQUEST));
    // Verbs that stop us texting when they name messages; only "stop" and its synonyms are
    // worth a review when they do not ("quit my job", "end of the day" are everyday words).
    let stops = matches!(word, "stop" | "quit" | "cease" | "halt" | "discontinue");
    let strong = matches!(word, "stop" | "cease" | "halt" | "discontinue");
    // "stop sign", "stop light": a noun.
    if word == "stop"
        && in_set(
            at(w, ii + 1),
            &["sign", "signs", "light", "lights", "watch"],
        )
    {
        return;
    }
    let object = object_after(w, i);
    let prev = at(w, ii - 1);
    if !matches!(object, Object::Messages) {
        // "I texted STOP by accident": the keyword is named, not sent.
        if in_set(
            prev,
            &[
                "texted",
                "txted",
                "sent",
                "replied",
                "typed",
                "wrote",
                "hit",
                "pressed",
                "answered",
                "responded",
                "mande",
                "envie",
                "escribi",
                "puse",
            ],
        ) {
            if all.iter().any(|x| {
                in_set(
                    x,
                    &[
                        "accidentally",
                        "accident",
                        "mistake",
                        "mistakenly",
                        "back",
                        "again",
                        "error",
                        "querer",
                    ],
                )
            }) {
                ev.notes.push(Reason::rule(
                    "ambiguous: a keyword named as sent by mistake",
                ));
            } else {
                ev.review
                    .push(Reason::rule("review: says they sent an opt-out keyword"));
            }
            return;
        }
        // "quit calling my work number": another channel.
        if stops
            && w[i + 1..]
                .iter()
                .take(2)
                .any(|x| in_set(x, &["calling", "emailing", "mailing", "phoning", "ringing"]))
        {
            ev.review
                .push(Reason::rule("review: revocation about calls or email"));
            return;
        }
        // "I had to stop suddenly", "the doctor said stop": the patient's own stop, or reported.
        let own = prev == "to"
            && in_set(
                at(w, ii - 2),
                &["had", "have", "has", "needed", "got", "gotta"],
            )
            && !in_set(at(w, ii - 3), &["you", "u", "yall", "they"]);
        let reported = in_set(prev, &["dijo", "dice", "dicen", "dijeron", "says", "told"])
            || (prev == "said"
                && !in_set(at(w, ii - 2), &["i", "ive", "id", "already", "just", "we"]));
        if own || reported || prev == "gotta" {
            ev.notes.push(Reason::rule(
                "ambiguous: the patient stops something, or reports a stop",
            ));
            return;
        }
    }
    if !matches!(object, Object::Messages) && all.iter().any(|x| in_set(x, CARE_WORDS)) {
        ev.notes.push(Reason::rule(
            "ambiguous: 'stop' about care, medication or billing",
        ));
        return;
    }
    match object {
        Object::Messages if asking_about_past => {
            ev.review
                .push(Reason::rule("review: asks whether texts stopped"));
        }
        Object::Messages => {
            let reminder_only = w[i + 1..]
                .iter()
                .take(6)
                .filter(|x| in_set(x, MSG_NOUNS))
                .all(|x| *x == "reminders");
            // "stop texting my mom": someone else's texts.
            let someone_else = w[i + 1..].windows(3).take(3).any(|p| {
                (in_set(p[0], SEND_VERBS) || es_send_verb(p[0]))
                    && in_set(p[1], &["my", "mi", "our"])
                    && in_set(
                        p[2],
                        &[
                            "mom", "mother", "dad", "father", "wife", "husband", "son", "daughter",
                            "kid", "kids", "child", "mama", "papa", "esposa", "esposo", "hijo",
                            "hija", "grandma", "grandpa",
                        ],
                    )
            });
            if someone_else {
                ev.review
                    .push(Reason::rule("review: revocation for someone else's number"));
            } else if word == "pause" || (!stops && reminder_only) {
                ev.review
                    .push(Reason::rule("review: pause or cancel of reminders"));
            } else {
                ev.optout
                    .push(Reason::rule("revocation phrase: stop + messaging"));
            }
        }
        Object::Me if stops && !asking_about_past => {
            ev.optout
                .push(Reason::rule("revocation phrase: stop sending me"));
        }
        Object::Place => {
            ev.notes
                .push(Reason::rule("ambiguous: 'stop' followed by a place"));
        }
        Object::Care => {
            ev.notes.push(Reason::rule(
                "ambiguous: 'stop' about care, medication or billing",
            ));
        }
        _ if word == "cancel" => {
            // Cancelling is about the appointment unless it names messages (handled above);
            // a time ("my 3pm") places it in the schedule too.
            let scheduling = all
                .iter()
                .any(|x| in_set(x, APPOINTMENT_WORDS) || x.chars().any(|c| c.is_ascii_digit()));
            if ctx.reminder_awaiting_answer || scheduling {
                ev.notes
                    .push(Reason::rule("ambiguous: 'cancel' about an appointment"));
            } else {
                ev.review.push(Reason::rule(
                    "review: 'cancel' inside a longer text, object unclear",
                ));
            }
        }
        Object::Nothing | Object::Me if strong && !asking_about_past => {
            // "I said stop", "can you please stop", "ok stop now".
            let before = &w[..i];
            let asked = before.is_empty()
                || before.iter().any(|x| {
                    in_set(
                        x,
                        &[
                            "please", "pls", "plz", "just", "you", "u", "said", "ok", "okay",
                            "yall", "guys", "can", "could", "will", "would", "need", "want",
                        ],
                    )
                });
            if asked {
                ev.optout
                    .push(Reason::rule("revocation phrase: request to stop"));
            } else {
                ev.review
                    .push(Reason::rule("review: 'stop' inside a longer text, unclear"));
            }
        }
        // "I'll stop worrying", "where do I stop to pay": the patient stopping something.
        _ if strong
            && in_set(
                at(w, ii - 1),
                &["i", "ill", "im", "we", "well", "id", "ive"],
            ) =>
        {
            ev.notes.push(Reason::rule(
                "ambiguous: the patient stops something themselves",
            ));
        }
        _ if strong => {
            ev.review
                .push(Reason::rule("review: 'stop' inside a longer text, unclear"));
        }
        _ => {}
    }
}

/// "don't text me", "never contact me again", "do not send me texts".
fn do_not_contact(w: &[&str], i: usize, ev: &mut Evidence) {
    let ii = i as isize;
    let neg = negated(w, i) || (at(w, ii - 2) == "do" && at(w, ii - 1) == "not");
    if !neg {
        return;
    }
    let next = at(w, ii + 1);
    let after = at(w, ii + 2);
    let target = if w[i] == "send" {
        // "don't send me texts", "don't send me anything", not "don't send me the bill".
        w[i + 1..].iter().take(4).any(|x| in_set(x, MSG_NOUNS))
            || (next == "me"
                && in_set(
                    after,
                    &[
                        "", "anything", "anymore", "again", "stuff", "nothing", "any",
                    ],
                ))
    } else {
        in_set(next, &["me", "us", "anymore", "again"])
            || in_set(next, MSG_NOUNS)
            || (in_set(next, &["my", "this"]) && in_set(after, &["number", "phone", "cell"]))
    };
    if !target {
        return;
    }
    // "don't text me back": no reply needed, not a revocation.
    if w[i + 1..].iter().take(3).any(|x| *x == "back") {
        ev.notes.push(Reason::rule(
            "ambiguous: 'don't text me back' is not a revocation",
        ));
        return;
    }
    if matches!(w[i], "email" | "call") {
        ev.review
            .push(Reason::rule("review: revocation about calls or email"));
    } else if w[i] == "bother" {
        ev.review
            .push(Reason::rule("review: asks not to be bothered"));
    } else {
        ev.optout
            .push(Reason::rule("revocation phrase: do not text me"));
    }
}

/// "I don't want these texts", "no longer wish to receive messages".
fn dont_want(w: &[&str], i: usize, ev: &mut Evidence) {
    let ii = i as isize;
    let neg = in_set(at(w, ii - 1), NEGATIONS)
        || (at(w, ii - 2) == "do" && at(w, ii - 1) == "not")
        || (at(w, ii - 2) == "no" && at(w, ii - 1) == "longer");
    if !neg {
        return;
    }
    let rest = &w[i + 1..];
    let wants_messages = rest
        .iter()
        .take(7)
        .any(|x| in_set(x, MSG_NOUNS) || in_set(x, SEND_VERBS) || *x == "reminders");
    // "I don't want to stop the reminders", "I don't want to miss any texts".
    let to_stop = rest
        .iter()
        .take(3)
        .any(|x| in_set(x, &["stop", "cancel", "miss", "lose", "forget", "ignore"]));
    if !wants_messages || to_stop {
        return;
    }
    if matches!(w[i], "want" | "wanna" | "wish") {
        ev.optout
            .push(Reason::rule("revocation phrase: does not want messages"));
    } else {
        ev.review
            .push(Reason::rule("review: does not need or like messages"));
    }
}

/// "take me off your list", "remove my number", but not "take me off the waitlist".
fn off_the_list(w: &[&str], i: usize, ev: &mut Evidence) {
    let ii = i as isize;
    let next = at(w, ii + 1);
    let passive = in_set(w[i], &["removed", "taken", "deleted", "unsubscribed"]);
    let (who_end, is_me) = match next {
        _ if passive => (i, true),
        // "remove from list": the sender is meant.
        "from" if in_set(w[i], &["remove", "delete"]) => (i, true),
        "me" => (i + 1, true),
        "my" | "this" | "our"
            if in_set(
                at(w, ii + 2),
                &["number", "phone", "cell", "info", "contact"],
            ) =>
        {
            (i + 2, true)
        }
        _ => (i, false),
    };
    if !is_me || negated(w, i) {
        return;
    }
    // "get me" is only a revocation with a destination ("get me off this list").
    let rest = &w[who_end + 1..];
    let dest: Vec<&str> = rest
        .iter()
        .skip_while(|x| in_set(x, &["off", "from", "out", "of"]))
        .copied()
        .collect();
    let has_prep = rest
        .first()
        .is_some_and(|x| in_set(x, &["off", "from", "out"]));
    if matches!(w[i], "get" | "take") && !has_prep {
        return;
    }
    // "the cancellation list", "the call list": a list named by something other than texts.
    let named_list = dest.iter().take(5).enumerate().any(|(n, x)| {
        in_set(x, &["list", "lista"])
            && n > 0
            && !in_set(dest[n - 1], GAP)
            && !in_set(dest[n - 1], MSG_NOUNS)
            && !in_set(dest[n - 1], TEXTING_LIST)
            && !in_set(
                dest[n - 1],
                &["contact", "reminder", "sms", "texting", "de"],
            )
    });
    let for_a_day = dest
        .windows(2)
        .any(|p| p[0] == "for" && in_set(p[1], APPOINTMENT_WORDS));
    if for_a_day
        || dest
            .iter()
            .take(5)
            .any(|x| in_set(x, NOT_THE_TEXTING_LIST) || in_set(x, CARE_WORDS))
    {
        ev.notes.push(Reason::rule(
            "ambiguous: a list other than texting (wait list)",
        ));
    } else if named_list {
        ev.review.push(Reason::rule(
            "review: remove me from a list named otherwise",
        ));
    } else if dest.is_empty()
        || dest.iter().all(|x| in_set(x, FILLER))
        || dest.iter().take(5).any(|x| in_set(x, TEXTING_LIST))
    {
        ev.optout
            .push(Reason::rule("revocation phrase: take me off the list"));
    } else {
        ev.review
            .push(Reason::rule("review: remove me from something unclear"));
    }
}

/// "no me manden": the subjunctive and imperative forms only ("no me mandan" is a complaint).
const ES_DONT_SEND: &[&str] = &[
    "manden",
    "mandes",
    "mande",
    "envien",
    "envies",
    "envie",
    "escriban",
    "escribas",
    "escriba",
    "contacten",
    "contactes",
    "contacte",
    "texteen",
    "textees",
    "textee",
    "mensajeen",
];

/// Stems of Spanish sending verbs, with or without clitics ("mandarme", "envien", "escribirme").
fn es_send_verb(word: &str) -> bool {
    ["mand", "envi", "escrib", "textea", "mensajea", "contact"]
        .iter()
        .any(|s| word.starts_with(s))
        && !word.ends_with("ron")
        && !word.ends_with("aste")
        && !word.ends_with("iste")
}

fn spanish_rules(w: &[&str], ev: &mut Evidence) {
    for (i, &word) in w.iter().enumerate() {
        let ii = i as isize;
        let not_before = at(w, ii - 1) == "no" || at(w, ii - 2) == "no" && at(w, ii - 1) == "me";
        match word {
            // "dejen de mandarme mensajes", "deja de escribirme".
            "dejen" | "deja" | "dejar" | "deje" | "dejes" | "paren" | "pare" | "para" | "parar"
            | "detener" | "detengan" | "detenga" | "basta"
                if at(w, ii + 1) == "de"
                    || word.starts_with("par") && word != "para"
                    || word.starts_with("deten") =>
            {
                if at(w, ii - 1) == "no" {
                    ev.notes
                        .push(Reason::rule("negated: 'no dejen de' is not a revocation"));
                    continue;
                }
                let rest = &w[i + 1..];
                let object = rest
                    .iter()
                    .take(5)
                    .find(|x| es_send_verb(x) || in_set(x, MSG_NOUNS) || in_set(x, CARE_WORDS));
                if word.starts_with("par") && in_set(at(w, ii + 1), &["en", "por", "a", "al"]) {
                    ev.notes
                        .push(Reason::rule("ambiguous: 'parar' followed by a place"));
                    continue;
                }
                // "dejen de molestarme": like "don't bother me".
                let next_verb = at(w, ii + 2);
                if at(w, ii + 1) == "de" && next_verb.starts_with("molest") {
                    ev.review
                        .push(Reason::rule("review: asks not to be bothered"));
                    continue;
                }
                // "no puedo parar de toser": stopping an action of one's own, not our texts.
                if (word.starts_with("par") || word.starts_with("deten"))
                    && at(w, ii + 1) == "de"
                    && object.is_none()
                    && ["ar", "er", "ir"].iter().any(|e| next_verb.ends_with(e))
                {
                    ev.notes.push(Reason::rule(
                        "ambiguous: 'parar de' an action that is not sending",
                    ));
                    continue;
                }
                match object {
                    Some(x) if in_set(x, CARE_WORDS) => ev.notes.push(Reason::rule(
                        "ambiguous: 'parar' about medication or health",
                    )),
                    Some(_) => ev
                        .optout
                        .push(Reason::rule("revocation phrase (es): dejen de mandar")),
                    None if word.starts_with("par") || word.starts_with("deten") => ev.review.push(
                        Reason::rule("review: 'parar' inside a longer text, unclear"),
                    ),
                    None => {}
                }
            }
            // "no me manden mas textos", "no me escriban".
            w_ if (not_before && in_set(w_, ES_DONT_SEND))
                || (in_set(w_, &["sigan", "siga", "sigas"])
                    && not_before
                    && es_send_verb(at(w, ii + 1))) =>
            {
                match object_scope(&w[i + 1..]) {
                    Scope::Ours => ev
                        .optout
                        .push(Reason::rule("revocation phrase (es): no me manden")),
                    Scope::Unrelated => ev.notes.push(Reason::rule(
                        "ambiguous: 'no me manden' about papers or bills, not texts",
                    )),
                    Scope::OtherChannel | Scope::Unknown => ev.review.push(Reason::rule(
                        "review: 'no me manden' with an object that is not texts",
                    )),
                }
            }
            // "dejenme en paz", "que me dejen tranquila".
            w_ if ((w_.starts_with("dej") && w_.ends_with("me"))
                || (in_set(w_, &["dejen", "deje", "dejes", "deja"]) && at(w, ii - 1) == "me"))
                && (at(w, ii + 1) == "en" && at(w, ii + 2) == "paz"
                    || at(w, ii + 1).starts_with("tranquil")) =>
            {
                if at(w, ii - 1) == "no" || at(w, ii - 2) == "no" {
                    continue;
                }
                if w.iter().any(|x| x.starts_with("llama")) {
                    ev.review
                        .push(Reason::rule("review: revocation about calls"));
                } else {
                    ev.optout
                        .push(Reason::rule("revocation phrase (es): dejenme en paz"));
                }
            }
            // "retiro mi consentimiento", "revoco mi autorizacion".
            w_ if ["retir", "revoc", "anul"].iter().any(|s| w_.starts_with(s))
                && w[i + 1..].iter().take(3).any(|x| in_set(x, CONSENT_WORDS)) =>
            {
                let after = w[i + 1..]
                    .iter()
                    .position(|x| in_set(x, CONSENT_WORDS))
                    .map_or(i + 1, |p| i + 2 + p);
                consent_scope(&w[after..], at(w, ii - 1) == "no", ev);
            }
            // "ya no doy mi consentimiento", "no autorizo mensajes".
            "doy" | "autorizo" | "acepto" if at(w, ii - 1) == "no" => {
                let rest = &w[i + 1..];
                if word != "doy" || rest.iter().take(3).any(|x| in_set(x, CONSENT_WORDS)) {
                    let after = rest
                        .iter()
                        .position(|x| in_set(x, CONSENT_WORDS))
                        .map_or(i + 1, |p| i + 2 + p);
                    consent_scope(&w[after..], false, ev);
                }
            }
            // "estoy harta de los mensajes".
            "basta" | "fin" if w[i + 1..].iter().take(4).any(|x| in_set(x, MSG_NOUNS)) => {
                ev.optout
                    .push(Reason::rule("revocation phrase (es): basta de mensajes"));
            }
            "molesten" | "molestes" | "moleste" if not_before => {
                ev.review
                    .push(Reason::rule("review: asks not to be bothered"));
            }
            // "ya no es mi numero".
            "numero" if at(w, ii - 1) == "mi" && at(w, ii - 2) == "es" && at(w, ii - 3) == "no" => {
                ev.review.push(Reason::rule("review: wrong-number report"));
            }
            // "no me vuelvan a escribir", "nunca me vuelvan a mandar mensajes".
            w_ if w_.starts_with("vuelv")
                && w[i.saturating_sub(3)..i]
                    .iter()
                    .any(|x| in_set(x, &["no", "nunca", "jamas"]))
                && at(w, ii + 1) == "a"
                && es_send_verb(at(w, ii + 2)) =>
            {
                ev.optout.push(Reason::rule(
                    "revocation phrase (es): no me vuelvan a mandar",
                ));
            }
            "harto" | "harta" | "hartos" | "cansado" | "cansada" | "canse" | "harte" | "estuvo"
                if w[i + 1..].iter().take(4).any(|x| in_set(x, MSG_NOUNS)) =>
            {
                ev.review
                    .push(Reason::rule("review: complaint about the messages (es)"));
            }
            "llamen" | "llames" | "llame" if not_before => {
                ev.review
                    .push(Reason::rule("review: revocation about calls"));
            }
            // "no quiero recibir mas mensajes", "ya no deseo mensajes".
            "quiero" | "deseo" | "queremos" | "necesito" if at(w, ii - 1) == "no" => {
                let rest = &w[i + 1..];
                let nothing = at(w, ii + 1).starts_with("recib")
                    && (in_set(at(w, ii + 2), &["", "nada"])
                        || (at(w, ii + 2) == "mas" && at(w, ii + 3).is_empty()));
                // "ya no quiero estar en su lista" (not "en la lista de espera").
                let listed = at(w, ii + 1) == "estar"
                    && rest.iter().take(4).any(|x| *x == "lista")
                    && !rest.iter().any(|x| in_set(x, NOT_THE_TEXTING_LIST));
                if (nothing
                    || listed
                    || rest
                        .iter()
                        .take(6)
                        .any(|x| in_set(x, MSG_NOUNS) || es_send_verb(x)))
                    && !rest
                        .iter()
                        .take(3)
                        .any(|x| x.starts_with("cancel") || x.starts_with("par"))
                {
                    if word == "necesito" {
                        ev.review
                            .push(Reason::rule("review: does not need messages (es)"));
                    } else {
                        ev.optout
                            .push(Reason::rule("revocation phrase (es): no quiero mensajes"));
                    }
                }
            }
            "mas"
                if at(w, ii - 1) == "no"
                    && w[i + 1..].iter().take(3).any(|x| in_set(x, MSG_NOUNS)) =>
            {
                ev.optout
                    .push(Reason::rule("revocation phrase (es): no mas mensajes"));
            }
            // "quitenme de la lista", "sacarme de su lista", "borren mi numero".
            w_ if ["sac", "saq", "quit", "borr", "elimin", "remuev", "remov"]
                .iter()
                .any(|s| w_.starts_with(s))
                && w_ != "quit" =>
            {
                let rest = &w[i + 1..];
                let me = w_.ends_with("me") || at(w, ii - 1) == "me" || rest.first() == Some(&"mi");
                let lista = rest
                    .iter()
                    .take(5)
                    .any(|x| in_set(x, &["lista", "numero", "sistema"]));
                if !me || !lista {
                    continue;
                }
                // "no me quiten de la lista".
                if w[i.saturating_sub(2)..i].contains(&"no") {
                    ev.notes
                        .push(Reason::rule("negated: 'no me quiten' is not a revocation"));
                    continue;
                }
                if rest.iter().take(6).any(|x| in_set(x, NOT_THE_TEXTING_LIST)) {
                    ev.notes.push(Reason::rule(
                        "ambiguous: a list other than texting (wait list)",
                    ));
                } else {
                    ev.optout
                        .push(Reason::rule("revocation phrase (es): sacarme de la lista"));
                }
            }
            // "darme de baja", "me doy de baja", "quiero la baja".
            "baja" => {
                let prev = at(w, ii - 1);
                let prev2 = at(w, ii - 2);
                let dar = prev == "de"
                    && ["dar", "den", "doy", "da", "di", "dame", "dem"]
                        .iter()
                        .any(|s| prev2.starts_with(s));
                let past = in_set(prev2, &["dio", "dieron", "di", "dimos"]);
                let elsewhere = past
                    && !w[i + 1..]
                        .iter()
                        .take(4)
                        .any(|x| in_set(x, MSG_NOUNS) || in_set(x, &["lista", "mensaje"]))
                    || w[i + 1..].iter().take(6).any(|x| {
                        in_set(
                            x,
                            &[
                                "trabajo",
                                "chamba",
                                "empleo",
                                "laboral",
                                "incapacidad",
                                "escuela",
                                "seguro",
                                "aseguranza",
                                "hospital",
                                "ejercito",
                            ],
                        )
                    });
                if (dar || (prev == "la" && in_set(prev2, &["quiero", "pido", "solicito"])))
                    && elsewhere
                {
                    ev.notes.push(Reason::rule(
                        "ambiguous: 'de baja' from work or insurance (leave), not texts",
                    ));
                } else if dar || (prev == "la" && in_set(prev2, &["quiero", "pido", "solicito"])) {
                    ev.optout
                        .push(Reason::rule("revocation phrase (es): darme de baja"));
                }
            }
            "cancelar" | "cancelen" | "cancele" | "cancela" => {
                let rest = &w[i + 1..];
                if rest.iter().take(4).any(|x| in_set(x, MSG_NOUNS)) {
                    ev.optout
                        .push(Reason::rule("revocation phrase (es): cancelar mensajes"));
                }
            }
            // "alto a los mensajes".
            "alto" if w[i + 1..].iter().take(3).any(|x| in_set(x, MSG_NOUNS)) => {
                ev.optout
                    .push(Reason::rule("revocation phrase (es): alto a los mensajes"));
            }
            // "favor de no mandar mas mensajes", "no enviarme textos".
            w_ if at(w, ii - 1) == "no"
                && ["mandar", "enviar", "escribir"]
                    .iter()
                    .any(|s| w_.starts_with(s))
                && w[i + 1..].iter().take(3).any(|x| in_set(x, MSG_NOUNS)) =>
            {
                ev.optout
                    .push(Reason::rule("revocation phrase (es): no mandar mensajes"));
            }
            "desuscribir" | "desuscribirme" | "desuscribanme" | "desuscribirse" => {
                ev.optout
                    .push(Reason::rule("revocation phrase (es): desuscribir"));
            }
            // "numero equivocado", "se equivocaron de numero", "ya no es de esa persona", "no
            // conozco a esa persona".
            "equivocado" | "equivocada" | "equivocaron" | "equivocados" | "equivoco"
                if w.contains(&"numero") || at(w, ii - 1) == "persona" =>
            {
                ev.review.push(Reason::rule("review: wrong-number report"));
            }
            "persona"
                if w.contains(&"numero") || w[..i].windows(2).any(|p| p == ["no", "conozco"]) =>
            {
                ev.review.push(Reason::rule("review: wrong-number report"));
            }
            "interesa" if at(w, ii - 2) == "no" => {
                ev.review.push(Reason::rule("review: not interested"));
            }
            _ => {}
        }
    }
}

/// "please start texting me again", "opt me back in", "quiero recibir mensajes otra vez".
fn optin_rules(w: &[&str], ev: &mut Evidence) {
    for (i, &word) in w.iter().enumerate() {
        let ii = i as isize;
        match word {
            "unstop" | "resubscribe" => {
                ev.optin
                    .push(Reason::rule("opt-in phrase: unstop / resubscribe"));
            }
            "start" | "resume" | "restart"
                if !negated(w, i)
                    && !w[..i].iter().any(|x| in_set(x, NOT_A_REQUEST))
                    && w[i + 1..]
                        .iter()
                        .take(4)
                        .any(|x| in_set(x, MSG_NOUNS) || in_set(x, SEND_VERBS))
                    && w[i + 1..].iter().any(|x| in_set(x, &["again", "back"])) =>
            {
                ev.optin
                    .push(Reason::rule("opt-in phrase: start texting again"));
            }
            // "how do I get my reminders back", "add me back to the list".
            "back"
                if !w[..i].iter().any(|x| in_set(x, NEGATIONS))
                    && at(w, ii + 1) != "to"
                    && ((w[i.saturating_sub(3)..i]
                        .iter()
                        .any(|x| in_set(x, MSG_NOUNS) || *x == "reminder")
                        && w[..i]
                            .iter()
                            .any(|x| in_set(x, &["get", "want", "receive", "have", "turn"])))
                        || (at(w, ii - 1) == "me"
                            && in_set(at(w, ii - 2), &["add", "put", "sign", "subscribe"]))) =>
            {
                ev.optin
                    .push(Reason::rule("opt-in phrase: get the texts back"));
            }
            "opt" | "sign"
                if at(w, ii + 1) == "me" && at(w, ii + 2) == "back" && at(w, ii + 3) == "in" =>
            {
                ev.optin.push(Reason::rule("opt-in phrase: opt me back in"));
            }
            // "quiero volver a recibir los mensajes", "vuelvan a mandarme textos".
            w_ if w_.starts_with("volv")
                || w_.starts_with("vuelv")
                || w_.starts_with("reactiv")
                || w_ == "activar" =>
            {
                let rest = &w[i + 1..];
                let sends = rest
                    .iter()
                    .take(3)
                    .any(|x| es_send_verb(x) || x.starts_with("recibir") || in_set(x, MSG_NOUNS));
                let msgs = rest.iter().take(6).any(|x| in_set(x, MSG_NOUNS));
                let refused = w[i.saturating_sub(3)..i]
                    .iter()
                    .any(|x| in_set(x, &["no", "nunca", "jamas"]));
                if sends && msgs && !refused {
                    ev.optin.push(Reason::rule(
                        "opt-in phrase (es): volver a recibir mensajes",
                    ));
                }
            }
            "recibir"
                if in_set(at(w, ii - 1), &["quiero", "deseo"])
                    && at(w, ii - 2) != "no"
                    && w[i + 1..].iter().take(3).any(|x| in_set(x, MSG_NOUNS))
                    && w[i + 1..]
                        .iter()
                        .any(|x| in_set(x, &["otra", "nuevo", "nuevamente"])) =>
            {
                ev.optin.push(Reason::rule(
                    "opt-in phrase (es): recibir mensajes otra vez",
                ));
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NONE: InboundContext = InboundContext {
        reminder_awaiting_answer: false,
    };
    const REMINDER: InboundContext = InboundContext {
        reminder_awaiting_answer: true,
    };

    fn intent(text: &str) -> Intent {
        classify(text, &NONE).intent
    }

    #[track_caller]
    fn assert_intent(text: &str, ctx: &InboundContext, want: Intent, review: bool) {
        let got = classify(text, ctx);
        assert_eq!(
            (got.intent, got.review),
            (want, review),
            "{text:?}: {:?}",
            got.reasons
        );
    }

    /// Every way of writing a keyword alone that should still count.
    fn variants(keyword: &str) -> Vec<String> {
        let lower = keyword.to_lowercase();
        let mut title = lower.clone();
        if let Some(first) = title.get_mut(0..1) {
            first.make_ascii_uppercase();
        }
        let mut out = Vec::new();
        for k in [keyword.to_owned(), lower.clone(), title] {
            for (pre, post) in [
                ("", ""),
                ("  ", "\n"),
                ("", "."),
                ("", "!!!"),
                ("\u{00A1}", "!"),
                ("", " \u{1F6D1}"),
                ("\u{1F621} ", " \u{1F621}"),
                ("", " pls"),
                ("", " please"),
                ("please ", ""),
                ("", " now"),
                ("", " por favor"),
                ("ok ", " thanks"),
                ("\"", "\""),
            ] {
                out.push(format!("{pre}{k}{post}"));
            }
        }
        out
    }

    #[test]
    fn every_opt_out_keyword_in_every_spelling_and_state() {
        for keyword in [
            "STOP",
            "STOPALL",
            "STOP ALL",
            "UNSUBSCRIBE",
            "CANCEL",
            "END",
            "QUIT",
            "REVOKE",
            "OPTOUT",
            "OPT OUT",
            "OPT-OUT",
            "PARAR",
            "ALTO",
            "BAJA",
        ] {
            for text in variants(keyword) {
                for ctx in [NONE, REMINDER] {
                    let got = classify(&text, &ctx);
                    assert_eq!(got.intent, Intent::OptOut, "{text:?} {ctx:?}");
                    assert!(!got.review, "{text:?}");
                    assert!(
                        got.reasons[0]
                            .as_str()
                            .starts_with("whole-message keyword "),
                        "{text:?}: {:?}",
                        got.reasons
                    );
                }
            }
        }
    }

    #[test]
    fn unicode_forms_fold_to_the_keyword() {
        for text in [
            "\u{FF33}\u{FF34}\u{FF2F}\u{FF30}", // full-width STOP
            "S\u{0301}TOP",                     // a stray combining accent
            "P\u{00C1}RAR",
            "B\u{00C1}JA",
            "stooop",
            "stopp",
            "stop stop stop",
            "STOP\u{200B}",
        ] {
            assert_eq!(intent(text), Intent::OptOut, "{text:?}");
        }
    }

    #[test]
    fn help_and_opt_in_keywords() {
        for keyword in ["HELP", "INFO", "AYUDA"] {
            for text in variants(keyword) {
                assert_intent(&text, &NONE, Intent::Help, false);
                assert_intent(&text, &REMINDER, Intent::Help, false);
            }
        }
        for keyword in ["START", "UNSTOP"] {
            for text in variants(keyword) {
                assert_intent(&text, &NONE, Intent::OptIn, false);
                assert_intent(&text, &REMINDER, Intent::OptIn, false);
            }
        }
    }

    #[test]
    fn yes_is_an_opt_in_only_when_no_reminder_awaits() {
        for text in variants("YES") {
            assert_intent(&text, &NONE, Intent::OptIn, false);
            let got = classify(&text, &REMINDER);
            assert_eq!(got.intent, Intent::Other, "{text:?}");
            assert!(got.reasons[0].as_str().contains("reminder"));
        }
        // "Sí" is an opt-in for staff to confirm, and never one after a reminder.
        for text in ["S\u{00ED}", "si", "SI!", "s\u{00ED} por favor"] {
            assert_intent(text, &NONE, Intent::OptIn, true);
            assert_intent(text, &REMINDER, Intent::Other, false);
        }
        // ALTA is one letter from ALTO: never an opt-in.
        assert_ne!(intent("ALTA"), Intent::OptIn);
    }

    #[test]
    fn free_text_revocations() {
        for text in [
            "please stop texting me",
            "Stop texting me!",
            "can you stop sending me these messages",
            "no more messages",
            "take me off your list",
            "remove me from your texting list please",
            "don't text me again",
            "I do not want these texts anymore",
            "I no longer wish to receive text messages",
            "unsubscribe me",
            "why won't you stop texting me",
            "I said stop",
            "leave me alone",
            "STOP. wrong person",
            "dejen de mandarme mensajes",
            "no me manden mas textos",
            "No quiero recibir m\u{00E1}s mensajes",
            "quiero darme de baja",
            "qu\u{00ED}tenme de la lista",
            "paren los mensajes",
        ] {
            assert_intent(text, &NONE, Intent::OptOut, false);
        }
    }

    #[test]
    fn look_alikes_are_not_opt_outs() {
        for (text, ctx) in [
            ("cancel my appointment tuesday", NONE),
            ("I need to cancel, I'm sick", NONE),
            ("I want to cancel", REMINDER),
            ("stop by the office?", NONE),
            ("Can I stop by on my way home?", NONE),
            ("can I stop my medication", NONE),
            ("When should I stop taking the antibiotics?", NONE),
            ("end of the month works", NONE),
            ("at the end of the day", NONE),
            ("I quit smoking", NONE),
            ("please don't stop the reminders", NONE),
            ("why did you stop texting me?", NONE),
            ("take me off the waitlist", NONE),
            ("don't text me back, I'll call", NONE),
            ("Help me find the office", NONE),
            ("Tengo la presi\u{00F3}n baja", NONE),
            ("\u{00BF}Puedo parar el medicamento?", NONE),
            ("Necesito cancelar mi cita", NONE),
            ("no dejen de mandarme recordatorios", NONE),
            ("No me mandaron el recordatorio", NONE),
            ("Can I get my reminder texts back to English?", NONE),
            ("me pueden volver a mandar el enlace?", NONE),
            ("I'm done with the fasting, can I eat?", NONE),
            ("Who else can pick up my prescription?", NONE),
            ("no kiero la vacuna", NONE),
            ("fin de mes pago", NONE),
            ("retiro mi receta ma\u{00F1}ana", NONE),
        ] {
            let got = classify(text, &ctx);
            assert_ne!(got.intent, Intent::OptOut, "{text:?}: {:?}", got.reasons);
        }
    }

    #[test]
    fn texting_and_phonetic_spellings() {
        for text in [
            "stawp",
            "Stahhp!!",
            "stoup",
            "stohp texting me",
            "ya no kiero recibir mensajes",
        ] {
            assert_intent(text, &NONE, Intent::OptOut, false);
        }
        // Two letters off a keyword: review, not an opt-out.
        for text in ["unsbscribe", "cancle", "revok"] {
            assert_intent(text, &NONE, Intent::Other, true);
        }
        for text in ["step", "stamp it please", "stoop down"] {
            assert_ne!(intent(text), Intent::OptOut, "{text:?}");
        }
    }

    #[test]
    fn scope_of_opt_out_and_unsubscribe() {
        assert_intent("opt me out of everything", &NONE, Intent::OptOut, false);
        assert_intent(
            "unsubscribe me from this list",
            &NONE,
            Intent::OptOut,
            false,
        );
        assert_intent("opt out of the vaccine study?", &NONE, Intent::Other, false);
        assert_intent(
            "please unsubscribe me from the mailing, texts ok",
            &NONE,
            Intent::Other,
            true,
        );
        assert_intent("stop calling my house", &NONE, Intent::Other, true);
        assert_intent(
            "no me envien el recibo por correo",
            &NONE,
            Intent::Other,
            false,
        );
        assert_intent(
            "Mi jefe me dio de baja en el trabajo",
            &NONE,
            Intent::Other,
            false,
        );
    }

    #[test]
    fn spanish_revocations_and_opt_ins() {
        for text in [
            "revoco mi autorizaci\u{00F3}n para mensajes",
            "d\u{00E9}jame en paz",
            "quiero que me dejen tranquila",
            "ya no autorizo que me manden textos",
        ] {
            assert_intent(text, &NONE, Intent::OptOut, false);
        }
        assert_intent(
            "retiro mi consentimiento para compartir mis resultados",
            &NONE,
            Intent::Other,
            true,
        );
        assert_intent(
            "los dolores no me dejan en paz",
            &NONE,
            Intent::Other,
            false,
        );
        assert_intent(
            "pueden volver a mandarme los mensajes",
            &NONE,
            Intent::OptIn,
            true,
        );
        assert_intent(
            "no quiero volver a recibir mensajes",
            &NONE,
            Intent::OptOut,
            false,
        );
    }

    #[test]
    fn vague_and_split_revocations() {
        for text in [
            "sto p",
            "un subscribe",
            "no me sigan mandando textos",
            "basta de textos",
        ] {
            assert_intent(text, &NONE, Intent::OptOut, false);
        }
        assert_intent("nunca me vuelvan a escribir", &NONE, Intent::OptOut, false);
        assert_intent("I no longer consent to texts", &NONE, Intent::OptOut, false);
        for text in [
            "go away",
            "wrong #",
            "FIN",
            "no molesten",
            "ya no es mi numero",
        ] {
            assert_intent(text, &NONE, Intent::Other, true);
        }
        // A keyword split or run on with a word is not a near keyword.
        assert_intent("unsubscribe me", &NONE, Intent::OptOut, false);
        assert_intent("cancel it", &NONE, Intent::Other, true);
        assert_intent("take me off the recall list", &NONE, Intent::Other, true);
        assert_intent("I don't agree with this bill", &NONE, Intent::Other, false);
        assert_intent(
            "el doctor me dio de baja 3 dias",
            &NONE,
            Intent::Other,
            false,
        );
    }

    #[test]
    fn wrong_number_reports_and_negated_removals() {
        for text in [
            "I have never been a patient there",
            "this phone belongs to someone else",
            "se equivocaron de numero",
            "no conozco a esa persona",
        ] {
            assert_intent(text, &NONE, Intent::Other, true);
        }
        assert_intent("no me quiten de la lista", &NONE, Intent::Other, false);
        assert_intent("quitenme", &NONE, Intent::OptOut, false);
        assert_intent("remove from list", &NONE, Intent::OptOut, false);
        assert_intent(
            "ya no quiero estar en su lista",
            &NONE,
            Intent::OptOut,
            false,
        );
        assert_intent(
            "no quiero recibir mas facturas en papel",
            &NONE,
            Intent::Other,
            false,
        );
        assert_intent("I take back my permission", &NONE, Intent::OptOut, false);
        assert_intent(
            "stop texting my wife, text me instead",
            &NONE,
            Intent::Other,
            true,
        );
    }

    #[test]
    fn interjections_and_mentions() {
        assert_intent(
            "STOP - wait, I misread the time",
            &NONE,
            Intent::Other,
            true,
        );
        assert_intent("Stop, wrong number", &NONE, Intent::OptOut, false);
        assert_intent(
            "I sent STOP by mistake, can I have my texts back",
            &NONE,
            Intent::OptIn,
            true,
        );
        assert_intent("I texted STOP last week", &NONE, Intent::Other, true);
        assert_intent("had to stop at the pharmacy", &NONE, Intent::Other, false);
        assert_intent("so done with you people", &NONE, Intent::Other, true);
        assert_intent(
            "done with my antibiotics, now what",
            &NONE,
            Intent::Other,
            false,
        );
        assert_intent("Cancelar", &REMINDER, Intent::Other, true);
        assert_intent("Cancelar", &NONE, Intent::OptOut, false);
    }

    #[test]
    fn unclear_revocations_go_to_review() {
        for text in [
            "wrong number",
            "stop texting me after 8pm",
            "Please don't text me before 9",
            "stpo",
            "para",
            "why do you keep texting me",
            "remove me from the account",
            "\u{1F6D1}",
        ] {
            let got = classify(text, &NONE);
            assert!(got.review, "{text:?}: {:?}", got.reasons);
            assert_ne!(got.intent, Intent::OptOut, "{text:?}");
        }
    }

    #[test]
    fn reasons_never_quote_the_text() {
        for text in [
            "Maria Lopez stop texting me about my metformin",
            "STOP",
            "Jane: wrong number, stop",
            "cancel my colonoscopy",
        ] {
            let got = classify(text, &NONE);
            for r in &got.reasons {
                for word in ["maria", "lopez", "metformin", "jane", "colonoscopy"] {
                    assert!(!r.as_str().to_lowercase().contains(word), "{r}");
                }
            }
        }
    }

    #[test]
    fn odd_input_does_not_panic() {
        let long = "stop ".repeat(10_000);
        for text in [
            "",
            "   ",
            "\u{0}",
            "!!!",
            "\u{1F600}\u{1F600}",
            "\u{0301}",
            long.as_str(),
            "x\u{FDFA}",
        ] {
            let _ = classify(text, &NONE);
            let _ = classify(text, &REMINDER);
        }
        assert_intent("", &NONE, Intent::Other, false);
    }

    #[test]
    fn twilio_defaults_are_exact_single_words() {
        for k in [
            "STOP",
            "stop",
            " Stop\n",
            "STOPALL",
            "UNSUBSCRIBE",
            "CANCEL",
            "END",
            "QUIT",
            "REVOKE",
            "OPTOUT",
        ] {
            assert!(twilio_default_opt_out_keyword(k), "{k:?}");
        }
        for k in [
            "stop pls",
            "STOP!",
            "PARAR",
            "BAJA",
            "OPT OUT",
            "please stop",
        ] {
            assert!(!twilio_default_opt_out_keyword(k), "{k:?}");
        }
        assert!(twilio_default_help_keyword("info") && twilio_default_help_keyword("HELP"));
        assert!(!twilio_default_help_keyword("AYUDA"));
        for k in ["START", "yes", "Unstop"] {
            assert!(twilio_default_opt_in_keyword(k), "{k:?}");
        }
        assert!(!twilio_default_opt_in_keyword("SI") && !twilio_default_opt_in_keyword("START!"));
    }

    /// Every reply keyword and free-text example, with and without a reminder awaiting an
    /// answer: (text, without a reminder, with one).
    #[test]
    fn reply_matrix() {
        use ReplyIntent::*;
        type Want = (Intent, Option<ReplyIntent>);
        let other = |r: Option<ReplyIntent>| -> Want { (Intent::Other, r) };
        let cases: &[(&str, Want, Want)] = &[
            // Whole-message reply keywords: only while a reminder awaits.
            ("C", other(None), other(Some(Confirm))),
            ("c.", other(None), other(Some(Confirm))),
            ("Y", other(None), other(Some(Confirm))),
            ("1", other(None), other(Some(Confirm))),
            ("1 thanks", other(None), other(Some(Confirm))),
            ("CONFIRM", other(None), other(Some(Confirm))),
            ("Confirmed!", other(None), other(Some(Confirm))),
            ("confirmo", other(None), other(Some(Confirm))),
            ("OK", other(None), other(Some(Confirm))),
            ("okay", other(None), other(Some(Confirm))),
            ("YES", (Intent::OptIn, None), other(Some(Confirm))),
            ("yes please", (Intent::OptIn, None), other(Some(Confirm))),
            ("SI", (Intent::OptIn, None), other(Some(Confirm))),
            ("S\u{00CD}", (Intent::OptIn, None), other(Some(Confirm))),
            (
                "s\u{00ED} por favor",
                (Intent::OptIn, None),
                other(Some(Confirm)),
            ),
            ("X", other(None), other(Some(CancelVisit))),
            ("2", other(None), other(Some(CancelVisit))),
            ("R", other(None), other(Some(Reschedule))),
            ("3", other(None), other(Some(Reschedule))),
            ("Cancelar", (Intent::OptOut, None), other(Some(CancelVisit))),
            // Opt-out, help and opt-in words keep their meaning in every state.
            ("CANCEL", (Intent::OptOut, None), (Intent::OptOut, None)),
            ("STOP", (Intent::OptOut, None), (Intent::OptOut, None)),
            ("stop pls", (Intent::OptOut, None), (Intent::OptOut, None)),
            ("END", (Intent::OptOut, None), (Intent::OptOut, None)),
            ("PARAR", (Intent::OptOut, None), (Intent::OptOut, None)),
            (
                "UNSUBSCRIBE",
                (Intent::OptOut, None),
                (Intent::OptOut, None),
            ),
            ("HELP", (Intent::Help, None), (Intent::Help, None)),
            ("AYUDA", (Intent::Help, None), (Intent::Help, None)),
            ("START", (Intent::OptIn, None), (Intent::OptIn, None)),
            (
                "cancel my appointment and stop texting me",
                (Intent::OptOut, None),
                (Intent::OptOut, None),
            ),
            // Free text: in both states.
            (
                "can't make it tuesday",
                other(Some(Reschedule)),
                other(Some(Reschedule)),
            ),
            (
                "need to reschedule",
                other(Some(Reschedule)),
                other(Some(Reschedule)),
            ),
            (
                "can we move my appointment to friday?",
                other(Some(Reschedule)),
                other(Some(Reschedule)),
            ),
            (
                "necesito cambiar mi cita",
                other(Some(Reschedule)),
                other(Some(Reschedule)),
            ),
            (
                "no puedo ir el martes",
                other(Some(Reschedule)),
                other(Some(Reschedule)),
            ),
            (
                "please cancel my appointment and reschedule for next week",
                other(Some(Reschedule)),
                other(Some(Reschedule)),
            ),
            ("running 10 min late", other(Some(Late)), other(Some(Late))),
            ("llego tarde", other(Some(Late)), other(Some(Late))),
            ("voy tarde", other(Some(Late)), other(Some(Late))),
            (
                "stuck in traffic be there in 15",
                other(Some(Late)),
                other(Some(Late)),
            ),
            (
                "I can't make it on time, sorry",
                other(Some(Late)),
                other(Some(Late)),
            ),
            (
                "please cancel my appointment tuesday",
                other(Some(CancelVisit)),
                other(Some(CancelVisit)),
            ),
            (
                "cancelar mi cita",
                other(Some(CancelVisit)),
                other(Some(CancelVisit)),
            ),
            (
                "I need to cancel, I'm sick",
                other(Some(CancelVisit)),
                other(Some(CancelVisit)),
            ),
            ("see you then", other(Some(Confirm)), other(Some(Confirm))),
            ("I'll be there", other(Some(Confirm)), other(Some(Confirm))),
            (
                "ah\u{00ED} estar\u{00E9}",
                other(Some(Confirm)),
                other(Some(Confirm)),
            ),
            (
                "I'll be there but running 5 minutes late",
                other(Some(Late)),
                other(Some(Late)),
            ),
            // Not replies.
            (
                "can you confirm my appointment time?",
                other(None),
                other(None),
            ),
            ("I won't be late", other(None), other(None)),
            ("don't cancel my appointment", other(None), other(None)),
            ("is there a late fee?", other(None), other(None)),
            ("what time is my appointment", other(None), other(None)),
            ("stop by the office?", other(None), other(None)),
        ];
        for (text, without, with) in cases {
            for (ctx, want) in [(NONE, without), (REMINDER, with)] {
                let got = classify(text, &ctx);
                assert_eq!(
                    (got.intent, got.reply),
                    *want,
                    "{text:?} reminder={}: {:?}",
                    ctx.reminder_awaiting_answer,
                    got.reasons
                );
                // A reply comes only with intent Other.
                assert!(got.reply.is_none() || got.intent == Intent::Other);
            }
        }
    }

    #[test]
    fn reply_names_and_serde() {
        for r in ReplyIntent::ALL {
            assert_eq!(ReplyIntent::parse(r.as_str()), Some(r));
            assert_eq!(
                serde_json::to_string(&r).unwrap(),
                format!("\"{}\"", r.as_str())
            );
        }
        let json = serde_json::to_value(classify("2", &REMINDER)).unwrap();
        assert_eq!(json["reply"], "cancel_visit");
        assert_eq!(json["intent"], "other");
        let json = serde_json::to_value(classify("STOP", &REMINDER)).unwrap();
        assert!(json["reply"].is_null());
    }

    #[test]
    fn intent_names() {
        for i in Intent::ALL {
            assert_eq!(Intent::parse(i.as_str()), Some(i));
        }
        assert_eq!(Intent::OptOut.as_str(), "optout");
    }
}

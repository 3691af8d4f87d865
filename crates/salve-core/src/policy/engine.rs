//! `classify`: the allow-list decides, the vocabularies explain.

use super::allow::{self, Kinds};
use super::text::{self, Kind, SLOT, Shape, Token};
use super::{ClassifyContext, Decision, FilledValue, Reason, Route};
use super::{frames, scorer, vocab};

/// Most unrecognised words named in one `not_allow_listed` reason.
const MAX_UNKNOWN_SHOWN: usize = 5;
/// Most misspelt words one text may have and still be recognised.
const MAX_TYPOS: usize = 3;

fn reason(rule: &str, matched: impl Into<String>, explanation: String) -> Reason {
    Reason {
        rule: rule.to_owned(),
        matched_text: matched.into(),
        explanation,
    }
}

/// May `text` go by plain SMS? Pure: the same input always gives the same decision.
pub fn classify(text: &str, ctx: &ClassifyContext) -> Decision {
    classify_traced(text, ctx).0
}

/// What the rules said before the learned scorer had its say: for the scorer's training script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trace {
    /// The rules sent the text secure for unrecognised words only, none medical-looking, so
    /// the scorer was asked whether it is direct.
    pub scorer_asked: bool,
    /// The rules said direct, so the scorer was asked whether it is secure.
    pub rules_direct: bool,
}

/// [`classify`], and what the rules said before the learned scorer.
pub fn classify_traced(text: &str, ctx: &ClassifyContext) -> (Decision, Trace) {
    let mut reasons: Vec<Reason> = Vec::new();
    if ctx.has_attachment {
        reasons.push(reason(
            "attachment",
            "",
            "has an attachment (attachments only go through the secure portal)".into(),
        ));
    }
    for value in &ctx.values {
        if value.kind.is_catalog() && !value.sms_safe {
            reasons.push(reason(
                "value_not_sms_safe",
                value.text.clone(),
                format!(
                    "the {} \"{}\" is not marked SMS-safe",
                    value.kind.label(),
                    value.text
                ),
            ));
        }
    }
    if let Some(name) = &ctx.sender_name {
        reasons.extend(check_sender_name(name));
    }

    // Every word is scanned, filled-in values included: a value marked SMS-safe by mistake
    // ("Oncology, 2nd floor") still names a specialty.
    let reading = frames::read(text);
    let folded = reading.folded.as_str();
    let mut hits = vocab::find(folded);
    // "the pharmacy drive-thru", "check-in tablets": the neighbours say these are not clinical.
    hits.retain(|h| {
        !h.text
            .split(' ')
            .any(|w| reading.excused.iter().any(|e| e == w))
    });
    for hit in &hits {
        let r = reason(
            hit.category.rule,
            hit.text.clone(),
            format!("mentions {} ({})", hit.category.what, hit.text),
        );
        if !reasons.contains(&r) {
            reasons.push(r);
        }
    }

    for signal in &reading.signals {
        let r = reason(
            signal.category.rule,
            signal.text.clone(),
            format!("mentions {} ({})", signal.category.what, signal.text),
        );
        if !reasons.contains(&r) {
            reasons.push(r);
        }
    }

    let masked = mask_values(text, &ctx.values);
    let tokens = text::tokenize(&masked);
    let mut excused = vocab::benign_words(folded);
    excused.extend(reading.excused.iter().map(String::as_str));
    let mut check = allow_check(&tokens, &excused);
    // Misspellings of allowed words ("reminer") are looked for last, and only when nothing else
    // keeps the text secure: the search tries a few hundred variants of each word.
    if reasons.is_empty() && !check.unknown.is_empty() && check.unknown.len() <= MAX_TYPOS {
        let corrected: Vec<_> = check.unknown.iter().map(|w| allow::typo_of(w)).collect();
        if corrected.iter().all(Option::is_some) {
            corrected
                .into_iter()
                .flatten()
                .for_each(|k| check.kinds.add(k));
            check.unknown.clear();
        }
    }
    if tokens.is_empty() {
        reasons.push(reason(
            "not_allow_listed",
            "",
            "has no text to recognise as an SMS-safe kind".into(),
        ));
    } else if !check.unknown.is_empty() {
        // Words a vocabulary already explained are not repeated here.
        let explained: Vec<&str> = hits
            .iter()
            .flat_map(|h| h.text.split(' '))
            .chain(reading.signals.iter().flat_map(|s| s.text.split(' ')))
            .collect();
        let mut shown: Vec<&str> = Vec::new();
        for word in &check.unknown {
            if !explained.contains(&word.as_str()) && !shown.contains(&word.as_str()) {
                shown.push(word);
            }
        }
        if !shown.is_empty() {
            shown.truncate(MAX_UNKNOWN_SHOWN);
            let list = shown.join(", ");
            reasons.push(reason(
                "not_allow_listed",
                list.clone(),
                format!("is not recognised as an SMS-safe kind (unrecognised words: {list})"),
            ));
        }
    }

    // Every word allowed is not enough: the text must also read as one of the SMS-safe kinds
    // ("Your boot can come off next week" names none). A clock time is appointment logistics.
    if reasons.is_empty() && check.kinds.iter().next().is_none() && !has_clock_time(text) {
        reasons.push(reason(
            "not_allow_listed",
            "",
            "is not recognised as an SMS-safe kind (no word of appointment logistics, a call \
             request, a document received, an announcement or practice administration)"
                .into(),
        ));
    }
    let scorer_asked = !reasons.is_empty() && scorer_may_judge(text, &reasons, &check);
    let rules_direct = reasons.is_empty();
    let decision = if let Some(d) = rules_direct.then(|| learned_secure(text)).flatten() {
        d
    } else if rules_direct {
        let labels: Vec<&str> = check.kinds.iter().map(|k| k.label()).collect();
        let reasons = if labels.is_empty() {
            Vec::new()
        } else {
            let list = labels.join(", ");
            vec![reason(
                "allow_listed",
                list.clone(),
                format!("recognised as {list}"),
            )]
        };
        Decision {
            route: Route::Direct,
            reasons,
        }
    } else if let Some(d) = scorer_asked
        .then(|| learned_direct(text, &reasons, &check))
        .flatten()
    {
        d
    } else {
        Decision {
            route: Route::Secure,
            reasons,
        }
    };
    (
        decision,
        Trace {
            scorer_asked,
            rules_direct,
        },
    )
}

/// Asked about every text the rules send direct: secure when the scorer is confident it is
/// secure. It only ever adds security, so it needs no gate; its reason names the words that
/// weighed most, so staff can see why.
fn learned_secure(text: &str) -> Option<Decision> {
    let v = scorer::confidently_secure(text)?;
    let words = v
        .words
        .iter()
        .map(|w| format!("\"{w}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let why = if words.is_empty() {
        String::new()
    } else {
        format!("; the words that weighed most: {words}")
    };
    Some(Decision {
        route: Route::Secure,
        reasons: vec![reason(
            "learned_secure",
            v.words.join(", "),
            format!(
                "no rule matched, but the wording reads like a clinical message to the learned \
                 check ({:.1}% confident){why}",
                v.probability * 100.0
            ),
        )],
    })
}

/// The learned scorer may overturn a Secure decision only when its every reason is unrecognised
/// words (never a vocabulary term, frame, attachment, template value or sender name).
fn scorer_may_judge(text: &str, reasons: &[Reason], check: &AllowCheck) -> bool {
    let only_unknown_words = !reasons.is_empty()
        && reasons
            .iter()
            .all(|r| r.rule == "not_allow_listed" && !r.matched_text.is_empty());
    // An unrecognised word that is a vocabulary term, never allowed, or built like a medical
    // term ("colposcopy", "mamograma"), or an acronym ("RSV") is where the clinical sense is:
    // the scorer, which knows only the words it was trained on, cannot judge it. (Frequent
    // words that only sometimes have a health sense, "broken", "take", are left to it: gating
    // them too cost most of its gain in leave-one-set-out runs, and no recall.)
    only_unknown_words
        && !check.unknown.iter().any(|w| allow::is_medical_word(w))
        && !has_unknown_acronym(text, &check.unknown)
}

/// Asked only when [`scorer_may_judge`]: direct when the scorer is confident. The decision names
/// the words and the scorer.
fn learned_direct(text: &str, reasons: &[Reason], check: &AllowCheck) -> Option<Decision> {
    let p = scorer::confidently_direct(text)?;
    let words: Vec<&str> = reasons.iter().map(|r| r.matched_text.as_str()).collect();
    let words = words.join(", ");
    let labels: Vec<&str> = check.kinds.iter().map(|k| k.label()).collect();
    let read_as = if labels.is_empty() {
        "an SMS-safe kind".to_owned()
    } else {
        labels.join(", ")
    };
    Some(Decision {
        route: Route::Direct,
        reasons: vec![reason(
            "learned_direct",
            words.clone(),
            format!(
                "no clinical term found; the unrecognised words ({words}) were judged SMS-safe \
                 by the learned scorer ({:.1}% confident), read as {read_as}",
                p * 100.0
            ),
        )],
    })
}

/// Whether an unrecognised word is written as an acronym ("RSV", "HPV"): two to five capitals.
fn has_unknown_acronym(text: &str, unknown: &[String]) -> bool {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| (2..=5).contains(&w.len()) && w.chars().all(|c| c.is_ascii_uppercase()))
        .any(|w| unknown.iter().any(|u| u.eq_ignore_ascii_case(w)))
}

/// Whether the text gives a clock time ("10:45", "9am", "3 p.m."): a visit's time.
fn has_clock_time(text: &str) -> bool {
    let b = text.as_bytes();
    let lower = text.to_ascii_lowercase();
    let l = lower.as_bytes();
    (0..b.len()).any(|i| {
        if !b[i].is_ascii_digit() || (i > 0 && b[i - 1].is_ascii_digit()) {
            return false;
        }
        let mut j = i;
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
        if j - i > 2 {
            return false;
        }
        if b.get(j) == Some(&b':')
            && b.get(j + 1).is_some_and(u8::is_ascii_digit)
            && b.get(j + 2).is_some_and(u8::is_ascii_digit)
            && !b.get(j + 3).is_some_and(u8::is_ascii_digit)
        {
            return true;
        }
        let rest = &l[j..];
        let rest = rest.strip_prefix(b" ").unwrap_or(rest);
        ["am", "pm", "a.m", "p.m"].iter().any(|m| {
            rest.starts_with(m.as_bytes())
                && !rest.get(m.len()).is_some_and(|c| c.is_ascii_alphanumeric())
        })
    })
}

/// Reasons why a practice's texted sender name would reveal health information (empty when it
/// is fine). Used at save time and for every classification.
pub fn check_sender_name(name: &str) -> Vec<Reason> {
    let mut reasons: Vec<Reason> = Vec::new();
    for hit in vocab::find(&text::fold(name)) {
        let r = reason(
            "sender_name",
            hit.text.clone(),
            format!(
                "the sender name mentions {} ({})",
                hit.category.what, hit.text
            ),
        );
        if !reasons.contains(&r) {
            reasons.push(r);
        }
    }
    reasons
}

/// The text with every filled-in value replaced by one slot marker: a value was judged through
/// its catalog flag (or is a name, date or link the template put there), not word by word.
fn mask_values(text: &str, values: &[FilledValue]) -> String {
    let mut out = text.to_owned();
    let mut values: Vec<&str> = values
        .iter()
        .map(|v| v.text.trim())
        .filter(|t| !t.is_empty())
        .collect();
    // Longest first, so a value inside another is not masked half-way.
    values.sort_by_key(|v| std::cmp::Reverse(v.len()));
    for value in values {
        // Same bytes up to ASCII case: byte offsets agree between the two strings.
        let lower_out = out.to_ascii_lowercase();
        let lower_value = value.to_ascii_lowercase();
        let mut result = String::with_capacity(out.len());
        let mut last = 0;
        for (at, _) in lower_out.match_indices(&lower_value) {
            let end = at + lower_value.len();
            // Whole words only: a first name "An" must not hide the "an" of "scan".
            let before = out[..at].chars().next_back();
            let after = out[end..].chars().next();
            let inside_word = |c: Option<char>| c.is_some_and(char::is_alphanumeric);
            if at < last
                || inside_word(before) && value.starts_with(char::is_alphanumeric)
                || inside_word(after) && value.ends_with(char::is_alphanumeric)
            {
                continue;
            }
            result.push_str(&out[last..at]);
            result.push(SLOT);
            last = end;
        }
        result.push_str(&out[last..]);
        out = result;
    }
    out
}

struct AllowCheck {
    kinds: Kinds,
    /// Folded words that are neither on the allow-list nor names.
    unknown: Vec<String>,
}

fn allow_check(tokens: &[Token], excused: &[&str]) -> AllowCheck {
    let mut kinds = Kinds::default();
    let mut unknown = Vec::new();
    // Whether each token was accepted as a name (for "Dr. Maria Lopez").
    let mut name = vec![false; tokens.len()];
    for (i, token) in tokens.iter().enumerate() {
        let Kind::Word { folded, shape } = &token.kind else {
            continue;
        };
        if let Some(k) = allow::lookup(folded) {
            kinds.add(k);
            continue;
        }
        if folded.chars().count() == 1 || excused.contains(&folded.as_str()) {
            continue;
        }
        if is_name(tokens, i, folded, *shape, &name) {
            name[i] = true;
            continue;
        }
        unknown.push(folded.clone());
    }
    AllowCheck { kinds, unknown }
}

/// A capitalised word the allow-list does not know is taken as a person's or a place's name
/// only where names go: after a title, greeting or "with"/"at", beside another name or a house
/// number, or before "Street"/"Clinic". Elsewhere an unknown word keeps the text secure.
fn is_name(tokens: &[Token], i: usize, folded: &str, shape: Shape, name: &[bool]) -> bool {
    let prev = i.checked_sub(1).map(|p| (&tokens[p], name[p]));
    let prev_word = prev.and_then(|(t, _)| match &t.kind {
        Kind::Word { folded, shape } => Some((folded.as_str(), *shape, t.sentence_start)),
        _ => None,
    });
    let token = &tokens[i];
    // A title makes even a lower-case word a name ("dr. lee").
    if let Some((w, _, _)) = prev_word
        && matches!(
            w,
            "dr" | "dra" | "doctor" | "doctora" | "mr" | "mrs" | "ms" | "sr" | "sra" | "srta"
        )
        && !token.sentence_start
    {
        return true;
    }
    if shape != Shape::Capitalized || allow::is_health_word(folded) {
        return false;
    }
    if token.sentence_start {
        // "Maria, your appointment ...", "Maple Grove Health Partners is ..."
        return token.comma_after || next_trails(tokens, i) || next_capitalized(tokens, i);
    }
    if let Some((p, was_name)) = prev {
        if was_name || matches!(p.kind, Kind::Number | Kind::Slot) {
            return true;
        }
        if let Some((w, pshape, pstart)) = prev_word {
            if allow::leads_to_name(w) && !p.comma_after {
                return true;
            }
            // "Riverside Family Medicine": a run of capitalised words inside a sentence.
            if pshape == Shape::Capitalized && !pstart {
                return true;
            }
        }
        if p.comma_after {
            // "Thanks, Maria" / "..., Oak Street Clinic"
            return true;
        }
    }
    next_trails(tokens, i)
}

fn next_capitalized(tokens: &[Token], i: usize) -> bool {
    matches!(
        tokens.get(i + 1),
        Some(Token {
            kind: Kind::Word {
                shape: Shape::Capitalized,
                ..
            },
            sentence_start: false,
            ..
        })
    )
}

fn next_trails(tokens: &[Token], i: usize) -> bool {
    matches!(tokens.get(i + 1), Some(Token { kind: Kind::Word { folded, .. }, sentence_start: false, .. }) if allow::trails_name(folded))
}

#[cfg(test)]
mod tests {
    use super::super::ValueKind;
    use super::*;

    fn route(text: &str) -> Route {
        classify(text, &ClassifyContext::default()).route
    }

    fn rules(d: &Decision) -> Vec<&str> {
        d.reasons.iter().map(|r| r.rule.as_str()).collect()
    }

    #[test]
    fn appointment_reminder_goes_direct() {
        let d = classify(
            "Hi Maria, this is a reminder of your appointment with Dr. Okafor on Tuesday, March 4 at 10:30 AM at 1200 Oak Street, Suite 200. Reply C to confirm.",
            &ClassifyContext::default(),
        );
        assert_eq!(d.route, Route::Direct, "{:?}", d.reasons);
        assert_eq!(rules(&d), ["allow_listed"]);
    }

    const RESTRIPED: &str =
        "Our parking lot will be restriped Saturday, please park on the street.";

    #[test]
    fn learned_scorer_may_clear_unrecognised_words_only() {
        // The rules alone send it secure: "restriped" is on no list.
        let d = classify(RESTRIPED, &ClassifyContext::default());
        assert_eq!(d.route, Route::Direct, "{:?}", d.reasons);
        assert_eq!(rules(&d), ["learned_direct"]);
        assert_eq!(d.reasons[0].matched_text, "restriped");
        assert!(d.reasons[0].explanation.contains("learned scorer"));

        // Never over an attachment, an unsafe value or a clinical term.
        let attached = ClassifyContext {
            has_attachment: true,
            ..Default::default()
        };
        let d = classify(RESTRIPED, &attached);
        assert_eq!(d.route, Route::Secure);
        assert!(!rules(&d).contains(&"learned_direct"));
        let unsafe_value = ClassifyContext {
            values: vec![FilledValue {
                kind: ValueKind::Location,
                text: "the street".into(),
                sms_safe: false,
            }],
            ..Default::default()
        };
        assert_eq!(classify(RESTRIPED, &unsafe_value).route, Route::Secure);
        let d = classify(
            "Our parking lot will be restriped Saturday, please park on the street and bring your inhaler.",
            &ClassifyContext::default(),
        );
        assert_eq!(d.route, Route::Secure);
        assert!(rules(&d).contains(&"preparation"), "{:?}", d.reasons);
        assert!(!rules(&d).contains(&"learned_direct"));
    }

    #[test]
    fn learned_scorer_never_judges_medical_looking_words_or_acronyms() {
        for text in [
            "You're on our cancellation list for an earlier colposcopy with Dr. Kowalczyk. We'll text you the moment something opens.",
            "Hola, soy Lupita de recepción. Por favor llámenos sobre su mamograma al 555-0144.",
            "We have a few RSV spots left this season; want us to save you one?",
            // Lost items and records that reveal a condition or a vaccine (new authors' misses).
            "Sra. Aguilar, encontramos un bastón gris en el estacionamiento. Si es suyo, lo tenemos en la recepción.",
            "Just a reminder that Mia's well-child visit is Wed at 9:30 with Dr. Hargrove. Bring her shot record please!",
        ] {
            let d = classify(text, &ClassifyContext::default());
            assert_eq!(d.route, Route::Secure, "{text}: {:?}", d.reasons);
        }
        let words = ["rsv".to_owned()];
        assert!(has_unknown_acronym("A few RSV spots", &words));
        assert!(!has_unknown_acronym("A few rsv spots", &words));
    }

    #[test]
    fn learned_scorer_leaves_clinical_plain_words_secure() {
        for text in [
            "Your shingles look better, keep the cream on.",
            "Dr. Ruiz wants to see you sooner about what came back.",
            "Keep it elevated and iced tonight, and no weight on it until Friday.",
        ] {
            assert_eq!(route(text), Route::Secure, "{text}");
        }
    }

    #[test]
    fn learned_check_secures_a_plain_words_clinical_message_the_rules_allow() {
        let text = "Dr. Ames wants you to wear the monitor for two days starting Friday.";
        let (d, trace) = classify_traced(text, &ClassifyContext::default());
        assert!(trace.rules_direct);
        assert_eq!(d.route, Route::Secure, "{:?}", d.reasons);
        assert_eq!(rules(&d), ["learned_secure"]);
        let r = &d.reasons[0];
        assert!(
            r.explanation.contains("clinical message"),
            "{}",
            r.explanation
        );
        assert!(r.explanation.contains("% confident"), "{}", r.explanation);
        // It names the text's own words, each of them in the explanation.
        assert!(!r.matched_text.is_empty());
        for w in r.matched_text.split(", ") {
            assert!(text.contains(w), "{w}");
            assert!(
                r.explanation.contains(&format!("\"{w}\"")),
                "{}",
                r.explanation
            );
        }
    }

    #[test]
    fn learned_check_leaves_plain_administration_direct() {
        for text in [
            "Our office will be closed Monday for the holiday.",
            "The parking lot is closed Saturday, please park on the street.",
        ] {
            let d = classify(text, &ClassifyContext::default());
            assert_eq!(d.route, Route::Direct, "{text}: {:?}", d.reasons);
            assert_eq!(rules(&d), ["allow_listed"]);
        }
    }

    /// The learned secure check only ever adds security: it is asked only about what the rules
    /// allow, and its answer is always Secure.
    #[test]
    fn learned_check_never_makes_a_message_less_secure() {
        let eval = include_str!("../../data/policy/eval.jsonl");
        let mut flipped = 0;
        for line in eval.lines().filter(|l| !l.trim().is_empty()) {
            let case: serde_json::Value = serde_json::from_str(line).unwrap();
            let text = case["text"].as_str().unwrap();
            let (d, trace) = classify_traced(text, &ClassifyContext::default());
            if rules(&d).contains(&"learned_secure") {
                assert!(trace.rules_direct, "{text}");
                assert_eq!(d.route, Route::Secure, "{text}");
                flipped += 1;
            }
            if !trace.rules_direct && !rules(&d).contains(&"learned_direct") {
                assert_eq!(d.route, Route::Secure, "{text}");
            }
        }
        // Text the rules send secure with clinical words stays secure under its rules' reasons.
        let d = classify(
            "Please call us about your results when you can.",
            &ClassifyContext::default(),
        );
        assert_eq!(d.route, Route::Secure);
        assert!(!rules(&d).contains(&"learned_secure"), "{:?}", d.reasons);
        assert!(flipped < 20, "{flipped}");
    }

    #[test]
    fn attachment_is_secure() {
        let ctx = ClassifyContext {
            has_attachment: true,
            ..Default::default()
        };
        let d = classify("We received your form.", &ctx);
        assert_eq!(d.route, Route::Secure);
        assert_eq!(rules(&d), ["attachment"]);
    }

    #[test]
    fn value_not_sms_safe_is_secure() {
        let ctx = ClassifyContext {
            values: vec![FilledValue {
                kind: ValueKind::Location,
                text: "Cancer Center, 3rd floor".into(),
                sms_safe: false,
            }],
            ..Default::default()
        };
        let d = classify(
            "Your appointment is tomorrow at 9 AM at Cancer Center, 3rd floor.",
            &ctx,
        );
        assert_eq!(d.route, Route::Secure);
        assert!(rules(&d).contains(&"value_not_sms_safe"));
        assert!(rules(&d).contains(&"specialty"), "{:?}", d.reasons);
    }

    #[test]
    fn safe_values_are_masked() {
        let ctx = ClassifyContext {
            values: vec![
                FilledValue {
                    kind: ValueKind::Location,
                    text: "Bldg Q7 Annex".into(),
                    sms_safe: true,
                },
                FilledValue {
                    kind: ValueKind::Other,
                    text: "zyx".into(),
                    sms_safe: false,
                },
            ],
            ..Default::default()
        };
        let d = classify(
            "Hi zyx, your appointment is at Bldg Q7 Annex tomorrow.",
            &ctx,
        );
        assert_eq!(d.route, Route::Direct, "{:?}", d.reasons);
    }

    #[test]
    fn values_are_masked_as_whole_words_only() {
        let ctx = ClassifyContext {
            values: vec![FilledValue {
                kind: ValueKind::Other,
                text: "An".into(),
                sms_safe: false,
            }],
            ..Default::default()
        };
        assert_eq!(
            classify("Hi An, about your scan.", &ctx).route,
            Route::Secure
        );
        assert_eq!(
            mask_values("Hi An, an answer", &ctx.values),
            "Hi \u{E000}, \u{E000} answer"
        );
    }

    #[test]
    fn provider_name_and_street_address_are_fine() {
        assert_eq!(
            route(
                "Your appointment with Dr. Priya Raman is at 45 Elmwood Avenue on Friday at 2 PM."
            ),
            Route::Direct
        );
        assert_eq!(
            route("Su cita con la Dra. Beatriz Solano es el viernes a las 2 PM en 45 Calle Olmo."),
            Route::Direct
        );
    }

    #[test]
    fn specialty_in_free_text_is_secure() {
        let d = classify(
            "Your appointment at the oncology clinic is Friday at 2 PM.",
            &ClassifyContext::default(),
        );
        assert_eq!(d.route, Route::Secure);
        assert_eq!(d.reasons[0].rule, "specialty");
        assert_eq!(d.reasons[0].matched_text, "oncology");
        assert_eq!(d.reasons[0].explanation, "mentions a specialty (oncology)");
    }

    #[test]
    fn sender_name_is_checked() {
        assert!(check_sender_name("Oak Street Clinic").is_empty());
        let r = check_sender_name("Riverside Oncology");
        assert_eq!(r.len(), 1);
        assert_eq!(
            (r[0].rule.as_str(), r[0].matched_text.as_str()),
            ("sender_name", "oncology")
        );
        let ctx = ClassifyContext {
            sender_name: Some("Riverside Oncology".into()),
            ..Default::default()
        };
        assert_eq!(
            classify("Our office is closed on Monday.", &ctx).route,
            Route::Secure
        );
        let ctx = ClassifyContext {
            sender_name: Some("Oak Street Clinic".into()),
            ..Default::default()
        };
        assert_eq!(
            classify("Our office is closed on Monday.", &ctx).route,
            Route::Direct
        );
    }

    #[test]
    fn spanish_with_and_without_accents() {
        for text in [
            "Recordatorio: su cita es mañana a las 9:00 a.m. Responda C para confirmar.",
            "Recordatorio: su cita es manana a las 9:00 a.m. Responda C para confirmar.",
        ] {
            assert_eq!(route(text), Route::Direct, "{text}");
        }
        for text in [
            "Sus resultados de laboratorio están listos.",
            "Sus resultados de laboratorio estan listos.",
        ] {
            let d = classify(text, &ClassifyContext::default());
            assert_eq!(d.route, Route::Secure);
            assert!(rules(&d).contains(&"test_or_result"));
        }
        let d = classify("Recuerde venir en ayunas.", &ClassifyContext::default());
        assert_eq!(d.route, Route::Secure);
        assert!(rules(&d).contains(&"preparation"));
    }

    #[test]
    fn empty_text_is_secure() {
        for text in ["", "   ", "\n"] {
            let d = classify(text, &ClassifyContext::default());
            assert_eq!(d.route, Route::Secure);
            assert_eq!(rules(&d), ["not_allow_listed"]);
        }
    }

    #[test]
    fn very_long_text_is_handled() {
        let safe = "Your appointment is on Monday at 9 AM. ".repeat(5_000);
        assert_eq!(route(&safe), Route::Direct);
        let unsafe_ = format!("{safe}Please keep taking your metformin.");
        let d = classify(&unsafe_, &ClassifyContext::default());
        assert_eq!(d.route, Route::Secure);
        assert!(d.reasons.iter().any(|r| r.matched_text == "metformin"));
    }

    #[test]
    fn reasons_name_the_matched_words() {
        let d = classify(
            "Please call about your MRI results and your lisinopril.",
            &ClassifyContext::default(),
        );
        let matched: Vec<(&str, &str)> = d
            .reasons
            .iter()
            .map(|r| (r.rule.as_str(), r.matched_text.as_str()))
            .collect();
        assert_eq!(
            matched,
            [
                ("test_or_result", "mri"),
                ("test_or_result", "results"),
                ("medication", "lisinopril")
            ]
        );
        assert_eq!(
            d.reasons[2].explanation,
            "mentions a medication (lisinopril)"
        );
    }

    /// Written beside the rules, not taken from the evaluation sets: clinical content in
    /// everyday words must still go secure.
    #[test]
    fn hard_secure_cases() {
        for text in [
            "Dr. Lee wants to go over your scan with you.",
            "Please remember to take it with food.",
            "The swelling should go down in a few days.",
            "Your sugar was a bit high, call us.",
            "Your referral was approved.",
            "Your therapist will see you Tuesday at 4.",
            "Group session moved to Thursday at 6 PM.",
            "Your weigh-in is Monday at 9.",
            "Your appointment with the midwife is Friday.",
            "You were diagnosed last year, so we need an update.",
            "Are you still feeling dizzy?",
            "Your baby's next visit is on the 5th.",
            "Your dosing schedule changed.",
            "Don't eat anything after midnight before your visit.",
            "Have someone drive you home after your appointment.",
            "We found your CPAP mask in the waiting room.",
            "Your prescription is ready for pickup.",
            "Your lab results are normal.",
            "Su prueba salió negativa.",
            "¿Cómo se ha sentido con el nuevo tratamiento?",
            "Su cita prenatal es el lunes.",
            "Traiga a alguien que la lleve a casa después del procedimiento.",
            "Su bebé necesita sus vacunas.",
            "No coma nada después de la medianoche.",
            "Take two every six hours as needed.",
            "Congrats on the good news! See you at 8 weeks.",
            "We called in your new script.",
            "Please wear a sports bra to your appointment.",
            "Dr. Shah wants you to come in to talk about what we found.",
            "No tenga relaciones por 7 días.",
            "Póngale hielo 20 minutos.",
        ] {
            let d = classify(text, &ClassifyContext::default());
            assert_eq!(d.route, Route::Secure, "{text}");
        }
    }

    /// Also written beside the rules: everyday practice messages in both languages, including
    /// Spanish verb forms and texting style.
    #[test]
    fn everyday_direct_cases() {
        for text in [
            "Your appt on Friday was cancelled per your request. Call us to rebook.",
            "We'll be closed Monday for Memorial Day. Have a great weekend!",
            "Please upload a photo of the front and back of your insurance card.",
            "Dr. Ng is on vacation next week; Dr. Alvarez is covering.",
            "Hey! It's Sam from Oak Street Clinic. Can you call us back when you get a sec?",
            "Vamos 15 minutos atrasados. ¡Disculpe la espera!",
            "Nos ayudaría mucho una reseña en Google.",
            "Recibimos su mensaje de voz y le devolveremos la llamada en un día hábil.",
            "hola, su cita es mañana a las 10, conteste C para confirmar porfa",
            "Su appointment es mañana, please llegue 10 min antes.",
        ] {
            let d = classify(text, &ClassifyContext::default());
            assert_eq!(d.route, Route::Direct, "{text}: {:?}", d.reasons);
        }
    }

    /// Health words are never excused as names: a capitalised clinic kind is what it says.
    #[test]
    fn health_words_are_not_names() {
        for text in [
            "Anticoagulation Clinic moved your visit to Tuesday.",
            "Appointment reminder: Tue 3:40 PM at Bridgeway Recovery Services, 16 Dock St.",
        ] {
            assert_eq!(route(text), Route::Secure, "{text}");
        }
        assert_eq!(
            route("Happy holidays from everyone at Lakeview Family Medicine!"),
            Route::Direct
        );
    }

    /// One slip of the keyboard on an allowed word is still that word; never on a health word.
    #[test]
    fn misspellings_of_allowed_words() {
        assert_eq!(
            route("Reminer: yor appt is tmrw at 9:15 w/ Dr Bianchi. Reply C to confim"),
            Route::Direct
        );
        for text in [
            "Please return the stool card by Friday.",
            "Your resluts are in.",
        ] {
            assert_eq!(route(text), Route::Secure, "{text}");
        }
    }

    /// Everyday words in a clinical frame: each reason names the frame's words.
    #[test]
    fn frames_explain_themselves() {
        for (text, rule, matched) in [
            ("Dr. Ames reviewed your echo.", "clinical_item", "your echo"),
            (
                "Please wear shorts on Monday.",
                "preparation",
                "wear shorts",
            ),
            (
                "No desayune el martes antes de su cita.",
                "preparation",
                "no desayune",
            ),
            (
                "Bring someone with you on Friday.",
                "preparation",
                "bring someone",
            ),
            (
                "Su carta para el trabajo está lista.",
                "medical_paperwork",
                "carta para el trabajo",
            ),
            (
                "We got your payment for the consult.",
                "billing_names_service",
                "payment for consult",
            ),
            (
                "We need to talk about your last visit.",
                "clinical_reason",
                "talk about your last visit",
            ),
        ] {
            let d = classify(text, &ClassifyContext::default());
            assert_eq!(d.route, Route::Secure, "{text}");
            let r = d.reasons.iter().find(|r| r.rule == rule).expect(text);
            assert_eq!(r.matched_text, matched, "{text}");
            assert!(r.explanation.starts_with("mentions "), "{}", r.explanation);
        }
    }

    /// Words clinical in some places only follow their neighbours, both ways.
    #[test]
    fn context_words() {
        for text in [
            "Take our 2-minute survey: https://survey.example/q",
            "Log in a few minutes early to test your camera and mic.",
            "Use the side door by the pharmacy drive-thru.",
            "Our check-in tablets are down today.",
            "Positive feedback helps other families find us!",
            "La Dra. Montalvo está enferma hoy. Le llamamos para cambiar su cita.",
            "We're open Friday with normal hours.",
            "El consultorio abre en horario normal el lunes.",
            "¿Le queda bien la cita del martes a las 3?",
            "We got your message and a nurse will call you back this afternoon.",
            "Recibimos su mensaje. La enfermera le llamará esta tarde.",
            "Reminder from Mountain View Community Health: our lobby opens at 8.",
            "Recibimos su formulario de autorización firmado.",
            "The parking validation machine is broken today.",
            "We found a pair of reading glasses in the lobby.",
            "Someone left a water bottle at the front desk.",
            "Wheelchairs are available at the lobby entrance.",
            "Your son's sports physical is Monday at 3:40.",
            "Dr. Walsh is running late due to an emergency at the hospital.",
            "Hi, we're missing your date of birth on the new patient form.",
            "Su pago de $55 por mensaje de texto fue recibido.",
            "Su solicitud para el programa de descuento fue aprobada.",
            "El Dr. Leal tiene una cita libre el jueves a las 4.",
            "Hoy abrimos a las 11 por la nevada. Manejen con cuidado.",
            "Our free tax prep help is Tuesdays at the front lobby.",
            "We're running behind today, it's flu season. Thanks for your patience!",
            "Please bring your laptop or tablet charged for your video visit.",
            "Por el desfile del Día de los Muertos la calle estará cerrada.",
            "Tenemos intérpretes de mixteco y zapoteco para su cita.",
        ] {
            let d = classify(text, &ClassifyContext::default());
            assert_eq!(d.route, Route::Direct, "{text}: {:?}", d.reasons);
        }
        for text in [
            "Take one tablet at bedtime.",
            "Your test came back positive.",
            "We sent it to the pharmacy.",
            "Remember to take it with dinner.",
            "El doctor dice que usted está enfermo.",
            "Your results came back normal.",
            "¿Se siente bien hoy?",
            "The nurse needs to check your wound.",
            "Your health history needs an update.",
            "Your prior authorization is pending.",
            "The x-ray shows your wrist is broken.",
            "Your blood pressure reading was high.",
            "Drink plenty of water before your visit.",
            "Please bring your wheelchair to the visit.",
            "Your physical therapy starts Monday.",
            "Your hospital discharge papers came in.",
            "Your referral was approved.",
            "Su sensor libre llegó a la farmacia.",
            "¿Se siente mejor hoy?",
            "Your bowel prep kit is ready.",
            "Your flu test was positive.",
            "Your son can go back to school once the fever is gone.",
        ] {
            assert_eq!(route(text), Route::Secure, "{text}");
        }
    }

    /// Allowed words alone are not enough: the text has to read as an SMS-safe kind.
    #[test]
    fn a_text_must_read_as_a_safe_kind() {
        let d = classify("It can come off next week.", &ClassifyContext::default());
        assert_eq!(d.route, Route::Secure);
        assert_eq!(rules(&d), ["not_allow_listed"]);
        assert!(d.reasons[0].explanation.contains("SMS-safe kind"));
        for text in [
            "Still on for tomorrow at 10:45?",
            "Ok, nos vemos!",
            "See you at 9am",
        ] {
            assert_eq!(route(text), Route::Direct, "{text}");
        }
        assert!(has_clock_time("at 3 p.m. sharp") && has_clock_time("10:45"));
        assert!(
            !has_clock_time("2,000 IU") && !has_clock_time("555-0123") && !has_clock_time("12:345")
        );
    }

    #[test]
    fn unknown_words_are_not_allow_listed() {
        // A made-up word: unknown to every list, so the allow-list alone keeps it secure.
        let d = classify("Your zorbexil arrived.", &ClassifyContext::default());
        assert_eq!(d.route, Route::Secure);
        let r = d
            .reasons
            .iter()
            .find(|r| r.rule == "not_allow_listed")
            .unwrap();
        assert_eq!(r.matched_text, "zorbexil");
        // Capitalising an unknown word does not make it a name.
        assert_eq!(route("Bring your Zorbexil on Monday."), Route::Secure);
    }
}

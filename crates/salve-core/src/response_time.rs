//! Response-time promises: when a conversation waiting for a staff reply is overdue, and the
//! first-response statistics of the practice's report. All durations are business time
//! ([`OfficeHours::business_seconds_between`]): a message that arrives on Friday evening does
//! not start using up the target until the office opens on Monday.
//!
//! Percentiles use the **nearest-rank** method: the p-th percentile of n sorted values is the
//! value at rank `ceil(p/100 * n)` (1-based). It is always an observed duration (never an
//! average of two), so "90% of first responses came within X" is literally true of the data.
//! For an even count the median is therefore the lower of the two middle values.

use time::OffsetDateTime;

use crate::hours::OfficeHours;

/// The default response target: four business hours.
pub const DEFAULT_TARGET_MINUTES: i64 = 240;
/// Targets an admin may choose: 5 minutes to 10 business days of 24 hours.
pub const MIN_TARGET_MINUTES: i64 = 5;
pub const MAX_TARGET_MINUTES: i64 = 14_400;

/// The promise a target makes, for patients: "within 4 business hours" / "en un plazo de 4
/// horas hábiles".
pub fn target_phrase(target_minutes: i64, lang: crate::system_messages::Language) -> String {
    use crate::system_messages::Language;
    let m = target_minutes.max(1);
    match (lang, m % 60 == 0, m / 60) {
        (Language::En, true, 1) => "within 1 business hour".to_owned(),
        (Language::En, true, h) => format!("within {h} business hours"),
        (Language::En, false, _) => format!("within {m} business minutes"),
        (Language::Es, true, 1) => "en un plazo de 1 hora hábil".to_owned(),
        (Language::Es, true, h) => format!("en un plazo de {h} horas hábiles"),
        (Language::Es, false, _) => format!("en un plazo de {m} minutos hábiles"),
    }
}

/// Whether a conversation waiting since `waiting_since` has, at `now`, waited at least
/// `target_business_secs` of business time.
pub fn is_overdue(
    waiting_since: OffsetDateTime,
    now: OffsetDateTime,
    target_business_secs: i64,
    hours: &OfficeHours,
) -> bool {
    hours.business_seconds_between(waiting_since, now) >= target_business_secs.max(0)
}

/// The p-th percentile (0 < p <= 100) of `values` by nearest rank; `None` when empty.
pub fn percentile_nearest_rank(values: &[i64], p: u32) -> Option<i64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let n = sorted.len();
    let p = p.clamp(1, 100) as usize;
    let rank = (p * n).div_ceil(100).max(1);
    sorted.get(rank - 1).copied()
}

/// One waiting episode of the report: when the patient started waiting, and when staff first
/// replied (`None`: not yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Episode {
    pub waiting_since: OffsetDateTime,
    pub first_reply_at: Option<OffsetDateTime>,
}

/// What matters of a conversation's message for response times (from clear columns only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimelineEvent {
    /// An inbound message from the patient.
    Patient(OffsetDateTime),
    /// A message staff (or the practice's integration) sent the patient. System messages (the
    /// after-hours reply, opt-out confirmations) and internal notes are not responses.
    StaffReply(OffsetDateTime),
}

/// Splits one conversation's timeline (in time order) into waiting episodes: an episode starts
/// with the first patient message after the last staff reply (or the conversation's start) and
/// ends with the next staff reply.
pub fn episodes(timeline: &[TimelineEvent]) -> Vec<Episode> {
    let mut out: Vec<Episode> = Vec::new();
    let mut waiting: Option<OffsetDateTime> = None;
    for event in timeline {
        match *event {
            TimelineEvent::Patient(at) => {
                waiting.get_or_insert(at);
            }
            TimelineEvent::StaffReply(at) => {
                if let Some(since) = waiting.take() {
                    out.push(Episode {
                        waiting_since: since,
                        first_reply_at: Some(at),
                    });
                }
            }
        }
    }
    if let Some(since) = waiting {
        out.push(Episode {
            waiting_since: since,
            first_reply_at: None,
        });
    }
    out
}

/// The first-response report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirstResponseStats {
    /// Waiting episodes that started in the period.
    pub episodes: usize,
    /// Of those, the ones staff have answered.
    pub answered: usize,
    /// Over answered episodes only (an unanswered one has no response time yet), in business
    /// seconds; `None` when none were answered.
    pub median_seconds: Option<i64>,
    pub p90_seconds: Option<i64>,
}

/// Median and 90th percentile (nearest rank) of the business-time first-response durations.
pub fn first_response_stats(episodes: &[Episode], hours: &OfficeHours) -> FirstResponseStats {
    let durations: Vec<i64> = episodes
        .iter()
        .filter_map(|e| {
            e.first_reply_at
                .map(|reply| hours.business_seconds_between(e.waiting_since, reply))
        })
        .collect();
    FirstResponseStats {
        episodes: episodes.len(),
        answered: durations.len(),
        median_seconds: percentile_nearest_rank(&durations, 50),
        p90_seconds: percentile_nearest_rank(&durations, 90),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hours::{Holiday, Interval};
    use time::Duration;
    use time::macros::datetime;

    /// Mon-Fri 09:00-17:00 Chicago; Monday 2026-12-07 a holiday.
    fn office() -> OfficeHours {
        let day = vec![Interval::new(9 * 60, 17 * 60).unwrap()];
        OfficeHours::new(
            "America/Chicago",
            std::array::from_fn(|d| if d < 5 { day.clone() } else { vec![] }),
            vec![Holiday {
                date: jiff::civil::date(2026, 12, 7),
                name: "Office retreat".into(),
            }],
        )
        .unwrap()
    }

    #[test]
    fn overdue_counts_business_time_across_a_weekend_and_a_holiday() {
        let h = office();
        let target = 4 * 3600;
        // Friday 2026-12-04 16:00 Chicago (22:00 UTC): 1 business hour on Friday, none on the
        // weekend or the Monday holiday, 3 more on Tuesday: overdue at Tuesday 12:00.
        let since = datetime!(2026-12-04 22:00 UTC);
        for (now, expected) in [
            (datetime!(2026-12-04 23:00 UTC), false), // Friday 17:00
            (datetime!(2026-12-05 18:00 UTC), false), // Saturday noon
            (datetime!(2026-12-07 18:00 UTC), false), // Monday noon (holiday)
            (datetime!(2026-12-08 17:59 UTC), false), // Tuesday 11:59
            (datetime!(2026-12-08 18:00 UTC), true),  // Tuesday 12:00
            (datetime!(2026-12-09 18:00 UTC), true),
        ] {
            assert_eq!(is_overdue(since, now, target, &h), expected, "{now}");
        }
        // Within one day.
        let morning = datetime!(2026-12-03 15:00 UTC); // Thursday 09:00
        assert!(!is_overdue(
            morning,
            morning + Duration::hours(4) - Duration::seconds(1),
            target,
            &h
        ));
        assert!(is_overdue(
            morning,
            morning + Duration::hours(4),
            target,
            &h
        ));
    }

    #[test]
    fn episodes_start_at_the_first_unanswered_patient_message() {
        use TimelineEvent::*;
        let t = |h: i64| datetime!(2026-12-03 15:00 UTC) + Duration::hours(h);
        let timeline = [
            StaffReply(t(0)), // staff wrote first: nothing waiting
            Patient(t(1)),
            Patient(t(2)), // still the same episode
            StaffReply(t(3)),
            StaffReply(t(4)), // a second reply answers nothing
            Patient(t(5)),
        ];
        assert_eq!(
            episodes(&timeline),
            vec![
                Episode {
                    waiting_since: t(1),
                    first_reply_at: Some(t(3)),
                },
                Episode {
                    waiting_since: t(5),
                    first_reply_at: None,
                },
            ]
        );
        assert!(episodes(&[]).is_empty());
    }

    #[test]
    fn the_target_reads_as_a_promise() {
        use crate::system_messages::Language;
        assert_eq!(target_phrase(240, Language::En), "within 4 business hours");
        assert_eq!(target_phrase(60, Language::En), "within 1 business hour");
        assert_eq!(
            target_phrase(90, Language::En),
            "within 90 business minutes"
        );
        assert_eq!(
            target_phrase(240, Language::Es),
            "en un plazo de 4 horas hábiles"
        );
        assert_eq!(
            target_phrase(60, Language::Es),
            "en un plazo de 1 hora hábil"
        );
    }

    #[test]
    fn nearest_rank_percentiles_on_fixed_data() {
        assert_eq!(percentile_nearest_rank(&[], 50), None);
        assert_eq!(percentile_nearest_rank(&[7], 50), Some(7));
        assert_eq!(percentile_nearest_rank(&[7], 90), Some(7));
        let ten = [100, 10, 90, 20, 80, 30, 70, 40, 60, 50];
        assert_eq!(percentile_nearest_rank(&ten, 50), Some(50), "rank 5");
        assert_eq!(percentile_nearest_rank(&ten, 90), Some(90), "rank 9");
        assert_eq!(percentile_nearest_rank(&ten, 100), Some(100));
        let eleven = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 1000];
        assert_eq!(percentile_nearest_rank(&eleven, 50), Some(6), "rank 6");
        assert_eq!(
            percentile_nearest_rank(&eleven, 90),
            Some(10),
            "rank ceil(9.9)=10"
        );
        let four = [4, 1, 3, 2];
        assert_eq!(percentile_nearest_rank(&four, 50), Some(2), "lower middle");
        assert_eq!(percentile_nearest_rank(&four, 90), Some(4));
    }

    #[test]
    fn first_response_stats_use_business_time_and_skip_unanswered() {
        let h = office();
        let thursday_nine = datetime!(2026-12-03 15:00 UTC);
        let mins = |m: i64| Duration::minutes(m);
        let episodes = [
            Episode {
                waiting_since: thursday_nine,
                first_reply_at: Some(thursday_nine + mins(30)),
            },
            Episode {
                waiting_since: thursday_nine,
                first_reply_at: Some(thursday_nine + mins(60)),
            },
            Episode {
                waiting_since: thursday_nine,
                first_reply_at: Some(thursday_nine + mins(120)),
            },
            // Friday 16:00 -> Tuesday 10:00: 1h + 1h of business time (weekend and holiday).
            Episode {
                waiting_since: datetime!(2026-12-04 22:00 UTC),
                first_reply_at: Some(datetime!(2026-12-08 16:00 UTC)),
            },
            Episode {
                waiting_since: thursday_nine,
                first_reply_at: None,
            },
        ];
        let stats = first_response_stats(&episodes, &h);
        assert_eq!(
            stats,
            FirstResponseStats {
                episodes: 5,
                answered: 4,
                // Sorted: 1800, 3600, 7200, 7200 -> rank 2 and rank 4.
                median_seconds: Some(3600),
                p90_seconds: Some(7200),
            }
        );
        let none = first_response_stats(&episodes[4..], &h);
        assert_eq!(none.median_seconds, None);
        assert_eq!(none.answered, 0);
        assert_eq!(none.episodes, 1);
    }
}

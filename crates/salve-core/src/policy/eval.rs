//! Scoring the policy against labelled messages (the shipped evaluation set, `salve policy eval`).

use super::Route;

/// Counts for one group of labelled messages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Messages labelled secure, and how many of them the policy sent secure.
    pub secure: usize,
    pub secure_caught: usize,
    /// Messages labelled direct, and how many of them the policy sent secure anyway.
    pub direct: usize,
    pub direct_false_secure: usize,
}

impl Tally {
    pub fn add(&mut self, expected: Route, got: Route) {
        match expected {
            Route::Secure => {
                self.secure += 1;
                self.secure_caught += usize::from(got == Route::Secure);
            }
            Route::Direct => {
                self.direct += 1;
                self.direct_false_secure += usize::from(got == Route::Secure);
            }
        }
    }

    /// Share of secure-labelled messages routed secure (1.0 when there are none).
    pub fn recall_secure(&self) -> f64 {
        ratio(self.secure_caught, self.secure, 1.0)
    }

    /// Share of direct-labelled messages routed secure (0.0 when there are none).
    pub fn false_secure_rate(&self) -> f64 {
        ratio(self.direct_false_secure, self.direct, 0.0)
    }
}

fn ratio(num: usize, den: usize, empty: f64) -> f64 {
    if den == 0 {
        empty
    } else {
        num as f64 / den as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates() {
        let mut t = Tally::default();
        assert_eq!((t.recall_secure(), t.false_secure_rate()), (1.0, 0.0));
        t.add(Route::Secure, Route::Secure);
        t.add(Route::Secure, Route::Direct);
        t.add(Route::Direct, Route::Secure);
        t.add(Route::Direct, Route::Direct);
        t.add(Route::Direct, Route::Direct);
        t.add(Route::Direct, Route::Direct);
        assert_eq!(t.recall_secure(), 0.5);
        assert_eq!(t.false_secure_rate(), 0.25);
    }
}
